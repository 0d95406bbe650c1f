"""Masked-LM pretraining: the loss falls, runs resume from checkpoints, strategies and precisions work, and the
result is exported as the serving SavedModel."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.export import embedding
from models.registry import build_backbone
from models.training.checkpoints import load_trained_backbone, restore_model_weights
from models.training.settings import Phase, two_phase_schedule
from models.training.trainer import TrainJob, build_trainer
from tests.conftest import SAMPLE_FASTA, one_family_per_objective, train_and_log, train_job

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """The bundled real sample through the Beam job, in 4 shards."""
    from beam_jobs import fasta_to_tfrecords

    out = tmp_path_factory.mktemp("data") / "sample"
    fasta_to_tfrecords.run(["--input", str(SAMPLE_FASTA), "--output-dir", str(out), "--num-shards", "4"])
    return out


def train_files(dataset_dir) -> tuple[str, ...]:
    return tuple(sorted(str(p) for p in (dataset_dir / "train").glob("data-*")))


def config(dataset_dir, tmp_path, phases=(Phase(128, 40, 16),), **overrides) -> TrainJob:
    settings = dict(log_every=10, checkpoint_every=20, warmup_steps=5, dropout=None)
    settings.update(overrides)
    return train_job(train_files(dataset_dir), tmp_path / "model", *phases, **settings)


def quiet(_: str) -> None:
    pass


def test_loss_falls_on_real_proteins(dataset_dir, tmp_path):
    _, metrics, losses = train_and_log(config(dataset_dir, tmp_path, phases=(Phase(128, 150, 16),), learning_rate=5e-3))
    assert losses[0] > 3.0  # about ln(21): no better than guessing among residues
    assert metrics["loss"] < losses[0] - 0.15, losses
    assert 0.0 < metrics["masked_accuracy"] < 1.0 and metrics["tokens_per_second"] > 0


def test_two_phases_run_in_order_and_count_optimizer_updates(dataset_dir, tmp_path):
    logged = []
    phases = (Phase(64, 6, 8), Phase(256, 4, 4))
    trainer = build_trainer(config(dataset_dir, tmp_path, phases=phases, accumulation_steps=2, log_every=2),
                            log=logged.append)
    trainer.train()
    assert trainer.step == 10
    assert [line.split(":")[0] for line in logged if line.startswith("phase")] == ["phase 1/2", "phase 2/2"]
    assert "length 256" in [line for line in logged if line.startswith("phase 2/2")][0]
    assert two_phase_schedule(400, 64) == (Phase(512, 300, 64), Phase(2048, 100, 16))


def test_a_new_trainer_resumes_from_the_latest_checkpoint(dataset_dir, tmp_path):
    first = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(128, 20, 8),)), log=quiet)
    first.train()
    weights = [w.numpy() for w in first.state.model.weights]
    logged = []
    second = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(128, 30, 8),)), log=logged.append)
    second.state.restore(second.job.model_dir)
    assert second.step == 20
    for restored, saved in zip(second.state.model.weights, weights):
        np.testing.assert_array_equal(restored.numpy(), saved)
    second.train()
    assert second.step == 30
    assert any(line.startswith("resumed from") and line.endswith("at step 20") for line in logged)


def test_a_diverged_run_stops_naming_it_and_neither_checkpoints_nor_exports_non_finite_weights(dataset_dir, tmp_path,
                                                                                               monkeypatch):
    from models.export.signatures import export_saved_model
    from models.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "MAX_NON_FINITE_UPDATES", 3)
    trainer = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(64, 10, 8),), checkpoint_every=1), log=quiet)
    table = trainer.state.backbone.weights[0]
    table.assign(tf.fill(table.shape, float("nan")))  # every loss from the first step on is NaN
    with pytest.raises(trainer_module.TrainingDiverged, match="NaN or infinite for 3 updates in a row .*lower "
                                                              "--learning-rate"):
        trainer.train()
    assert trainer.state.manager.latest_checkpoint is None and trainer.step == 3
    with pytest.raises(ValueError, match="not exported: .*weights hold NaN or infinite values"):
        export_saved_model(trainer.state.backbone, str(tmp_path / "export"))


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before_with_a_warning(dataset_dir, tmp_path):
    first = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(64, 4, 8),), checkpoint_every=2), log=quiet)
    first.train()
    newest = first.state.manager.latest_checkpoint
    assert newest.endswith("-4")
    data = Path(f"{newest}.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # cut short, as by a full disk
    logged = []
    second = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(64, 6, 8),), checkpoint_every=2),
                           log=logged.append)
    second.train()
    assert any(line.startswith(f"warning: checkpoint {newest} is not readable") for line in logged)
    assert any(line.startswith("resumed from") and line.endswith("-2 at step 2") for line in logged)
    assert second.step == 6


def test_the_position_table_stops_at_the_longest_trained_length(dataset_dir, tmp_path):
    trainer = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(64, 2, 8), Phase(96, 2, 4))), log=quiet)
    trainer.train()
    backbone, _ = load_trained_backbone(trainer.job.model_dir)
    assert backbone.max_sequence_length == 96  # not the tiny preset's 1026: positions past 96 were never trained
    assert embedding.default_window(backbone).residues == 94
    (windowed,) = embedding.embed(backbone, ["A" * 200])
    assert windowed.residues.shape == (200, 32)


def test_adamw_and_a_dropout_override_train(dataset_dir, tmp_path):
    trainer = build_trainer(config(dataset_dir, tmp_path, optimizer="adamw", learning_rate=1e-3, dropout=0.0,
                                   preset="small", phases=(Phase(64, 3, 8),)), log=quiet)
    metrics = trainer.train()
    assert type(trainer.state.optimizer).__name__ == "AdamW"
    assert trainer.state.backbone.dropout == trainer.state.backbone.attention_dropout == 0.0  # the small preset has 0.1
    assert np.isfinite(metrics["loss"])


def test_unknown_optimizer_is_refused(dataset_dir, tmp_path):
    with pytest.raises(ValueError, match="optimizer must be one of"):
        config(dataset_dir, tmp_path, optimizer="sgd")


def test_checkpoints_restore_into_a_model_without_its_optimizer(dataset_dir, tmp_path):
    from models.objectives.masked_lm import MaskedLM

    trainer = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(64, 3, 8),)), log=quiet)
    trainer.train()
    fresh = MaskedLM(build_backbone("protbert", "tiny", max_sequence_length=64))
    fresh.build({"token_ids": (None, None)})
    restore_model_weights(fresh, trainer.state.manager.latest_checkpoint)
    for restored, trained in zip(fresh.weights, trainer.state.model.weights):
        np.testing.assert_array_equal(restored.numpy(), trained.numpy())


def test_float16_training_scales_its_loss_and_keeps_float32_weights(dataset_dir, tmp_path):
    """(bfloat16, for every family: tests/task_checks.py.)"""
    import keras

    try:
        trainer = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(64, 4, 8),), mixed_precision="float16",
                                       log_every=2), log=quiet)
        metrics = trainer.train()
        assert np.isfinite(metrics["loss"]) and isinstance(trainer.state.optimizer, keras.optimizers.LossScaleOptimizer)
        assert trainer.state.model.backbone.compute_dtype == "float16"
        assert all(w.dtype == "float32" for w in trainer.state.model.trainable_weights)
    finally:
        keras.config.set_dtype_policy("float32")
    backbone, _ = load_trained_backbone(trainer.job.model_dir)  # a later process: the global policy is float32
    assert backbone.compute_dtype == "float32"
    (embedded,) = embedding.embed(backbone, ["MKTAYIAKQR"])
    assert embedded.residues.shape == (10, backbone.hidden_dim) and np.isfinite(embedded.residues).all()


def test_one_device_strategy_trains_and_writes_tensorboard_scalars(dataset_dir, tmp_path):
    trainer = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(64, 4, 8),), strategy="one_device",
                                   log_every=2), log=quiet)
    trainer.train()
    events = list((tmp_path / "model" / "tensorboard").glob("events.out.tfevents.*"))
    tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value}
    assert {"loss", "masked_accuracy", "perplexity", "learning_rate", "tokens_per_second"} <= tags


def test_xla_compiled_steps_train(dataset_dir, tmp_path):
    trainer = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(64, 4, 8),), jit_compile=True,
                                   steps_per_execution=2, log_every=2), log=quiet)
    assert np.isfinite(trainer.train()["loss"]) and trainer.step == 4


def test_the_train_command_exports_the_trained_weights_at_the_end_once(dataset_dir, tmp_path, capsys):
    from models.cli import train

    export_dir, model_dir = tmp_path / "serving" / "protbert", tmp_path / "model"
    command = ["--data", str(dataset_dir), "--model-dir", str(model_dir), "--export-dir", str(export_dir),
               "--preset", "tiny", "--steps", "3", "--global-batch", "8", "--sequence-length", "64"]
    assert train.main(command) == 0
    assert train.main(command) == 0  # a rerun of a finished run: the same model, no new version
    assert "already holds this model" in capsys.readouterr().out
    assert sorted(p.name for p in export_dir.iterdir()) == ["1"]
    signature = tf.saved_model.load(str(export_dir / "1")).signatures["serving_default"]
    sequences = tf.constant(["MKTAYIAKQR", "MSTNPKPQ"])
    served = signature(sequences=sequences)
    trained, _ = load_trained_backbone(str(model_dir))
    expected = embedding.embed_strings(trained, sequences)
    for name in ("residue_embeddings", "protein_embeddings", "lengths"):
        np.testing.assert_allclose(served[name].numpy(), expected[name].numpy(), atol=1e-5)


def test_cli_rejects_a_folder_without_shards(tmp_path, capsys):
    from models.cli import train

    code = train.main(["--data", str(tmp_path), "--family", "protbert", "--preset", "tiny", "--steps", "1",
                       "--global-batch", "2", "--model-dir", str(tmp_path / "m")])
    assert code == 2 and "no training shards match" in capsys.readouterr().err


def test_cli_refuses_a_dataset_without_records_up_front(tmp_path, capsys):
    from models.cli import train

    (tmp_path / "train").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "train" / "data-00000-of-00001.gz"), options="GZIP"):
        pass  # a shard with no record, as a job that rejected everything leaves
    code = train.main(["--data", str(tmp_path), "--preset", "tiny", "--steps", "1", "--global-batch", "2",
                       "--model-dir", str(tmp_path / "m")])
    error = capsys.readouterr().err
    assert code == 2 and "the training split holds no record" in error and "data-00000-of-00001.gz" in error


def test_a_truncated_shard_is_named(dataset_dir, tmp_path):
    damaged = tmp_path / "train"
    damaged.mkdir()
    for path in train_files(dataset_dir):
        (damaged / Path(path).name).write_bytes(Path(path).read_bytes())
    last = sorted(damaged.iterdir())[-1]
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    job = train_job(sorted(damaged.iterdir()), tmp_path / "model", Phase(64, 400, 16), preset="tiny", log_every=100)
    with pytest.raises(ValueError, match=f"cannot read {last}"):
        build_trainer(job, log=quiet).train()


def test_resuming_with_a_shape_changing_setting_names_the_setting(dataset_dir, tmp_path):
    build_trainer(config(dataset_dir, tmp_path, phases=(Phase(64, 2, 4),)), log=quiet).train()
    shorter = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(32, 4, 4),)), log=quiet)
    with pytest.raises(ValueError, match="max_sequence_length: 64 there, 32 now"):
        shorter.train()


def test_sigterm_ends_a_run_whose_step_never_finishes(dataset_dir, tmp_path, monkeypatch):
    from models.training import trainer as trainer_module

    exits, logged = [], []
    monkeypatch.setattr(trainer_module, "SIGTERM_GRACE_S", 0.2)
    monkeypatch.setattr(trainer_module.os, "_exit", exits.append)
    stalled = build_trainer(config(dataset_dir, tmp_path, phases=(Phase(64, 2, 4),)), log=logged.append)
    stalled._on_sigterm(signal.SIGTERM, None)  # and no step returns: input that never comes
    time.sleep(1.0)
    assert exits == [143] and "no step finished within" in logged[-1]


def _train_command(dataset_dir, model_dir, steps, *extra, family="protalbert"):
    return [sys.executable, "-m", "models.cli.train", "--data", str(dataset_dir), "--family", family,
            "--preset", "tiny", "--steps", str(steps), "--global-batch", "8", "--sequence-length", "64",
            "--model-dir", str(model_dir), "--checkpoint-every", "5", "--log-every", "5", *extra]


def _wait_for_checkpoint(model_dir: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not (model_dir / "checkpoints").exists() or not tf.train.latest_checkpoint(str(model_dir / "checkpoints")):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "no checkpoint written"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_run_resumes_where_its_checkpoints_left_off(dataset_dir, tmp_path, how):
    model_dir = tmp_path / "model"
    proc = subprocess.Popen(_train_command(dataset_dir, model_dir, 100_000), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(model_dir, proc)
    proc.send_signal(getattr(signal, how))
    out, _ = proc.communicate(timeout=120)
    if how == "SIGTERM":
        assert proc.returncode == 143 and "preempted (SIGTERM): checkpoint saved at step" in out
    # What the manager recorded as complete (a kill may leave a newer, unrecorded, partial one).
    saved = int(tf.train.latest_checkpoint(str(model_dir / "checkpoints")).rsplit("-", 1)[1])
    resumed = subprocess.run(_train_command(dataset_dir, model_dir, saved + 5), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {saved}" in resumed.stdout
    assert f"step {saved + 5:>7}/{saved + 5}" in resumed.stdout


@pytest.mark.slow
@pytest.mark.parametrize("family", one_family_per_objective())
def test_mirrored_strategy_trains_on_two_replicas(dataset_dir, tmp_path, family):
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from models.training.settings import Phase
        from models.training.trainer import build_trainer
        from tests.conftest import train_job
        job = train_job({train_files(dataset_dir)!r}, {str(tmp_path / "m")!r}, Phase(64, 6, 8), family={family!r},
                        strategy="mirrored", log_every=3)
        trainer = build_trainer(job)
        metrics = trainer.train()
        print("replicas", trainer.state.strategy.num_replicas_in_sync, "loss", metrics["loss"])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=REPO, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(text for text in result.stdout.splitlines() if text.startswith("replicas"))
    assert line.split()[1] == "2" and np.isfinite(float(line.split()[3]))


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
# The default family and the one whose state carries memory across steps: what differs between objectives under a
# strategy is covered for each by the mirrored-strategy test; this one is about the processes.
@pytest.mark.parametrize("family", ["protbert", "prottxl"])
def test_multi_worker_strategy_trains_across_two_processes(dataset_dir, tmp_path, family):
    import json

    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for task in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": task}}
        procs.append(subprocess.Popen(
            _train_command(dataset_dir, tmp_path / "model", 6, "--strategy", "multi_worker", "--log-every", "3",
                           family=family),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config), "CUDA_VISIBLE_DEVICES": ""}))
    outputs = [proc.communicate(timeout=400) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    chief_out = outputs[0][0]
    assert "on 2 replica(s)" in chief_out and "step       6/6" in chief_out
    # Both workers end with the same weights: the chief's checkpoint and the other worker's own.
    chief = tf.train.load_checkpoint(str(tmp_path / "model" / "checkpoints"))
    other = tf.train.load_checkpoint(str(tmp_path / "model" / "checkpoints" / "worker_temp_1"))
    # (Checkpoint keys are shortest object paths: most weights are keyed through the optimizer.)
    names = [name for name, _ in tf.train.list_variables(str(tmp_path / "model" / "checkpoints"))
             if "/.ATTRIBUTES/" in name and not name.startswith("save_counter")]
    assert len(names) > 20 and chief.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 6
    for name in names:
        np.testing.assert_array_equal(chief.get_tensor(name), other.get_tensor(name))


PROTBERT_CHECKPOINT = REPO / "tests" / "fixtures" / "hf" / "protbert"


def _valid_losses(output: str) -> dict[int, float]:
    return {int(line.split()[1]): float(line.split("loss ")[1].split()[0])
            for line in output.splitlines() if line.startswith("valid")}


def test_training_continues_from_a_transformers_checkpoint_a_training_folder_or_our_saved_model(dataset_dir, tmp_path,
                                                                                               capsys):
    """`--init-from` a transformers folder: its config, vocabulary and LM head, validated before the first step;
    then `--init-from` that run's folder, or the SavedModel it exported (its TF Serving model folder), starts where
    it ended (the same valid batches give the same loss)."""
    from models.cli import train

    common = ["--data", str(dataset_dir), "--family", "protbert", "--steps", "3", "--global-batch", "4",
              "--sequence-length", "64", "--eval-every", "0", "--eval-batches", "2", "--log-every", "1"]
    first_dir = tmp_path / "continued"
    assert train.main([*common, "--init-from", str(PROTBERT_CHECKPOINT), "--model-dir", str(first_dir),
                       "--export-dir", str(tmp_path / "serving")]) == 0
    first = capsys.readouterr().out
    assert f"initialised from the protbert checkpoint in {PROTBERT_CHECKPOINT}" in first
    first_valid = _valid_losses(first)
    assert sorted(first_valid) == [0, 3]
    trained, _ = load_trained_backbone(str(first_dir))
    assert trained.max_sequence_length == 64 and trained.token_rows is not None  # the checkpoint's own config
    served = tf.saved_model.load(str(tmp_path / "serving" / "1")).signatures["serving_default"]
    assert served(sequences=tf.constant(["MKTAYIAKQRX"]))["residue_embeddings"].shape == (1, 11, 32)

    assert train.main([*common, "--init-from", str(first_dir), "--model-dir", str(tmp_path / "again")]) == 0
    again = capsys.readouterr().out
    assert f"initialised from {first_dir}" in again
    assert _valid_losses(again)[0] == pytest.approx(first_valid[3], rel=1e-5)

    assert train.main([*common, "--init-from", str(tmp_path / "serving"), "--model-dir", str(tmp_path / "saved")]) == 0
    from_saved_model = capsys.readouterr().out
    assert f"initialised from the SavedModel {tmp_path / 'serving' / '1'}" in from_saved_model
    assert _valid_losses(from_saved_model)[0] == pytest.approx(first_valid[3], rel=1e-5)


@pytest.mark.parametrize("flags, message", [
    (["--family", "protalbert", "--init-from", str(PROTBERT_CHECKPOINT)], "expects a 'albert' checkpoint, not 'bert'"),
    (["--family", "protbert", "--init-from", str(PROTBERT_CHECKPOINT), "--sequence-length", "128"],
     "its position table holds 64 positions"),
    (["--family", "protbert", "--init-from", "/no/such/checkpoint"], "no such folder"),
])
def test_an_unusable_starting_checkpoint_is_refused_naming_why(dataset_dir, tmp_path, capsys, flags, message):
    from models.cli import train

    code = train.main(["--data", str(dataset_dir), "--steps", "1", "--global-batch", "2", "--model-dir",
                       str(tmp_path / "m"), *flags])
    assert code != 0 and message in capsys.readouterr().err


def test_a_saved_model_that_cannot_continue_training_is_refused_naming_why(dataset_dir, tmp_path, capsys):
    """Training continues an objective: a SavedModel exported without its head (encoder-only, fine-tuned), one of
    another family, and one exported before SavedModels listed their weights by name are each refused."""
    from models.cli import train
    from models.export.signatures import MODEL_INFO, export_saved_model

    backbone_only = export_saved_model(build_backbone("protbert", "tiny"), str(tmp_path / "serving"))
    unlisted = tmp_path / "unlisted"
    shutil.copytree(backbone_only, unlisted)
    info_path = unlisted / "assets.extra" / MODEL_INFO
    info = json.loads(info_path.read_text())
    del info["weights"]
    info_path.write_text(json.dumps(info))
    for family, folder, message in [("protbert", backbone_only, "without its masked_lm head"),
                                    ("prottxl", backbone_only, "holds a EncoderBackbone model"),
                                    ("protbert", str(unlisted), "does not list its weights by name")]:
        code = train.main(["--data", str(dataset_dir), "--steps", "1", "--global-batch", "2", "--family", family,
                           "--init-from", folder, "--model-dir", str(tmp_path / family)])
        assert code != 0 and message in capsys.readouterr().err
