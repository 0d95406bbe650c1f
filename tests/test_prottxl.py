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


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory):
    from beam_jobs import fasta_to_tfrecords
    from tests.conftest import SAMPLE_FASTA

    data = tmp_path_factory.mktemp("txl") / "data"
    fasta_to_tfrecords.run(["--input", str(SAMPLE_FASTA), "--output-dir", str(data), "--num-shards", "2"])
    return tuple(sorted(str(p) for p in (data / "train").glob("data-*")))


def test_each_batch_lane_continues_its_own_stream(sample_data):
    from models.input_pipeline import InputConfig
    from models.objectives.causal_lm import causal_lm_dataset

    batches = [{k: v.numpy() for k, v in b.items()}
               for b in causal_lm_dataset(sample_data, InputConfig(sequence_length=32, batch_size=3)).take(4)]
    assert batches[0]["reset"].tolist() == [1.0] * 3 and all(b["reset"].sum() == 0 for b in batches[1:])
    for earlier, later in zip(batches, batches[1:]):
        # the token after a lane's segment is the first input of that lane's next segment
        np.testing.assert_array_equal(earlier["target_ids"][:, -1], later["token_ids"][:, 0])
        np.testing.assert_array_equal(earlier["token_ids"][:, 1:], earlier["target_ids"][:, :-1])
    assert len({tuple(row) for row in batches[0]["token_ids"]}) == 3  # lanes read different proteins


def test_prottxl_trains_on_real_proteins_with_memory_across_batches(sample_data, tmp_path):
    from models.training.checkpoints import load_trained_backbone
    from models.training.settings import Phase
    from tests.conftest import train_and_log, train_job

    job = train_job(sample_data, tmp_path / "model", Phase(64, 120, 8), family="prottxl", optimizer="adamw",
                    learning_rate=5e-3, warmup_steps=10, log_every=10, checkpoint_every=60)
    trainer, metrics, losses = train_and_log(job)
    assert losses[0] > 3.0 and metrics["loss"] < losses[0] - 0.15, losses
    assert all(np.abs(m.numpy()).max() > 0 for m in trainer.state.model.lane_memory.variables)  # memory was carried
    backbone, _ = load_trained_backbone(str(tmp_path / "model"))
    assert isinstance(backbone, TransformerXLBackbone)


def test_lanes_start_new_streams_each_epoch(tmp_path):
    from beam_jobs import fasta_to_tfrecords
    from models.input_pipeline import InputConfig
    from models.objectives.causal_lm import causal_lm_dataset

    fasta = tmp_path / "small.fasta"
    fasta.write_text("".join(f">p{i}\n{'MKTAYIAKQRQISFVKSHFSRQ'[: 10 + i]}\n" for i in range(12)))
    fasta_to_tfrecords.run(["--input", str(fasta), "--output-dir", str(tmp_path / "data"), "--valid-fraction", "0"])
    files = tuple(str(p) for p in (tmp_path / "data" / "train").glob("data-*"))
    config = InputConfig(sequence_length=16, batch_size=2, seed=1)
    one_epoch = len(list(causal_lm_dataset(files, config, repeat=False)))
    resets = [float(b["reset"][0]) for b in causal_lm_dataset(files, config).take(3 * one_epoch)]
    assert one_epoch > 2
    assert [i for i, r in enumerate(resets) if r] == [0, one_epoch, 2 * one_epoch]


def test_prottrans_import_reads_a_hugging_face_transformer_xl_folder(tmp_path):
    import json

    from safetensors.numpy import save_file

    from models.cli import import_checkpoint
    from models.registry import FAMILIES

    expected = dict(np.load(FIXTURE))
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text((FIXTURE.parent / "config.json").read_text())
    save_file({k.split(":", 1)[1]: v for k, v in expected.items() if k.startswith("weight:")},
              str(folder / "model.safetensors"))
    model = FAMILIES["prottxl"].import_checkpoint(str(folder))
    hidden = model.backbone.forward(expected["first"]).hidden.numpy()
    np.testing.assert_allclose(hidden, expected["hidden_first"], atol=1e-4)
    assert import_checkpoint.main(["--from-hf", str(folder), "--family", "prottxl",
                                   "--output", str(tmp_path / "served")]) == 0
    signature = tf.saved_model.load(str(tmp_path / "served" / "1")).signatures["serving_default"]
    assert signature(sequences=tf.constant(["MKTAYIAK"]))["residue_embeddings"].shape == (1, 8, 32)

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "pre_lnorm": True}))
    with pytest.raises(ValueError, match="pre_lnorm=False"):
        FAMILIES["prottxl"].import_checkpoint(str(folder))
