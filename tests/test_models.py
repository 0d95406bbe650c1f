"""The masked-LM families' backbones (ProtBert, ProtAlbert), the masked-LM task and embeddings
(docs/contracts.md), on tiny presets."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import keras

from models import vocabulary
from models.export import embedding
from models.networks.encoder_backbone import EncoderBackbone
from models.layers import ReversibleEmbedding, TransformerEncoderLayer
from models.objectives.masked_lm import MASKED_LM, MaskedLM
from models.registry import FAMILIES, build_backbone, preset_config

MASKED_LM_FAMILIES = sorted(name for name, family in FAMILIES.items() if family.objective is MASKED_LM)
SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQ", "MKT", "ACDEFGHIKLMNPQRSTVWYX"]


@pytest.fixture(params=MASKED_LM_FAMILIES)
def backbone(request):
    keras.utils.set_random_seed(0)
    return build_backbone(request.param, "tiny")


def test_protalbert_shares_one_layer_across_depth():
    config = preset_config("protalbert", "tiny")
    shallow = EncoderBackbone(**{**config, "num_layers": 1})
    deep = EncoderBackbone(**{**config, "num_layers": 6})
    token_ids, _ = vocabulary.encode(tf.constant(["MKTAYIAK"]))
    shallow(token_ids), deep(token_ids)
    assert shallow.count_params() == deep.count_params()
    assert deep.embedding_dim < deep.hidden_dim and deep.embedding_projection is not None


def test_protbert_has_a_layer_per_depth_and_no_projection():
    backbone = build_backbone("protbert", "tiny")
    assert len(backbone.encoder_layers) == backbone.num_layers == 2
    assert backbone.embedding_projection is None


def test_masked_lm_scores_the_requested_positions_with_the_tied_embedding(backbone):
    model = MaskedLM(backbone)
    token_ids, _ = vocabulary.encode(tf.constant(SEQUENCES))
    positions = tf.constant([[1, 5, 9], [1, 2, 3], [4, 4, 7]])
    everywhere = model({"token_ids": token_ids})
    picked = model({"token_ids": token_ids, "mask_positions": positions})
    assert picked.shape == (3, 3, vocabulary.VOCABULARY_SIZE)
    np.testing.assert_allclose(picked, tf.gather(everywhere, positions, batch_dims=1), atol=1e-5)
    # The decoder is the input embedding: scaling that matrix changes the logits.
    table = backbone.token_embedding.embeddings
    table.assign(table * 2.0)
    assert not np.allclose(model({"token_ids": token_ids, "mask_positions": positions}), picked)


def test_masked_lm_saves_and_loads_with_its_config_and_weights(backbone, tmp_path):
    model = MaskedLM(backbone)
    token_ids, _ = vocabulary.encode(tf.constant(SEQUENCES))
    expected = model({"token_ids": token_ids})
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.backbone.get_config() == backbone.get_config()
    np.testing.assert_allclose(loaded({"token_ids": token_ids}), expected, atol=1e-6)


def test_embeddings_follow_design_section_5(backbone):
    outputs = embedding.embed_strings(backbone, tf.constant(SEQUENCES))
    residues, proteins, lengths = (outputs[k].numpy() for k in ("residue_embeddings", "protein_embeddings", "lengths"))
    assert lengths.tolist() == [len(s) for s in SEQUENCES]
    assert residues.shape == (3, max(lengths), backbone.hidden_dim) and residues.dtype == np.float32
    assert not residues[1, 3:].any() and residues[1, :3].any()  # zero past the length
    np.testing.assert_allclose(proteins[1], residues[1, :3].mean(axis=0), atol=1e-6)
    hidden = backbone(vocabulary.encode(tf.constant(SEQUENCES))[0]).numpy()
    np.testing.assert_allclose(residues[0], hidden[0, 1:-1], atol=1e-6)  # [CLS] and [SEP] removed


def test_embed_returns_input_order_whatever_the_batching(backbone):
    together = embedding.embed(backbone, SEQUENCES, max_tokens_per_batch=10_000)
    one_by_one = embedding.embed(backbone, SEQUENCES, max_tokens_per_batch=1)
    for sequence, a, b in zip(SEQUENCES, together, one_by_one):
        assert a.residues.shape == (len(sequence), backbone.hidden_dim)
        np.testing.assert_allclose(a.residues, b.residues, atol=1e-5)
        np.testing.assert_allclose(a.protein, b.protein, atol=1e-5)


def test_a_protein_past_the_position_table_is_embedded_in_windows_stitched_in_the_graph(backbone):
    limit = embedding.max_residues(backbone)
    [long, short] = embedding.embed(backbone, ["MKTAYIAKQR" * 300, "MKT"])
    assert long.residues.shape == (3000, backbone.hidden_dim) and limit < 3000
    np.testing.assert_allclose(long.protein, long.residues.mean(axis=0), atol=1e-5)
    alone = backbone(vocabulary.encode(tf.constant(["MKT"]))[0])[0, 1:4]  # within the limit: the plain path
    np.testing.assert_allclose(short.residues, alone, atol=1e-5)
    with pytest.raises(TypeError, match="sequence 0 is bytes"):
        embedding.embed(backbone, [b"MKT"])


@pytest.mark.parametrize("stitch", embedding.STITCHES)
def test_windows_overlap_and_each_residue_comes_from_the_window_the_stitch_names(stitch):
    keras.utils.set_random_seed(0)
    backbone = build_backbone("protbert", "tiny", max_sequence_length=12)  # 10 residues at most
    sequence = "MKTAYIAKQRQISFVKSHFSRQLEERLG"  # 28 residues: windows of 10 at 0, 8, 16 and (the last) 18
    window = embedding.Window(10, 2, stitch)
    got = embedding.embed_strings(backbone, tf.constant([sequence, "MKT"]), window)
    starts = [0, 8, 16, 18]
    windows = [embedding.embed(backbone, [sequence[start : start + 10]])[0].residues for start in starts]
    expected = np.zeros((28, backbone.hidden_dim), np.float32)
    for position in range(28):
        holding = [k for k, start in enumerate(starts) if start <= position < start + 10]
        if stitch == "mean":
            expected[position] = np.mean([windows[k][position - starts[k]] for k in holding], axis=0)
        else:  # nearest the window's centre (4.5 for a window of 10), the earlier window on a tie
            k = min(holding, key=lambda k: (abs(position - starts[k] - 4.5), k))
            expected[position] = windows[k][position - starts[k]]
    np.testing.assert_allclose(got["residue_embeddings"][0].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(got["protein_embeddings"][0].numpy(), expected.mean(axis=0), atol=1e-5)
    assert list(got["lengths"].numpy()) == [28, 3] and not got["residue_embeddings"][1, 3:].numpy().any()


def test_length_batches_respect_the_token_budget():
    lengths = [10, 300, 5, 40, 298]
    batches = embedding.length_batches(lengths, max_tokens_per_batch=700)
    assert sorted(i for batch in batches for i in batch) == list(range(5))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * (max(lengths[i] for i in batch) + 2) <= 700
    assert batches[0] == [1, 4]  # longest first


def test_encoder_layer_config_round_trips():
    layer = TransformerEncoderLayer(32, 4, 64, activation_name="gelu_new", dropout=0.1)
    clone = TransformerEncoderLayer.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="not divisible"):
        TransformerEncoderLayer(30, 4, 64)


def test_reversible_embedding_decodes_with_the_transposed_table():
    layer = ReversibleEmbedding(26, 8, name="token_embedding")
    layer.build((None,))
    assert [weight.path for weight in layer.weights] == ["token_embedding/embeddings"]  # what checkpoints key on
    hidden = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    expected = hidden @ layer.embeddings.numpy().T
    np.testing.assert_allclose(layer(hidden, reverse=True), expected, atol=1e-5)
    half = ReversibleEmbedding(26, 8, dtype="mixed_bfloat16")
    half.build((None,))
    half.embeddings.assign(layer.embeddings)
    logits = half(tf.cast(hidden, tf.bfloat16), reverse=True)  # the masked-LM head's bfloat16 hidden states
    assert logits.dtype == tf.bfloat16 and half.embeddings.dtype == "float32"
    np.testing.assert_allclose(tf.cast(logits, tf.float32), expected, atol=0.1)


@pytest.mark.slow
def test_paper_protbert_has_the_published_size():
    backbone = build_backbone("protbert", "paper")
    backbone.build((None, None))
    # 420M in the paper (30 layers, hidden 1024, FFN 4096, 40,000 positions).
    assert 415e6 < backbone.count_params() < 425e6


def test_a_long_input_attends_in_query_blocks_with_the_plain_path_s_numerics(backbone, monkeypatch):
    """Past SCORE_BYTES of scores per layer each layer holds one block of queries at a time; here the budget is
    shrunk so that a batch of 442 tokens spans seven blocks."""
    from models.layers import query_blocks

    long = build_backbone(backbone.name.split("_")[0], "tiny", max_sequence_length=600)
    token_ids, _ = vocabulary.encode(tf.constant(["MKTAYIAKQRQISFVKSHFSRQ" * 20, "MKT" * 30]))
    plain = long(token_ids).numpy()
    blocks = []
    original = TransformerEncoderLayer._in_query_blocks
    monkeypatch.setattr(TransformerEncoderLayer, "_in_query_blocks",
                        lambda *a, **k: blocks.append(1) or original(*a, **k))
    monkeypatch.setattr(query_blocks, "SMALLEST_BLOCK", 8)
    monkeypatch.setattr(query_blocks, "SCORE_BYTES", 4 * 2 * long.num_heads * token_ids.shape[1] * 64)
    in_blocks = tf.function(lambda ids: long(ids))(token_ids).numpy()
    assert blocks
    np.testing.assert_allclose(in_blocks, plain, rtol=1e-5, atol=1e-5 * np.abs(plain).max())
