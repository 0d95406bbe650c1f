"""Published Hugging Face ProtBert/ProtAlbert checkpoints import with an explicit vocabulary mapping and give
the same logits and hidden states as transformers (fixtures: tests/fixtures/make_hf_fixtures.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models import hf_checkpoint, vocabulary
from models.hf_checkpoint import CheckpointError
from models.registry import FAMILIES

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"
TOLERANCE = 1e-4


def expected(family: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / family / "expected.npz"))


def ours_from_theirs(their_logits: np.ndarray, family: str) -> np.ndarray:
    """Their vocabulary-ordered logits, reordered to ours by token string (independently of the importer)."""
    their_tokens = (FIXTURES / family / "vocab.txt").read_text().split()
    return their_logits[..., [their_tokens.index(token) for token in vocabulary.TOKENS]]


@pytest.mark.parametrize("family", ["protbert", "protalbert"])
def test_imported_model_matches_transformers(family):
    reference = expected(family)
    model = FAMILIES[family].import_checkpoint(str(FIXTURES / family))
    token_ids, _ = vocabulary.encode(tf.constant(reference["sequences"]))
    hidden = model.backbone(token_ids).numpy()
    logits = model({"token_ids": token_ids}).numpy()
    mask = reference["token_ids"] != 0  # padded positions are not compared
    assert np.abs(hidden - reference["last_hidden_state"])[mask].max() <= TOLERANCE
    assert np.abs(logits - ours_from_theirs(reference["logits"], family))[mask].max() <= TOLERANCE


def test_pytorch_bin_reads_without_torch_like_safetensors():
    from safetensors.numpy import load_file

    from_bin = hf_checkpoint.read_pytorch_bin(str(FIXTURES / "protbert" / "pytorch_model.bin"))
    from_safetensors = load_file(str(FIXTURES / "protbert" / "model.safetensors"))
    for name, array in from_safetensors.items():
        np.testing.assert_array_equal(from_bin[name], array)


def test_vocabulary_mapping_takes_each_token_s_row():
    theirs = (FIXTURES / "protbert" / "vocab.txt").read_text().split()
    rows = hf_checkpoint.vocabulary_rows(theirs)
    assert [theirs[row] for row in rows] == list(vocabulary.TOKENS)
    with pytest.raises(CheckpointError, match="lacks"):
        hf_checkpoint.vocabulary_rows([t for t in theirs if t != "W"])


def test_wrong_family_and_broken_folders_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="expects a 'albert' checkpoint, not 'bert'"):
        FAMILIES["protalbert"].import_checkpoint(str(FIXTURES / "protbert"))
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURES / "protbert", broken)
    (broken / "model.safetensors").unlink()
    (broken / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="neither model.safetensors nor pytorch_model.bin"):
        FAMILIES["protbert"].import_checkpoint(str(broken))


def test_cli_exports_a_serving_version_that_embeds_like_transformers(tmp_path):
    from models.cli import import_checkpoint

    assert import_checkpoint.main(["--from-hf", str(FIXTURES / "protbert"), "--family", "protbert",
                                   "--output", str(tmp_path / "protbert")]) == 0
    signature = tf.saved_model.load(str(tmp_path / "protbert" / "1")).signatures["serving_default"]
    reference = expected("protbert")
    served = signature(sequences=tf.constant(reference["sequences"]))
    length = len(reference["sequences"][1])
    np.testing.assert_allclose(served["residue_embeddings"].numpy()[1, :length],
                               reference["last_hidden_state"][1, 1 : 1 + length], atol=TOLERANCE)
    assert json.loads((FIXTURES / "protbert" / "config.json").read_text())["model_type"] == "bert"
