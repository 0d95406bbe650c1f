"""Masked and wild-type marginals served beside the embeddings (models/objectives/scoring.py): equal to
transformers' on the fixtures (tests/fixtures/make_hf_fixtures.py marginals), for the residues asked, and refusing
what they cannot score with a message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.export.signatures import export_saved_model, head_signatures, read_model_info
from models.objectives import scoring
from models.registry import FAMILIES

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"
TOLERANCE = 1e-4
CHECKPOINTS = {"protbert": "protbert", "protalbert": "protalbert", "other_bert": "protbert", "prott5": "prott5",
               "prott5_gated": "prott5"}
NONE = tf.zeros([3, 0], tf.int32)


def export_with_head(folder: str, tmp_path: Path) -> str:
    family = FAMILIES[CHECKPOINTS[folder]]
    model = family.import_checkpoint(str(FIXTURES / folder), log=lambda _: None)
    return export_saved_model(model.backbone, str(tmp_path / folder), head=head_signatures(family.objective, model))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The SavedModel of each fixture, loaded once."""
    return {folder: tf.saved_model.load(export_with_head(folder, tmp_path_factory.mktemp(folder)))
            for folder in CHECKPOINTS}


@pytest.mark.parametrize("folder", sorted(CHECKPOINTS))
def test_the_served_marginals_are_transformers_own(folder, served):
    expected = np.load(FIXTURES / folder / "marginals.npz")
    sequences = tf.constant(expected["sequences"])
    signatures = served[folder].signatures
    wildtype = signatures[scoring.WILDTYPE_MARGINALS](sequences=sequences)
    masked = signatures[scoring.MASKED_MARGINALS](sequences=sequences, positions=NONE)
    assert wildtype["lengths"].numpy().tolist() == [len(s) for s in expected["sequences"]]
    np.testing.assert_allclose(wildtype["log_probs"].numpy(), expected["wildtype"], atol=TOLERANCE)
    np.testing.assert_allclose(masked["log_probs"].numpy(), expected["masked"], atol=TOLERANCE)


def test_positions_mask_only_the_residues_asked(served):
    expected = np.load(FIXTURES / "protbert" / "marginals.npz")
    asked = served["protbert"].signatures[scoring.MASKED_MARGINALS](
        sequences=tf.constant(expected["sequences"]), positions=tf.constant([[2, 5], [20, 0], [0, 0]]))
    got = asked["log_probs"].numpy()
    for row, index in ((0, 1), (0, 4), (1, 19)):
        np.testing.assert_allclose(got[row, index], expected["masked"][row, index], atol=TOLERANCE)
    got[0, [1, 4]] = got[1, 19] = 0.0
    assert not got.any()  # nothing else was computed


def test_masked_copies_scored_in_many_chunks_give_the_same_marginals(monkeypatch):
    family = FAMILIES["protbert"]
    model = family.import_checkpoint(str(FIXTURES / "protbert"), log=lambda _: None)
    sequences = tf.constant(["MKTAYIAKQRQ", "MST"])
    whole = family.objective.serving_signatures(model)[scoring.MASKED_MARGINALS](sequences, NONE[:2])
    monkeypatch.setattr(scoring, "TOKENS_PER_CHUNK", 20)  # one copy of 13 tokens per chunk
    chunked = family.objective.serving_signatures(model)[scoring.MASKED_MARGINALS](sequences, NONE[:2])
    np.testing.assert_allclose(chunked["log_probs"].numpy(), whole["log_probs"].numpy(), atol=1e-6)


@pytest.mark.parametrize("sequences, positions, message", [
    (["MKT", "MS"], [[4], [0]], "a position is outside its sequence"),
    (["MKT", "MS"], [[-1], [0]], "a position is outside its sequence"),
    (["MKT", "MS"], [[1]], "positions must have one row per sequence"),
    (["MKT", "M1S"], [[1], [1]], "not residues"),
    (["M" * 63, "MS"], [[1], [1]], "longer than the 62 residues this model scores in one pass"),
])
def test_what_cannot_be_scored_is_refused_with_a_message(served, sequences, positions, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        served["protbert"].signatures[scoring.MASKED_MARGINALS](
            sequences=tf.constant(sequences), positions=tf.constant(positions, tf.int32))


def test_an_encoder_only_t5_embeds_and_says_it_serves_no_marginals(tmp_path):
    logged: list[str] = []
    model = FAMILIES["prott5"].import_checkpoint(str(FIXTURES / "prott5_encoder_float16"), log=logged.append)
    assert any("encoder-only" in line and "no masked or wild-type marginals" in line for line in logged)
    assert model.decoder is None and head_signatures(FAMILIES["prott5"].objective, model) is None
    path = export_saved_model(model.backbone, str(tmp_path / "encoder"))
    assert set(tf.saved_model.load(path).signatures) == {"serving_default", "serving_float16"}
    assert read_model_info(path)["head_signatures"] == []
