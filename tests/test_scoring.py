"""Masked and wild-type marginals served beside the embeddings (models/objectives/scoring.py): equal to
transformers' on the fixtures (tests/fixtures/make_hf_fixtures.py marginals), for the residues asked, and refusing
what they cannot score with a message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models import vocabulary
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


def _one_token_at_a_time(backbone, head, token_ids: np.ndarray, first: int) -> float:
    """Σ log p(token t | tokens before t) for t ≥ `first`, each from its own pass over the prefix alone."""
    total = 0.0
    for t in range(first, token_ids.shape[1]):
        logits = head(backbone.forward(token_ids[:, :t]).hidden)[0, -1]
        total += float(tf.nn.log_softmax(logits)[token_ids[0, t]])
    return total


def test_prottxl_s_log_likelihood_is_the_sum_of_its_next_token_probabilities(tmp_path):
    from safetensors.numpy import save_file

    reference = dict(np.load(FIXTURES / "prottxl" / "expected.npz"))
    folder = tmp_path / "prottxl"
    folder.mkdir()
    (folder / "config.json").write_text((FIXTURES / "prottxl" / "config.json").read_text())
    save_file({k.split(":", 1)[1]: v for k, v in reference.items() if k.startswith("weight:")},
              str(folder / "model.safetensors"))
    family = FAMILIES["prottxl"]
    model = family.import_checkpoint(str(folder))
    signatures = tf.saved_model.load(export_saved_model(
        model.backbone, str(tmp_path / "served"), head=head_signatures(family.objective, model))).signatures
    scored = signatures[scoring.LOG_LIKELIHOOD](sequences=tf.constant(["MKTAYIAKQR", "MST"]))
    for row, sequence in enumerate(["MKTAYIAKQR", "MST"]):
        token_ids = np.array([[2, *(vocabulary.TOKEN_IDS[r] for r in sequence), 3]])  # [CLS] residues [SEP]
        expected = _one_token_at_a_time(model.backbone, model.head, token_ids, first=1)
        assert scored[scoring.LOG_LIKELIHOOD].numpy()[row] == pytest.approx(expected, abs=1e-4)


def test_protxlnet_s_log_likelihood_reads_each_residue_after_those_before_it():
    family = FAMILIES["protxlnet"]
    model = family.import_checkpoint(str(FIXTURES / "protxlnet_checkpoint"), log=lambda _: None)
    log_likelihood = family.objective.serving_signatures(model)[scoring.LOG_LIKELIHOOD]
    sequence = "MKTAYIAK"
    token_ids, _ = vocabulary.encode(tf.constant([sequence]), layout="sep_cls")  # residues <sep> <cls>
    ids = vocabulary.checkpoint_rows(token_ids, model.backbone.token_rows).numpy()[0]
    # XLNet's factorisation in the left-to-right order: position i sees no residue at or after it (the content
    # stream sees itself); the specials, at the end here, are context for all
    permutation_mask = np.zeros((1, len(ids), len(ids)), np.float32)
    for i in range(len(ids)):
        permutation_mask[0, i, i:len(sequence)] = 1.0
    expected = 0.0
    for t in range(len(sequence)):  # one query at a time
        target_mapping = np.zeros((1, 1, len(ids)), np.float32)
        target_mapping[0, 0, t] = 1.0
        state = model.backbone.forward(token_ids, permutation_mask=permutation_mask, target_mapping=target_mapping)
        expected += float(tf.nn.log_softmax(model.head(state.query)[0, 0])[ids[t]])
    got = log_likelihood(tf.constant([sequence, "MST"]))[scoring.LOG_LIKELIHOOD].numpy()
    assert got[0] == pytest.approx(expected, abs=1e-4)
    assert got[1] == pytest.approx(float(log_likelihood(tf.constant(["MST"]))[scoring.LOG_LIKELIHOOD][0]), abs=1e-5)
