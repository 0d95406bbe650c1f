"""The pipeline's typed config, the blessing rules and the Trainer's settings: pure functions, no TFX run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfx_pipeline import blessing
from tfx_pipeline.config import load_config


def test_a_config_file_and_overrides_change_the_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("training:\n  preset: tiny\n  steps: 50\ngate:\n  floors: {q3: 0.6}\nvertex:\n  project: p\n")
    config = load_config(str(path), ["training.steps=70", "vertex.region=europe-west4", "input_patterns=uniref*.fasta.gz",
                                     "gate.min_context_gain=null"])
    assert (config.training.preset, config.training.steps, config.gate.floors) == ("tiny", 70, {"q3": 0.6})
    assert config.gate.min_context_gain is None
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
    ("training.preset=huge", "training: protbert has no preset 'huge'"),
    ("valid_fraction=2.0", "valid_fraction must be in"),
    ("gate.floors={q3: high}", "gate.floors.q3: expected float, got 'high'"),
    ("training.steps=[1", "--set training.steps=\\[1: not valid YAML: line 1, column 3"),
    ("training.learning_rate=.nan", "learning_rate must be in \\(0, 1.0\\], not nan"),
    ("training.learning_rate=.inf", "learning_rate must be in \\(0, 1.0\\], not inf"),
    ("training.learning_rate=1.0e+6", "learning_rate must be in \\(0, 1.0\\], not 1000000.0"),
    ("training.weight_decay=-.inf", "weight_decay must be in \\[0, 1\\), not -inf"),
    ("training.gradient_clip_norm=-1", "gradient_clip_norm must be >= 0 and finite, not -1.0"),
    ("training.gradient_clip_norm=.nan", "gradient_clip_norm must be >= 0 and finite, not nan"),
    ("training.adam_epsilon=0", "adam_epsilon must be in \\(0, 1\\), not 0.0"),
    ("training.dropout=.nan", "dropout must be in \\[0, 1\\), not nan"),
    ("training.seed=-1", "seed must be >= 0"),
])
def test_bad_settings_are_refused_with_the_key_named(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize("text, message", [
    ("training: {steps: [1}\n", "config.yaml: not valid YAML: .*line 1"),
    ("gate:\n  floors: {q3: high}\n", "config.yaml: gate.floors.q3: expected float, got 'high'"),
    ("training:\n  family: gpt\n", "config.yaml: training: unknown model family 'gpt'"),
])
def test_a_bad_config_file_is_refused_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(str(path))


@pytest.mark.parametrize("override, message", [
    ("probe_data_dir=/no/such/folder", "probe_data_dir: no folder /no/such/folder"),
    ("input_patterns=nothing*.fasta", "input_patterns: 'nothing\\*.fasta' matches no file"),
    ("profile_db=/no/such.fasta", "profile_db: no file"),
])
def test_missing_local_inputs_are_found_before_any_component_runs(override, message, capsys):
    from tfx_pipeline import cli

    with pytest.raises(ValueError, match=message):
        load_config(None, [override]).check_local_paths()
    assert cli.main(["run", "--set", override]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_local_outputs_live_under_the_output_folder(tmp_path):
    config = load_config(None, [f"output_dir={tmp_path}"])
    assert config.metadata_path() == str(tmp_path / "metadata.sqlite")
    assert config.serving_model_dir("local") == str(tmp_path / "serving" / "protbert")
    with pytest.raises(ValueError, match="vertex.pipeline_root"):
        config.pipeline_root("vertex")
    with pytest.raises(ValueError, match="input_base is this machine's bundled sample"):
        load_config(None, ["vertex.pipeline_root=gs://b/p"]).pipeline_root("vertex")


def probe_report(valid_hits: list[int], test_hits: list[int] | None = None, baseline: dict | None = None) -> dict:
    """A probes metrics.json whose every headline metric has `hits[i]` of 10 items right on protein i."""
    def result(hits):
        rows = [[float(h), 10.0] for h in hits]
        accuracy = sum(hits) / (10 * len(hits))
        return {"ss": {"q3": accuracy, "q8": accuracy, "per_protein": {"q3": rows, "q8": rows}},
                "localization": {"q10": accuracy, "q2": accuracy, "per_protein": {"q10": rows, "q2": rows}}}

    sets = {"valid": result(valid_hits), "test": result(test_hits or valid_hits)}
    report = {family: {name: sets[name][family] for name in sets} for family in ("ss", "localization")}
    if baseline is not None:
        report["baseline"] = baseline
    return report


ONEHOT = probe_report([6, 7, 6, 7, 6, 7, 6, 7])
LEARNED = {"floor": 2.71, "valid": {"loss": 2.5, "context_gain": 0.21, "context_gain_ci95": [0.18, 0.24]}}
AT_THE_FLOOR = {"floor": 2.71, "valid": {"loss": 2.71, "context_gain": 0.002, "context_gain_ci95": [-0.01, 0.014]}}
RULES = blessing.GateRules()


def failed(checks) -> list[str]:
    return [check.metric for check in checks if not check.passed]


def test_a_model_at_the_no_context_floor_is_refused_even_when_it_ties_one_hot():
    candidate = probe_report([6, 7, 6, 7, 6, 7, 6, 7], baseline=ONEHOT)
    assert failed(blessing.judge(candidate, AT_THE_FLOOR, None, RULES)) == ["valid context gain (nats)"]
    assert failed(blessing.judge(candidate, None, None, RULES)) == ["valid context gain (nats)"]  # no evidence


def test_a_model_that_learned_and_beats_one_hot_is_blessed():
    candidate = probe_report([8, 8, 7, 9, 8, 8, 7, 9], baseline=ONEHOT)
    checks = blessing.judge(candidate, LEARNED, None, RULES)
    assert not failed(checks)
    assert {c.kind for c in checks} == {"context_gain", "onehot"}
    assert all("/valid/" in c.metric for c in checks if c.kind == "onehot")  # the test split is never judged


def test_a_model_worse_than_one_hot_on_valid_is_refused_whatever_its_test_scores():
    candidate = probe_report([5, 6, 5, 6, 5, 6, 5, 6], test_hits=[9] * 8, baseline=ONEHOT)
    assert failed(blessing.judge(candidate, LEARNED, None, RULES)) == [
        f"{metric} − one-hot" for metric in ("localization/valid/q10", "localization/valid/q2", "ss/valid/q3",
                                             "ss/valid/q8")]
    lenient = blessing.GateRules(onehot_margin=0.15)
    checks = blessing.judge(candidate, LEARNED, None, lenient)
    assert not failed(checks)
    assert {c.outcome for c in checks if c.kind == "onehot"} == {blessing.WITHIN_MARGIN}


def test_a_tie_with_one_hot_is_blessed_even_with_a_point_estimate_below_it():
    # One protein's residue less right than one-hot in all: -0.0125 with a paired interval that holds 0.
    candidate = probe_report([6, 6, 7, 7, 5, 7, 6, 7], baseline=ONEHOT)
    checks = [c for c in blessing.judge(candidate, LEARNED, None, RULES) if c.kind == "onehot"]
    assert all(c.value < 0 and c.interval[0] < 0 < c.interval[1] for c in checks)
    assert {c.outcome for c in checks} == {blessing.TIE} and all(c.passed for c in checks)
    assert checks[0].describe().startswith("localization/valid/q10 − one-hot -0.0125 [") and ": tie (" in \
        checks[0].describe()


def test_a_model_confidently_above_one_hot_is_called_better():
    candidate = probe_report([8, 8, 7, 9, 8, 8, 7, 9], baseline=ONEHOT)
    checks = [c for c in blessing.judge(candidate, LEARNED, None, RULES) if c.kind == "onehot"]
    assert {c.outcome for c in checks} == {blessing.BETTER}


@pytest.mark.parametrize(("interval", "margin", "outcome"), [
    ((0.001, 0.02), 0.0, "better"), ((-0.02, 0.0), 0.0, "tie"), ((-0.03, -0.001), 0.01, "below, within the margin"),
    ((-0.03, -0.011), 0.01, "worse"), ((-0.03, -0.001), 0.0, "worse")])
def test_a_paired_interval_is_judged_against_zero_and_the_margin(interval, margin, outcome):
    assert blessing.paired_outcome(interval, margin) == outcome


def test_a_regression_beyond_the_margin_against_the_last_blessed_model_fails():
    candidate = probe_report([8, 8, 7, 9, 8, 8, 7, 9], baseline=ONEHOT)
    blessed = probe_report([9, 9, 8, 9, 9, 9, 8, 9])
    beyond = blessing.judge(candidate, LEARNED, blessed, blessing.GateRules(regression_margin=0.02))
    assert failed(beyond) == [f"{m} − last blessed" for m in ("localization/valid/q10", "localization/valid/q2",
                                                              "ss/valid/q3", "ss/valid/q8")]
    assert "worse (candidate minus last blessed, paired; fails only if the whole interval is below -0.0200)" in \
        [c for c in beyond if not c.passed][0].describe()
    assert not failed(blessing.judge(candidate, LEARNED, blessed, blessing.GateRules(regression_margin=0.1)))


@pytest.mark.parametrize("override", ["gate.onehot_margin=-0.1", "gate.regression_margin=.nan",
                                      "gate.onehot_margin=2"])
def test_a_margin_outside_zero_to_one_is_refused(override):
    with pytest.raises(ValueError, match="margin must be a number in"):
        load_config(None, [override])


def test_absolute_floors_stay_available_and_name_measured_metrics():
    candidate = probe_report([8, 8, 7, 9, 8, 8, 7, 9], baseline=ONEHOT)
    rules = blessing.GateRules(floors={"q3": 0.9})
    (check,) = [c for c in blessing.judge(candidate, LEARNED, None, rules) if not c.passed]
    assert check.describe() == "ss/valid/q3 +0.8000 < +0.9000 (absolute floor) — FAILED"
    with pytest.raises(ValueError, match="unknown metrics"):
        blessing.GateRules(floors={"q4": 0.5})
    with pytest.raises(ValueError, match="did not measure"):
        blessing.judge({"ss": candidate["ss"], "baseline": ONEHOT}, LEARNED, None, RULES)


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


def test_the_printed_verdict_shows_the_evidence_side_by_side_and_each_failed_condition():
    from models.probes.probe import paired_differences
    from tfx_pipeline.summary import describe_verdict

    candidate = probe_report([6, 7, 6, 7, 6, 7, 6, 7], baseline=ONEHOT)
    checks = blessing.judge(candidate, AT_THE_FLOOR, None, RULES)

    verdict = {"blessed": False, "failed": [c.describe() for c in checks if not c.passed],
               "training_summary": AT_THE_FLOOR, "candidate": blessing.headline_metrics(candidate),
               "onehot": blessing.headline_metrics(ONEHOT), "references": {},
               "paired": {"onehot": paired_differences(candidate, ONEHOT)}}
    text = "\n".join(describe_verdict(verdict))
    assert "no-context floor 2.7100 nats" in text and "valid context gain +0.0020 nats, 95% [-0.0100, +0.0140]" in text
    assert "ss/valid/q3" in text and "one-hot" in text
    assert "the model beats one-hot (paired 95% interval above 0) on: nothing" in text
    assert "NOT BLESSED" in text and "valid context gain (nats) -0.0100 < +0.0000" in text


def test_the_next_steps_a_run_prints_are_the_readmes_with_the_folder_it_wrote(monkeypatch):
    import sys
    from pathlib import Path

    from tests.test_tfx_pipeline import REPO, readme_followups
    from tfx_pipeline.summary import next_commands

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "executable", str(REPO / ".venv" / "bin" / "python"))
    config = load_config(None, [])
    readme = [command.rstrip(" &") for command in readme_followups()]
    blessed = next_commands(config, config.serving_model_dir("local"), pushed=True)
    assert blessed[0] == "next: use the pushed model in prottrans-pipeline/serving/protbert:"
    assert all(line.strip() in readme for line in blessed[1:]) and len(blessed) == 4
    refused = next_commands(config, config.candidate_model_dir("local"), pushed=False)
    assert "refused" in refused[0] and "prottrans-pipeline/candidates/protbert" in refused[0]
    assert [line.replace("candidates", "serving") for line in refused[1:]] == blessed[1:]
    assert Path(config.candidate_model_dir("local")).parent != Path(config.serving_model_dir("local")).parent


def test_a_starting_checkpoint_keys_the_trainer_by_its_contents_not_its_path(tmp_path):
    """The Trainer's exec properties (TFX's cache key) and its checkpoint folder change when the files of
    `training.init_from` change, and not when the same files sit at another path."""
    import shutil

    from models.training.run_fn import INIT_FROM_DIGEST, checkpoint_dir, custom_config, training_settings
    from models.training.settings import TrainingSettings

    source = Path(__file__).resolve().parent / "fixtures" / "hf" / "protbert"
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(source, first)
    shutil.copytree(source, second)

    def keys(folder):
        custom = custom_config(TrainingSettings(init_from=str(folder)), "/root")
        assert training_settings(custom).init_from == str(folder)
        digest = custom[INIT_FROM_DIGEST]
        return digest, checkpoint_dir(["/e/*"], TrainingSettings(init_from="/mounted"), "/root", digest)

    assert keys(first) == keys(second)
    before = keys(first)
    with open(first / "model.safetensors", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x00\x80\x3f")  # one weight changed
    after = keys(first)
    assert after[0] != before[0] and after[1] != before[1]
    with pytest.raises(ValueError, match="no such folder"):
        custom_config(TrainingSettings(init_from=str(tmp_path / "missing")), "/root")
