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
from models.export.signatures import export_saved_model, read_model_info
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


def test_the_tfx_trainers_run_fn_trains_and_exports_prott5(tmp_path):
    from types import SimpleNamespace

    from beam_jobs import fasta_to_tfrecords
    from models.training.run_fn import custom_config, run_fn
    from models.training.settings import TrainingSettings
    from tests.conftest import SAMPLE_FASTA

    data = tmp_path / "data"
    fasta_to_tfrecords.run(["--input", str(SAMPLE_FASTA), "--output-dir", str(data), "--num-shards", "2"])
    settings = TrainingSettings(family="prott5", preset="tiny", global_batch=8, sequence_length=64, log_every=2,
                                eval_batches=2)
    fn_args = SimpleNamespace(train_steps=4, custom_config=custom_config(settings, str(tmp_path / "checkpoints")),
                              model_run_dir=str(tmp_path / "model_run"),
                              train_files=[str(data / "train" / "*")], eval_files=[str(data / "valid" / "*")],
                              serving_model_dir=str(tmp_path / "serving_model"))
    run_fn(fn_args)
    info = read_model_info(str(tmp_path / "serving_model"))
    assert info["backbone_config"]["num_layers"] == 2 and info["max_residues"] is None
    served = tf.saved_model.load(str(tmp_path / "serving_model")).signatures["serving_default"](
        sequences=tf.constant(["MKTAYIAKQR"]))
    assert served["residue_embeddings"].shape == (1, 10, 32)


def test_a_long_input_attends_in_query_blocks_with_the_plain_path_s_numerics(monkeypatch):
    """Past SCORE_BYTES of scores per layer the encoder holds one block of queries at a time; here the budget is
    shrunk so that a 300-residue batch spans five blocks."""
    from models.layers import query_blocks
    from models.prott5.layers import T5Attention

    keras.utils.set_random_seed(0)
    backbone = build_backbone("prott5", "tiny")
    token_ids, _ = _our_inputs(["MKTAYIAKQRQISFVKSHFSRQLEERLG" * 11, "MKT" * 40])
    plain = backbone(token_ids).numpy()
    blocks = []
    original = T5Attention.in_query_blocks
    monkeypatch.setattr(T5Attention, "in_query_blocks", lambda *a, **k: blocks.append(1) or original(*a, **k))
    monkeypatch.setattr(query_blocks, "SMALLEST_QUERY_BLOCK", 8)
    monkeypatch.setattr(query_blocks, "SCORE_BYTES", 4 * 2 * backbone.num_heads * token_ids.shape[1] * 64)  # 64 queries
    in_blocks = tf.function(lambda ids: backbone(ids))(token_ids).numpy()
    assert blocks and token_ids.shape[1] > 4 * 64
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
    signature = tf.saved_model.load(export_saved_model(backbone, str(tmp_path / "broken"))).signatures[
        "serving_default"]
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
