"""ProtTXL: parity with transformers' Transformer-XL (including reading the previous segment's memory) and the
causal behaviour a left-to-right language model relies on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.layers.tied_lm_head import TiedLMHead
from models.prottxl.backbone import TransformerXLBackbone
from models.prottxl.convert import assign_hf_transfo_xl

FIXTURE = Path(__file__).parent / "fixtures" / "hf" / "prottxl" / "expected.npz"


@pytest.fixture(scope="module")
def imported():
    expected = dict(np.load(FIXTURE))
    backbone = TransformerXLBackbone(num_layers=2, hidden_dim=32, num_heads=4, head_dim=8, intermediate_dim=64,
                                     memory_length=40)
    head = TiedLMHead(backbone)
    backbone.build((None, None))
    head.build((None, None, 32))
    state = {k.split(":", 1)[1]: v for k, v in expected.items() if k.startswith("weight:")}
    np.testing.assert_array_equal(state["crit.out_layers.0.weight"], state["transformer.word_emb.emb_layers.0.weight"])
    assign_hf_transfo_xl(state, backbone, head)
    return backbone, head, expected


def log_probs(head, hidden):
    return tf.nn.log_softmax(head(hidden), axis=-1).numpy()


def test_a_segment_matches_transformers(imported):
    backbone, head, expected = imported
    state = backbone.forward(expected["first"])
    np.testing.assert_allclose(state.hidden.numpy(), expected["hidden_first"], atol=1e-4)
    np.testing.assert_allclose(log_probs(head, state.hidden), expected["log_probs_first"], atol=1e-4)
    memory = np.stack([m.numpy() for m in state.memory])
    np.testing.assert_allclose(memory, np.transpose(expected["memory_first"], (0, 2, 1, 3)), atol=1e-4)


def test_the_next_segment_reading_the_memory_matches_transformers(imported):
    backbone, head, expected = imported
    first = backbone.forward(expected["first"])
    second = backbone.forward(expected["second"], memory=first.memory)
    np.testing.assert_allclose(log_probs(head, second.hidden), expected["log_probs_second"], atol=1e-4)
    fresh = log_probs(head, backbone.forward(expected["second"]).hidden)
    assert np.abs(fresh - expected["log_probs_second"]).max() > 1e-2  # the memory carries context


def test_the_model_never_attends_to_the_future(imported):
    backbone, _, expected = imported
    ids = expected["first"].copy()
    before = backbone.forward(ids).hidden.numpy()
    ids[:, 15] = np.where(ids[:, 15] == 7, 8, 7)  # change one later residue
    after = backbone.forward(ids).hidden.numpy()
    np.testing.assert_allclose(after[:, :15], before[:, :15], atol=1e-6)
    assert np.abs(after[:, 15:] - before[:, 15:]).max() > 1e-3
