"""ProtT5: the T5 encoder-decoder matches transformers (ReLU and gated-GELU; float32, float16 and bfloat16
checkpoints), serves per-residue embeddings without `</s>`, has no length limit, exports in half precision and
pretrains by single-residue denoising through the common trainer."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import vocabulary
from models.export import embedding
from models.export.signatures import export_saved_model, read_model_info, write_saved_model
from models.objectives.denoising import DECODER_IDS
from models.prott5.layers import relative_position_bucket
from models.registry import FAMILIES, build_backbone

FIXTURES = Path(__file__).parent / "fixtures" / "hf"
PARITY = 1e-4


def _our_inputs(sequences):
    token_ids, lengths = vocabulary.encode(tf.constant(list(sequences)), layout="eos")
    return token_ids, lengths.numpy()


@pytest.mark.parametrize("folder", ["prott5", "prott5_gated"])
def test_imported_t5_matches_transformers_encoder_and_decoder(folder):
    expected = np.load(FIXTURES / folder / "expected.npz")
    model = FAMILIES["prott5"].import_checkpoint(str(FIXTURES / folder))
    token_ids, lengths = _our_inputs(expected["sequences"])
    hidden = model.backbone(token_ids).numpy()
    for row, length in enumerate(lengths):  # residues and </s>
        np.testing.assert_allclose(hidden[row, : length + 1], expected["last_hidden_state"][row, : length + 1],
                                   atol=PARITY, rtol=PARITY)
    decoder_ids = tf.pad(token_ids[:, :-1], [[0, 0], [1, 0]])
    logits = model({"token_ids": token_ids, DECODER_IDS: decoder_ids}).numpy()
    assert logits.shape[-1] == expected["logits"].shape[-1]  # the checkpoint's whole vocabulary
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(logits[row, : length + 1], expected["logits"][row, : length + 1],
                                   atol=PARITY * 10, rtol=PARITY)


def _pieces(folder):
    from models.hf_checkpoint import read_sentencepiece_pieces

    return read_sentencepiece_pieces(str(FIXTURES / folder / "spiece.model"))


@pytest.mark.parametrize("folder", ["prott5", "prott5_gated"])
def test_the_served_residue_embeddings_are_transformers_encoder_states_without_the_end_token(folder, tmp_path):
    expected = np.load(FIXTURES / folder / "expected.npz")
    backbone = FAMILIES["prott5"].import_checkpoint(str(FIXTURES / folder)).backbone
    path = export_saved_model(backbone, str(tmp_path / "prott5"))
    assert read_model_info(path)["max_residues"] is None
    served = tf.saved_model.load(path).signatures["serving_default"](
        sequences=tf.constant(list(expected["sequences"])))
    for row, sequence in enumerate(expected["sequences"]):
        residues = served["residue_embeddings"][row, : len(sequence)].numpy()
        np.testing.assert_allclose(residues, expected[f"residues_{row}"], atol=PARITY, rtol=PARITY)
        np.testing.assert_allclose(served["protein_embeddings"][row].numpy(), expected[f"residues_{row}"].mean(0),
                                   atol=PARITY, rtol=PARITY)
    assert served["lengths"].numpy().tolist() == [len(s) for s in expected["sequences"]]


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
@pytest.mark.parametrize("folder", ["prott5", "prott5_gated"])
def test_half_precision_checkpoints_import_as_float32_exactly(folder, precision):
    half = FIXTURES / f"{folder}_encoder_{precision}"
    expected = np.load(half / "expected.npz")  # transformers in float32 on the rounded weights
    backbone = FAMILIES["prott5"].import_checkpoint(str(half)).backbone
    token_ids, lengths = _our_inputs(expected["sequences"])
    hidden = backbone(token_ids).numpy()
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(hidden[row, : length + 1], expected["last_hidden_state"][row, : length + 1],
                                   atol=PARITY, rtol=PARITY)


# Half-precision SavedModels against transformers' own half model, relative to the states' scale: float16 keeps
# 10 bits of mantissa, bfloat16 7 (and the two frameworks round at different places).
HALF_TOLERANCE = {"float16": 0.02, "bfloat16": 0.08}


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_a_half_precision_savedmodel_computes_in_half_and_matches_transformers_half(precision, tmp_path):
    half = FIXTURES / f"prott5_encoder_{precision}"
    expected = np.load(half / "expected.npz")
    backbone = FAMILIES["prott5"].import_checkpoint(str(half)).backbone
    path = export_saved_model(backbone, str(tmp_path / "m"), dtype=precision, output_dtype="float16")
    assert read_model_info(path)["dtype"] == precision
    loaded = tf.saved_model.load(path)
    # norms, and under float16 the feed-forward output projections (T5's overflow point), stay float32
    wide = ("norm", "outer") if precision == "float16" else ("norm",)
    variables = loaded.signatures["serving_default"].variables
    assert {v.dtype for v in variables if not any(part in v.name for part in wide)} == {tf.as_dtype(precision)}
    assert {v.dtype for v in variables if "outer" in v.name} == \
        {tf.float32 if precision == "float16" else tf.as_dtype(precision)}
    served = loaded.signatures["serving_default"](sequences=tf.constant(list(expected["sequences"])))
    assert served["residue_embeddings"].dtype == tf.float16
    scale = np.abs(expected["half_hidden_state"]).max()
    for row, sequence in enumerate(expected["sequences"]):
        ours = served["residue_embeddings"][row, : len(sequence)].numpy().astype(np.float32)
        assert np.abs(ours - expected["half_hidden_state"][row, : len(sequence)]).max() / scale \
            < HALF_TOLERANCE[precision]


def test_the_encoder_takes_any_length():
    backbone = build_backbone("prott5", "tiny")
    assert embedding.max_residues(backbone) is None
    long = ("MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ" * 100)[:3000]
    (result,) = embedding.embed(backbone, [long])
    assert result.residues.shape == (3000, backbone.hidden_dim) and np.isfinite(result.residues).all()
    (short,) = embedding.embed(backbone, [long[:40]])
    again, _ = embedding.embed(backbone, [long[:40], long[:200]])
    np.testing.assert_allclose(short.residues, again.residues, atol=1e-5)  # padding does not leak


def test_relative_position_buckets_are_t5s():
    offsets = tf.constant([[-200, -20, -9, -3, -1, 0, 1, 3, 9, 20, 200]])
    # transformers' T5Attention._relative_position_bucket(…, num_buckets=32, max_distance=128) on these offsets
    assert relative_position_bucket(offsets, True, 32, 128).numpy().tolist() == \
        [[15, 10, 8, 3, 1, 0, 17, 19, 24, 26, 31]]
    assert relative_position_bucket(offsets, False, 32, 128).numpy().tolist() == \
        [[31, 17, 9, 3, 1, 0, 0, 0, 0, 0, 0]]


def test_the_import_command_reads_a_half_encoder_folder_and_writes_the_precision_asked(tmp_path, capsys):
    from models.cli import import_checkpoint

    output = tmp_path / "serving" / "prott5"
    assert import_checkpoint.main(["--from-hf", str(FIXTURES / "prott5_encoder_float16"), "--family", "prott5",
                                   "--output", str(output), "--dtype", "bfloat16"]) == 0
    assert "SavedModel (bfloat16)" in capsys.readouterr().out
    info = read_model_info(str(output / "1"))
    assert info["dtype"] == "bfloat16" and info["max_residues"] is None


def test_prott5_pretrains_by_denoising_with_the_common_trainer(tmp_path):
    from beam_jobs import fasta_to_tfrecords
    from models.training.settings import Phase
    from tests.conftest import SAMPLE_FASTA, train_and_log, train_job

    data = tmp_path / "data"
    fasta_to_tfrecords.run(["--input", str(SAMPLE_FASTA), "--output-dir", str(data), "--num-shards", "2"])
    job = train_job(sorted((data / "train").glob("data-*")), tmp_path / "model", Phase(64, 100, 16), family="prott5",
                    preset="tiny", log_every=10, warmup_steps=5, learning_rate=3e-3)
    trainer, _, losses = train_and_log(job)
    assert trainer.state.family.objective.name == "denoising" and 0.3 < trainer.floor < 0.5
    assert losses[-1] < losses[0] - 0.3, losses


def test_a_long_input_attends_in_query_blocks_with_the_plain_path_s_numerics(monkeypatch):
    """At inference the encoder holds one block of queries' scores and one block of positions' feed-forward
    activations at a time; here the budgets are shrunk so that a 300-residue batch spans five blocks of each. The
    reference is the plain path (whole attention and feed-forward, as in training; dropout 0)."""
    from models.layers import query_blocks
    from models.prott5.layers import T5Attention, T5FeedForward

    keras.utils.set_random_seed(0)
    tiny = build_backbone("prott5", "tiny")
    backbone = type(tiny).from_config({**tiny.get_config(), "dropout": 0.0})
    token_ids, _ = _our_inputs(["MKTAYIAKQRQISFVKSHFSRQLEERLG" * 11, "MKT" * 40])
    plain = backbone(token_ids, training=True).numpy()
    blocks = []
    for layer, method in ((T5Attention, "in_query_blocks"), (T5FeedForward, "in_position_blocks")):
        original = getattr(layer, method)
        monkeypatch.setattr(layer, method, lambda *a, _original=original, _name=method, **k:
                            blocks.append(_name) or _original(*a, **k))
    monkeypatch.setattr(query_blocks, "SMALLEST_BLOCK", 8)
    monkeypatch.setattr(query_blocks, "SCORE_BYTES", 4 * 2 * backbone.num_heads * token_ids.shape[1] * 64)  # 64 queries
    monkeypatch.setattr(query_blocks, "FEED_FORWARD_BYTES", 4 * 2 * backbone.intermediate_dim * 64)  # 64 positions
    in_blocks = tf.function(lambda ids: backbone(ids))(token_ids).numpy()
    assert set(blocks) == {"in_query_blocks", "in_position_blocks"} and token_ids.shape[1] > 4 * 64
    np.testing.assert_allclose(in_blocks, plain, rtol=1e-5, atol=1e-5 * np.abs(plain).max())


def test_a_feed_forward_output_past_float16_s_range_stays_finite_in_a_float16_export(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = build_backbone("prott5", "tiny")
    backbone(_our_inputs(["MKT"])[0])
    outer = backbone.encoder.feed_forwards[0].outer
    outer.kernel.assign(outer.kernel * 40000.0)  # layer 0's feed-forward now outputs past 65,504
    sequences = tf.constant(["MKTAYIAKQRQISFVKSHFSRQ", "MKT"])
    reference = embedding.embed_strings(backbone, sequences)["residue_embeddings"].numpy()
    path = export_saved_model(backbone, str(tmp_path / "half"), dtype="float16")
    served = tf.saved_model.load(path).signatures["serving_default"](sequences=sequences)["residue_embeddings"]
    assert np.isfinite(served.numpy()).all()
    np.testing.assert_allclose(served.numpy(), reference, atol=5e-3 * np.abs(reference).max())


def test_a_non_finite_embedding_is_an_error_naming_the_sequence_never_an_answer(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = build_backbone("prott5", "tiny")
    backbone(_our_inputs(["MKT"])[0])
    table = backbone.token_embedding.embeddings
    # C's embedding is NaN (the serving warm-up requests hold no C: the version loads)
    table.assign(tf.tensor_scatter_nd_update(table, [[vocabulary.TOKEN_IDS["C"]]], [[np.nan] * backbone.hidden_dim]))
    with pytest.raises(ValueError, match="not exported: 1 weights hold NaN"):
        export_saved_model(backbone, str(tmp_path / "refused"))
    # written past that check, as a damaged copy would be: the graph refuses what the weights produce
    write_saved_model(backbone, str(tmp_path / "broken" / "1"))
    signature = tf.saved_model.load(str(tmp_path / "broken" / "1")).signatures["serving_default"]
    assert np.isfinite(signature(sequences=tf.constant(["MKT"]))["residue_embeddings"].numpy()).all()
    with pytest.raises(tf.errors.InvalidArgumentError, match="embedding of a sequence is not finite.*sequence. .1"):
        signature(sequences=tf.constant(["MKT", "MKCT"]))

    # the commands reject that protein with the model's reason and embed the others, locally and through a server
    import json

    import h5py

    from serving import embed
    from serving.dev_server import DevServer

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKT\n>b\nMKCT\n>c\nMSTNP\n")
    server = DevServer(str(tmp_path / "broken"), "broken", port=0).start()
    try:
        for name, source in (("local", ["--saved-model", str(tmp_path / "broken")]),
                             ("served", ["--server", f"127.0.0.1:{server.port}", "--model", "broken"])):
            output = tmp_path / f"{name}.h5"
            assert embed.main([*source, str(fasta), str(output), "--per-protein"]) == 0
            with h5py.File(output) as handle:
                assert sorted(handle) == ["a", "c"]  # per protein only: one dataset per protein at the root
            [reject] = [json.loads(line) for line in Path(f"{output}.rejects.jsonl").read_text().splitlines()]
            assert reject["id"] == "b" and reject["line"] == 3 and "not finite" in reject["reason"]
    finally:
        server.stop()
    # a version whose own warm-up requests (which hold M) are refused is not served, and the server says why
    table.assign(tf.tensor_scatter_nd_update(table, [[vocabulary.TOKEN_IDS["M"]]], [[np.nan] * backbone.hidden_dim]))
    write_saved_model(backbone, str(tmp_path / "unwarmed" / "1"))
    with pytest.raises(ValueError, match="not loaded: the model refused its warm-up request 1 .*not finite"):
        DevServer(str(tmp_path / "unwarmed"), "unwarmed", port=0).start()
    # and so does the Beam job, one reject record per refused protein, its counts reconciled
    sharded = tmp_path / "sharded"
    assert embed.main(["--saved-model", str(tmp_path / "broken"), "--beam", "--num-shards", "1", str(fasta),
                       str(sharded), "--per-protein"]) == 0
    manifest = json.loads((sharded / "manifest.json").read_text())
    assert manifest["counts"]["embedded"] == 2 and manifest["counts"]["rejected_by_reason"] == {"model_refused": 1}
    [reject] = [json.loads(line) for path in (sharded / "rejects").iterdir() for line in path.read_text().splitlines()]
    assert reject["id"] == "b" and "not finite" in reject["detail"] and reject["file"].endswith("in.fasta")


def test_an_untied_lm_head_survives_an_export_and_a_training_folder(tmp_path):
    """T5 v1.1 checkpoints keep their own LM head (``tie_word_embeddings=False``): a SavedModel exported with it,
    and a training folder, rebuild the same head when a run starts from them, not the tied one."""
    from models.export.signatures import exported_weights, head_signatures
    from models.training.checkpoints import load_exported_model, load_trained_model, model_weights, \
        write_backbone_config

    family = FAMILIES["prott5"]
    model = family.import_checkpoint(str(FIXTURES / "prott5_gated"), log=lambda line: None)
    assert model.lm_head is not None
    exported = export_saved_model(model.backbone, str(tmp_path / "serving"),
                                  head=head_signatures(family.objective, model))
    run_dir = tmp_path / "run"
    write_backbone_config(model.backbone, "prott5", str(run_dir), model)
    tf.train.Checkpoint(weights=model_weights(model)).save(str(run_dir / "checkpoints" / "ckpt"))
    expected = {key: weight.numpy() for key, weight in exported_weights(model, model.backbone).items()}
    for again in (load_exported_model(family, exported), load_trained_model(str(run_dir))[1]):
        weights = exported_weights(again, again.backbone)
        assert again.lm_head is not None and sorted(weights) == sorted(expected)
        for key, weight in weights.items():
            np.testing.assert_array_equal(weight.numpy(), expected[key], err_msg=key)
