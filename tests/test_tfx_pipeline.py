"""The TFX pipeline end to end on LocalDagRunner (tiny model, small probe sets): it pushes a blessed model that
serves embeddings and its probes' predictions, serves reruns from the ML Metadata cache, refuses to push when the gate fails (a model that learned nothing, a missed floor), compares a
retrained model with the last blessed one, resumes a killed run, serves a fine-tuned model when asked, and compiles
for Vertex AI."""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.training.settings import TrainingSettings
from tests.conftest import one_family_per_objective
from tfx_pipeline.config import load_config
from tfx_pipeline.summary import last_run

REPO = Path(__file__).resolve().parents[1]
TINY = ["training.preset=tiny", "training.steps=6", "training.global_batch=8", "training.sequence_length=64",
        "training.warmup_steps=2", "training.checkpoint_every=3",
        "probe_limit=30", "probe_seeds=2"]
# A tiny model trained for 6 steps learns nothing: these runs test the plumbing under a gate that lets it through.
PERMISSIVE_GATE = ["gate.min_context_gain=null", "gate.onehot_margin=1.0", "gate.regression_margin=1.0"]


def run_pipeline(output_dir: Path, *overrides: str):
    from tfx_pipeline.runners import local

    config = load_config(None, [f"output_dir={output_dir}", *TINY, *PERMISSIVE_GATE, *overrides])
    local.run(config)
    return config, {node.node: node for node in last_run(config)}


def versions(config) -> list[str]:
    folder = config.serving_model_dir("local")
    return sorted(name for name in os.listdir(folder) if name.isdigit()) if os.path.isdir(folder) else []


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("pipeline")
    config, nodes = run_pipeline(output_dir)
    return output_dir, config, nodes


@pytest.mark.slow
def test_a_run_trains_probes_blesses_and_pushes_a_model_that_serves_embeddings(first_run):
    _, config, nodes = first_run
    assert [nodes[n].state for n in ("FastaExampleGen", "Trainer", "ProbeEvaluator", "Pusher")] == ["COMPLETE"] * 4
    examples = nodes["FastaExampleGen"].outputs["examples"][0]
    assert examples.custom_properties["records_read"].int_value == 2000  # the bundled sample, reconciled
    evaluation = nodes["ProbeEvaluator"].outputs["evaluation"][0].uri
    metrics = json.loads(Path(evaluation, "metrics.json").read_text())
    assert 0.0 <= metrics["ss"]["test"]["q3"] <= 1.0 and 0.0 <= metrics["localization"]["test"]["q10"] <= 1.0
    assert "baseline" in metrics and any(p.suffix == ".png" for p in Path(evaluation).iterdir())
    assert json.loads(Path(evaluation, "blessing.json").read_text())["blessed"] is True

    (version,) = versions(config)
    served = tf.saved_model.load(os.path.join(config.serving_model_dir("local"), version))
    outputs = served.signatures["serving_default"](sequences=tf.constant(["MKTAYIAKQRQISFVKSHFSRQ", "MSTNPKPQ"]))
    assert outputs["residue_embeddings"].shape == (2, 22, 32)
    np.testing.assert_array_equal(outputs["lengths"].numpy(), [22, 8])
    predicted = served.signatures["predict"](sequences=tf.constant(["MKTAYIAKQRQISFVKSHFSRQ", "MSTNPKPQ"]))
    assert predicted["ss3"].shape == (2, 22) and predicted["location_probabilities"].shape == (2, 10)


@pytest.mark.slow
def test_after_a_blessed_run_the_readme_next_steps_work_with_the_folder_it_prints(first_run):
    from tfx_pipeline.summary import describe_last_run

    output_dir, config, _ = first_run
    outcome = describe_last_run(config)
    assert outcome.blessed and outcome.model_dir == config.serving_model_dir("local")
    assert f"next: use the pushed model in {outcome.model_dir}:" in outcome.text
    run_readme_followups(Path(outcome.model_dir), output_dir / "blessed_followups")
    from tfx_pipeline import cli

    assert cli.main(["run", "--fail-if-not-blessed", *cli_sets(output_dir)]) == 0


def cli_sets(output_dir: Path, *overrides: str) -> list[str]:
    """`--set` flags for the tests' tiny, permissive run in `output_dir`, then `overrides`."""
    return [arg for override in [f"output_dir={output_dir}", *TINY, *PERMISSIVE_GATE, *overrides]
            for arg in ("--set", override)]


def readme_followups() -> list[str]:
    """The shell commands of the README's "Then" section, continuation lines joined, comments dropped."""
    section = (REPO / "README.md").read_text().split("\n## Then", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        commands += [" ".join(line.split()) for line in block.replace("\\\n", " ").splitlines()
                     if line.strip() and not line.lstrip().startswith("#")]
    return commands


def run_readme_followups(model_dir: Path, work: Path) -> None:
    """Run the README's next steps on `model_dir` (the folder a run printed) and a few proteins of the sample."""
    work.mkdir()
    with gzip.open(REPO / "beam_jobs" / "sample_data" / "uniprot_sample.fasta.gz", "rt") as handle:
        entries = handle.read().split(">")[1:13]
    (work / "sample.fasta").write_text("".join(">" + entry for entry in entries))
    with socket.socket() as probe_port:
        probe_port.bind(("localhost", 0))
        port = probe_port.getsockname()[1]
    substitutions = {".venv/bin/": os.path.dirname(sys.executable) + "/",
                     "prottrans-pipeline/serving/protbert": str(model_dir),
                     "beam_jobs/sample_data/uniprot_sample.fasta.gz": str(work / "sample.fasta"),
                     "'beam_jobs/sample_data/*.fasta.gz'": str(work / "sample.fasta"), " out/": f" {work}/out/",
                     "8500": str(port)}
    commands = readme_followups()
    assert len(commands) == 5 and all("prottrans-pipeline/serving/protbert" in c or "--server" in c for c in commands)
    server = None
    try:
        for command in commands:
            for old, new in substitutions.items():
                command = command.replace(old, new)
            if command.endswith("&"):
                server = subprocess.Popen(shlex.split(command[:-1]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True)
                wait_for_port(port, server)
                continue
            done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=300, cwd=REPO)
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    finally:
        if server is not None:
            server.terminate()
            server.communicate(timeout=30)
    assert (work / "out" / "sample_embeddings.h5").exists() and (work / "out" / "sample_embeddings_served.h5").exists()
    predictions = (work / "out" / "sample_predictions.tsv").read_text().splitlines()
    assert len(predictions) > 12 and any(p.endswith(".h5") for p in os.listdir(work / "out" / "sample_embeddings_beam"))


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()[0][-3000:]
        with socket.socket() as client:
            if client.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on port {port} after {seconds} s")


@pytest.mark.slow
def test_a_rerun_with_unchanged_inputs_is_served_from_the_cache(first_run):
    output_dir, config, _ = first_run
    _, nodes = run_pipeline(output_dir)
    assert nodes["FastaExampleGen"].state == nodes["Trainer"].state == "CACHED"  # no re-reading, no retraining
    # The resolver now hands the evaluator this same model as the last blessed one, so it runs again, but it
    # reuses that blessing's probe report instead of embedding again, and the model is not pushed twice.
    report = json.loads(Path(nodes["ProbeEvaluator"].outputs["evaluation"][0].uri, "blessing.json").read_text())
    assert report["blessed"] and report["baseline"] == report["candidate"]
    assert nodes["ProbeEvaluator"].seconds < 10
    assert len(versions(config)) == 1


@pytest.mark.slow
def test_with_finetuning_on_the_pusher_serves_the_fine_tuned_model_with_its_own_heads(first_run):
    from tfx_pipeline.summary import describe_last_run

    output_dir, _, _ = first_run
    # Its own serving folder, so the tests after it count the default folder's versions as before; the evaluator
    # meets this same model as the last blessed one and reuses its report.
    config, nodes = run_pipeline(output_dir, "finetune.enabled=true", "finetune.epochs=1", "finetune.method=full",
                                 "model_name=protbert-finetuned")
    assert nodes["Trainer"].state == "CACHED" and nodes["Finetuner"].state == "COMPLETE"
    metrics = json.loads(Path(nodes["Finetuner"].outputs["evaluation"][0].uri, "metrics.json").read_text())
    assert metrics["method"] == "full" and "ss/test/q3" in metrics["paired"]["frozen"]
    (version,) = versions(config)
    path = Path(config.serving_model_dir("local"), version)
    assert json.loads((path / "assets.extra" / "finetune_report.json").read_text())["method"] == "full"
    served = tf.saved_model.load(str(path))
    predicted = served.signatures["predict"](sequences=tf.constant(["MKTAYIAKQRQISFVKSHFSRQ"]))
    assert predicted["ss3"].shape == (1, 22) and predicted["location_probabilities"].shape == (1, 10)
    text = describe_last_run(config).text
    assert "fine-tuned (full" in text and "frozen probe" in text and f"pushed model: {path}" in text


@pytest.mark.slow
def test_a_model_that_misses_a_threshold_is_not_pushed(first_run):
    output_dir, config, _ = first_run
    _, nodes = run_pipeline(output_dir, "gate.floors={q3: 0.99}")
    assert nodes["Trainer"].state == "CACHED"  # only the evaluation changed
    blessing = nodes["ProbeEvaluator"].outputs["blessing"][0]
    assert blessing.custom_properties["blessed"].int_value == 0
    assert nodes["Pusher"].outputs["pushed_model"][0].custom_properties["pushed"].int_value == 0
    assert len(versions(config)) == 1


@pytest.mark.slow
def test_by_default_a_model_that_learned_nothing_is_refused_and_the_summary_says_why(first_run):
    from tfx_pipeline.summary import describe_last_run

    output_dir, config, _ = first_run
    config, nodes = run_pipeline(output_dir, "gate.min_context_gain=0.0", "gate.onehot_margin=0.0",
                                 "gate.regression_margin=0.01")
    assert nodes["Trainer"].state == "CACHED"
    report = json.loads(Path(nodes["ProbeEvaluator"].outputs["evaluation"][0].uri, "blessing.json").read_text())
    assert report["blessed"] is False
    assert any(line.startswith("valid context gain") for line in report["failed"])
    assert report["training_summary"]["valid"]["context_gain"] < 0.1
    assert nodes["Pusher"].outputs["pushed_model"][0].custom_properties["pushed"].int_value == 0
    outcome = describe_last_run(config)
    assert "NOT BLESSED" in outcome.text and "valid context gain" in outcome.text and "one-hot" in outcome.text
    # The refused model is kept, with its heads, outside the serving root, and the README's next steps work on it.
    assert outcome.blessed is False and outcome.model_dir == config.candidate_model_dir("local")
    assert not outcome.model_dir.startswith(os.path.dirname(config.serving_model_dir("local")))
    assert "the gate refused this run's model" in outcome.text and outcome.model_dir in outcome.text
    run_readme_followups(Path(outcome.model_dir), output_dir / "refused_followups")
    # For CI, the opt-in flag turns the refusal into a non-zero exit.
    from tfx_pipeline import cli

    refusing = ["gate.min_context_gain=0.0", "gate.onehot_margin=0.0", "gate.regression_margin=0.01"]
    assert cli.main(["run", "--fail-if-not-blessed", *cli_sets(output_dir, *refusing)]) == cli.NOT_BLESSED_STATUS


@pytest.mark.slow
def test_a_new_config_retrains_and_is_compared_with_the_last_blessed_model(first_run):
    output_dir, config, nodes = first_run
    first_model = nodes["Trainer"].outputs["model"][0].uri
    _, nodes = run_pipeline(output_dir, "training.steps=8")
    assert nodes["Trainer"].state == "COMPLETE"
    report = json.loads(Path(nodes["ProbeEvaluator"].outputs["evaluation"][0].uri, "blessing.json").read_text())
    assert report["baseline_model"] == first_model
    assert any("last blessed" in check for check in report["checks"])
    assert report["blessed"] and len(versions(config)) == 2


def _pipeline_command(output_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "tfx_pipeline.cli", "run", *cli_sets(output_dir, *overrides)]


@pytest.mark.slow
def test_a_killed_run_resumes_training_from_its_checkpoints(tmp_path):
    long = ("training.steps=400", "training.checkpoint_every=5")
    proc = subprocess.Popen(_pipeline_command(tmp_path, *long), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 300
    while not list(tmp_path.glob("checkpoints/*/checkpoints/ckpt-*.index")):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "no checkpoint written"
        time.sleep(0.5)
    proc.kill()
    proc.communicate()
    rerun = subprocess.run(_pipeline_command(tmp_path, *long), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from" in rerun.stdout
    assert "FastaExampleGen                  CACHED" in rerun.stdout


def test_the_pipeline_compiles_for_vertex_ai_and_kfp_loads_the_spec(tmp_path):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from tfx_pipeline.runners import vertex

    config = load_config(None, [
        "input_base=gs://bucket/uniref50", "vertex.project=my-project", "vertex.pipeline_root=gs://bucket/prottrans", "vertex.image=gcr.io/p/prottrans:1",
        "vertex.trainer=gpu", "vertex.machine_type=a2-highgpu-4g", "vertex.accelerator_type=NVIDIA_TESLA_A100",
        "vertex.accelerator_count=4", "vertex.replica_count=2", f"vertex.spec_file={tmp_path / 'spec.json'}",
        "finetune.enabled=true",
    ])
    spec_file = vertex.compile_spec(config)
    job = json.loads(Path(spec_file).read_text())
    spec = json_format.ParseDict(job["pipelineSpec"] if "pipelineSpec" in job else job,
                                 pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=True)
    tasks = set(spec.root.dag.tasks)
    assert {"FastaExampleGen", "Trainer", "ProbeEvaluator", "Finetuner", "Pusher"} <= tasks
    assert any(task.startswith("latest_blessed_model_resolver") for task in tasks)
    text = Path(spec_file).read_text()
    assert "gcr.io/p/prottrans:1" in text and "models.training.run_fn.run_fn" in text
    assert "a2-highgpu-4g" in text and "multi_worker" in text and "gs://bucket/prottrans/checkpoints" in text


def test_a_second_run_on_one_output_folder_is_refused_while_the_first_runs(tmp_path, capsys):
    from beam_jobs.output_lock import OutputLock
    from tfx_pipeline import cli

    output_dir = tmp_path / "pipeline"
    with OutputLock(str(output_dir), "prottrans-pipeline run"):
        assert cli.main(["run", "--set", f"output_dir={output_dir}", "--set", "training.preset=tiny"]) == 2
    assert f"{output_dir} is being written by another run (prottrans-pipeline run, pid" in capsys.readouterr().err
    assert not (output_dir / "metadata.sqlite").exists()


def test_the_cli_refuses_a_bad_override(capsys):
    from tfx_pipeline import cli

    assert cli.main(["run", "--set", "stepz=3"]) == 2
    assert "unknown config key 'stepz'" in capsys.readouterr().err


@pytest.mark.parametrize("family", one_family_per_objective(leaving_out=TrainingSettings().family))
def test_the_trainer_component_s_run_fn_trains_and_exports_a_family_of_each_other_objective(tmp_path, family):
    """What the pipeline runs per family is the Trainer's run_fn (the rest of the DAG takes any SavedModel): each
    objective through it here, and one of them through the whole pipeline in the slow test below."""
    from types import SimpleNamespace

    from beam_jobs import fasta_to_tfrecords
    from models.export.signatures import read_model_info
    from models.training.run_fn import custom_config, run_fn
    from tests.conftest import SAMPLE_FASTA

    data = tmp_path / "data"
    fasta_to_tfrecords.run(["--input", str(SAMPLE_FASTA), "--output-dir", str(data), "--num-shards", "2"])
    settings = TrainingSettings(family=family, preset="tiny", global_batch=8, sequence_length=64, log_every=2,
                                eval_batches=2)
    fn_args = SimpleNamespace(train_steps=4, custom_config=custom_config(settings, str(tmp_path / "checkpoints")),
                              model_run_dir=str(tmp_path / "model_run"),
                              train_files=[str(data / "train" / "*")], eval_files=[str(data / "valid" / "*")],
                              serving_model_dir=str(tmp_path / "serving_model"))
    run_fn(fn_args)
    info = read_model_info(str(tmp_path / "serving_model"))
    assert info["backbone_config"]["num_layers"] == 2
    served = tf.saved_model.load(str(tmp_path / "serving_model")).signatures["serving_default"](
        sequences=tf.constant(["MKTAYIAKQR"]))
    assert served["residue_embeddings"].shape == (1, 10, 32)


def test_the_trainer_continues_from_a_published_checkpoint_keyed_by_its_contents(tmp_path):
    """``training.init_from``: the run_fn starts from the transformers folder (its vocabulary kept in the served
    model) and keeps its checkpoints under a key that holds the folder's digest."""
    from types import SimpleNamespace

    from beam_jobs import fasta_to_tfrecords
    from models.export.signatures import read_model_info
    from models.training.run_fn import INIT_FROM_DIGEST, custom_config, folder_digest, run_fn
    from tests.conftest import SAMPLE_FASTA

    checkpoint = Path(__file__).resolve().parent / "fixtures" / "hf" / "protbert"
    data = tmp_path / "data"
    fasta_to_tfrecords.run(["--input", str(SAMPLE_FASTA), "--output-dir", str(data), "--num-shards", "2"])
    settings = TrainingSettings(init_from=str(checkpoint), global_batch=4, sequence_length=64, log_every=2,
                                eval_batches=2)
    custom = custom_config(settings, str(tmp_path / "checkpoints"))
    assert custom[INIT_FROM_DIGEST] == folder_digest(str(checkpoint))
    fn_args = SimpleNamespace(train_steps=2, custom_config=custom, model_run_dir=str(tmp_path / "model_run"),
                              train_files=[str(data / "train" / "*")], eval_files=[str(data / "valid" / "*")],
                              serving_model_dir=str(tmp_path / "serving_model"))
    run_fn(fn_args)
    config = read_model_info(str(tmp_path / "serving_model"))["backbone_config"]
    assert config["max_sequence_length"] == 64 and config["token_rows"]  # the checkpoint's, not a preset's


@pytest.mark.slow
def test_a_family_of_another_objective_runs_through_the_same_pipeline_by_name(first_run):
    family = "prottxl"  # the objective least like the default's: a causal LM whose state carries memory
    output_dir, _, _ = first_run
    config, nodes = run_pipeline(output_dir, f"training.family={family}")
    assert nodes["FastaExampleGen"].state == "CACHED" and nodes["Trainer"].state == "COMPLETE"
    (version,) = versions(config)
    assert config.serving_model_dir("local").endswith(family)
    served = tf.saved_model.load(os.path.join(config.serving_model_dir("local"), version))
    outputs = served.signatures["serving_default"](sequences=tf.constant(["MKTAYIAKQR"]))
    assert outputs["residue_embeddings"].shape == (1, 10, 32)

