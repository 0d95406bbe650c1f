"""The pipeline's typed config, the blessing rules and the Trainer's settings: pure functions, no TFX run."""

from __future__ import annotations

import pytest

from tfx_pipeline import blessing
from tfx_pipeline.config import load_config


def test_a_config_file_and_overrides_change_the_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("preset: tiny\nsteps: 50\nthresholds: {q3: 0.6}\nvertex:\n  project: p\n")
    config = load_config(str(path), ["steps=70", "vertex.region=europe-west4", "input_patterns=uniref*.fasta.gz"])
    assert (config.preset, config.steps, config.thresholds) == ("tiny", 70, {"q3": 0.6})
    assert (config.vertex.project, config.vertex.region) == ("p", "europe-west4")
    assert config.input_patterns == ["uniref*.fasta.gz"]


@pytest.mark.parametrize("override, message", [
    ("stepz=3", "unknown config key 'stepz'"),
    ("steps=many", "steps: expected int"),
    ("dedup=3", "dedup: expected bool"),
    ("vertex.trainer=quantum", "vertex.trainer must be cpu, gpu or tpu"),
    ("steps", "expected KEY=VALUE"),
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
    from models.training.run_fn import checkpoint_dir, training_settings

    settings = training_settings({"preset": "tiny", "ai_platform_training_args": {}, "checkpoint_root": "/x"})
    assert settings["preset"] == "tiny" and "ai_platform_training_args" not in settings
    with pytest.raises(ValueError, match="unknown training settings"):
        training_settings({"presett": "tiny"})
    same = checkpoint_dir(["/e/Split-train/*"], 10, settings, "/root")
    assert same == checkpoint_dir(["/e/Split-train/*"], 10, dict(settings), "/root")
    assert same != checkpoint_dir(["/e/Split-train/*"], 11, settings, "/root")


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
