"""The pipeline's typed config, the blessing rules and the Trainer's settings: pure functions, no TFX run."""

from __future__ import annotations

import pytest

from tfx_pipeline import blessing
from tfx_pipeline.config import load_config


def test_a_config_file_and_overrides_change_the_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("training:\n  preset: tiny\n  steps: 50\nthresholds: {q3: 0.6}\nvertex:\n  project: p\n")
    config = load_config(str(path), ["training.steps=70", "vertex.region=europe-west4", "input_patterns=uniref*.fasta.gz"])
    assert (config.training.preset, config.training.steps, config.thresholds) == ("tiny", 70, {"q3": 0.6})
    assert (config.vertex.project, config.vertex.region) == ("p", "europe-west4")
    assert config.input_patterns == ["uniref*.fasta.gz"]


@pytest.mark.parametrize("override, message", [
    ("stepz=3", "unknown config key 'stepz'"),
    ("training.stepz=3", "unknown config key 'training.stepz'"),
    ("training.steps=many", "training.steps: expected int"),
    ("training.steps=0", "steps and global_batch must be >= 1"),
    ("training.family=protgpt", "unknown model family 'protgpt'"),
    ("dedup=3", "dedup: expected bool"),
    ("vertex.trainer=quantum", "vertex.trainer must be cpu, gpu or tpu"),
    ("training.steps", "expected KEY=VALUE"),
])
def test_bad_settings_are_refused_with_the_key_named(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_local_outputs_live_under_the_output_folder(tmp_path):
    config = load_config(None, [f"output_dir={tmp_path}"])
    assert config.metadata_path() == str(tmp_path / "metadata.sqlite")
    assert config.serving_model_dir("local") == str(tmp_path / "serving" / "protbert")
    with pytest.raises(ValueError, match="vertex.pipeline_root"):
        config.pipeline_root("vertex")
    with pytest.raises(ValueError, match="input_base is this machine's bundled sample"):
        load_config(None, ["vertex.pipeline_root=gs://b/p"]).pipeline_root("vertex")


CANDIDATE = {"ss/test/q3": 0.70, "ss/test/q8": 0.55, "localization/test/q10": 0.50, "localization/test/q2": 0.80}


def test_a_model_is_blessed_only_if_every_floor_holds():
    checks = blessing.judge(CANDIDATE, {"q3": 0.65, "q10": 0.45}, None, 0.0)
    assert [c.metric for c in checks] == ["localization/test/q10", "ss/test/q3"] and all(c.passed for c in checks)
    (failed,) = [c for c in blessing.judge(CANDIDATE, {"q3": 0.75}, None, 0.0) if not c.passed]
    assert failed.describe() == "ss/test/q3 0.7000 < 0.7500 (floor)"


def test_a_regression_beyond_the_tolerance_against_the_last_blessed_model_fails():
    baseline = {**CANDIDATE, "ss/test/q3": 0.73}
    within = blessing.judge(CANDIDATE, {}, baseline, tolerance=0.05)
    assert len(within) == 4 and all(c.passed for c in within)
    beyond = [c for c in blessing.judge(CANDIDATE, {}, baseline, tolerance=0.02) if not c.passed]
    assert [c.metric for c in beyond] == ["ss/test/q3"]


def test_thresholds_must_name_measured_metrics():
    with pytest.raises(ValueError, match="unknown metrics"):
        blessing.judge(CANDIDATE, {"q4": 0.5}, None, 0.0)
    with pytest.raises(ValueError, match="did not measure"):
        blessing.judge({"ss/test/q3": 0.7}, {"q10": 0.5}, None, 0.0)


def test_headline_metrics_come_from_a_probe_report():
    report = {"ss": {"test": {"q3": 0.7, "q8": 0.5, "n_residues": 10}}, "localization": {}, "embedder": "x"}
    assert blessing.headline_metrics(report) == {"ss/test/q3": 0.7, "ss/test/q8": 0.5}


def test_trainer_settings_refuse_unknown_keys_and_ignore_vertex_job_keys():
    import dataclasses

    from models.training.run_fn import checkpoint_dir, custom_config, training_settings
    from models.training.settings import TrainingSettings

    custom = {**custom_config(TrainingSettings(preset="tiny"), "/x"), "ai_platform_training_args": {}}
    settings = training_settings(custom, steps=10)
    assert (settings.preset, settings.steps) == ("tiny", 10)
    with pytest.raises(ValueError, match="unknown training settings"):
        training_settings({"training": {"presett": "tiny"}})
    with pytest.raises(ValueError, match="training settings go under 'training'"):
        training_settings({"preset": "tiny"})
    same = checkpoint_dir(["/e/Split-train/*"], settings, "/root")
    assert same == checkpoint_dir(["/e/Split-train/*"], training_settings(custom, steps=10), "/root")
    assert same != checkpoint_dir(["/e/Split-train/*"], dataclasses.replace(settings, steps=11), "/root")


def test_the_pipeline_config_and_the_train_command_share_one_set_of_training_defaults():
    from models.cli import train
    from models.training.settings import TrainingSettings

    args = train.parse_args(["--data", "d", "--model-dir", "m"])
    from_flags = {name: getattr(args, name) for name in TrainingSettings().to_dict()}
    assert from_flags == TrainingSettings().to_dict() == load_config(None, []).training.to_dict()
    args = train.parse_args(["--data", "d", "--model-dir", "m", "--optimizer", "lamb", "--dropout", "none",
                             "--two-phase", "--warmup-steps", "7"])
    assert (args.optimizer, args.dropout, args.two_phase, args.warmup_steps) == ("lamb", None, True, 7)


def test_fasta_example_gen_keeps_the_valid_fraction_in_its_split_buckets():
    from tfx_pipeline.components import fasta_example_gen as gen

    assert gen._valid_fraction(gen._output_config(0.05)) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="valid_fraction"):
        gen._output_config(0.0)
    packed = gen._custom_config({"max_length": 1000, "dedup": True})
    from google.protobuf import json_format
    assert gen._settings(json_format.MessageToJson(packed)) == {"max_length": 1000, "dedup": True}
    with pytest.raises(ValueError, match="unknown preprocessing settings"):
        gen._custom_config({"max_len": 10})
