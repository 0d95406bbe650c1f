"""ProbeEvaluator: embeds the probe sets with the candidate SavedModel, trains the paper's probes
(`models.probes.probe.probe_model`), writes their report as a ModelEvaluation, and blesses the model only if the
gate holds (`tfx_pipeline.blessing`: valid context gain above 0, not worse than one-hot, no regression against the
last blessed model, all on the valid split).

The candidate is written again as the evaluator's `served_model` output with its trained probes as the
``predict`` signature (`models.export.predict`), blessed or not: the Pusher serves a blessed one and keeps a
refused one as the run's candidate, outside the serving root.

The blessing follows TFX's Evaluator conventions (custom properties ``blessed`` and ``current_model_id``, a
``BLESSED``/``NOT_BLESSED`` file), so the Pusher and `LatestBlessedModelStrategy` read it as theirs. It also
records where its metrics are and a fingerprint of the probe sets: the next run compares against those metrics
without re-embedding, unless the probe sets changed, in which case it probes the last blessed model again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Any

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from models.export.signatures import read_model_info
from models.probes.probe import paired_differences
from models.training.summary import SUMMARY_FILE
from tfx_pipeline import blessing

METRICS_URI = "metrics_uri"
PROBE_DATA_FINGERPRINT = "probe_data_fingerprint"
PREDICTOR_URI = "predictor_uri"
CHECKS_FILE = "blessing.json"


class ProbeEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        "probe_data_dir": ExecutionParameter(type=str),
        "task": ExecutionParameter(type=str),
        "gate": ExecutionParameter(type=str),  # JSON of blessing.GateRules
        "limit": ExecutionParameter(type=int),  # 0: every row
        "seed": ExecutionParameter(type=int),
        "seeds": ExecutionParameter(type=int),  # probe members averaged
        "onehot_baseline": ExecutionParameter(type=int),  # 0/1: also probe the one-hot embedder
        "profile_db": ExecutionParameter(type=str),  # "": no evolutionary-profile reference
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
        "baseline_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        # The candidate with its trained probes as the `predict` signature: what the Pusher serves (if blessed).
        "served_model": ChannelParameter(type=standard_artifacts.Model),
    }


def probe_data_fingerprint(data_dir: str, task: str, limit: int, seed: int, seeds: int) -> str:
    """Changes when the probe sets' files or the probe settings do."""
    digest = hashlib.sha256(json.dumps([task, limit, seed, seeds]).encode())
    for folder, _, files in sorted(tf.io.gfile.walk(data_dir)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, data_dir).encode())
            with tf.io.gfile.GFile(path, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def copy_folder(source: str, destination: str, skip: tuple[str, ...] = (), recursive: bool = False) -> None:
    """Files of `source` into `destination` (local paths or gs://: artifact URIs on Vertex are buckets); with
    `recursive`, its folders too."""
    tf.io.gfile.makedirs(destination)
    for name in tf.io.gfile.listdir(source):
        name = name.rstrip("/")
        path = os.path.join(source, name)
        if name in skip:
            continue
        if tf.io.gfile.isdir(path):
            if recursive:
                copy_folder(path, os.path.join(destination, name), recursive=True)
        else:
            tf.io.gfile.copy(path, os.path.join(destination, name), overwrite=True)


def _read_json(path: str) -> dict:
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def serving_dir(model: types.Artifact) -> str:
    return _serving_dir_of_uri(model.uri)


def _serving_dir_of_uri(uri: str) -> str:
    return os.path.join(uri, "Format-Serving")


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        from models.export.embedders import SavedModelEmbedder
        from models.probes.datasets import SAMPLE_DATA_DIR
        from models.probes.probe import ProbeSettings, probe_model
        from models.probes.profile import ProfileEmbedder

        model = artifact_utils.get_single_instance(input_dict["model"])
        served = artifact_utils.get_single_instance(output_dict["served_model"])
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        verdict = artifact_utils.get_single_instance(output_dict["blessing"])
        data_dir, task = exec_properties["probe_data_dir"] or SAMPLE_DATA_DIR, exec_properties["task"]
        limit, seed, seeds = int(exec_properties["limit"]), int(exec_properties["seed"]), int(exec_properties["seeds"])
        rules = blessing.GateRules(**json.loads(exec_properties["gate"]))
        settings = ProbeSettings(seed=seed, seeds=seeds)
        fingerprint = probe_data_fingerprint(data_dir, task, limit, seed, seeds)

        references = [ProfileEmbedder(exec_properties["profile_db"])] if exec_properties.get("profile_db") else []

        def probe(saved_model: str, output_dir: str, baseline: bool, heads: dict | None = None) -> dict:
            # The report is written locally, then copied to the artifact (which may be in a bucket); the
            # embeddings are not kept with it.
            with tempfile.TemporaryDirectory() as scratch:
                report_dir = os.path.join(scratch, "report")
                probe_model(SavedModelEmbedder(saved_model), data_dir, task, report_dir, settings, limit or None,
                            baseline, os.path.join(scratch, "embeddings.h5"), references=references if baseline else (),
                            heads=heads)
                copy_folder(report_dir, output_dir)
            return _read_json(os.path.join(output_dir, "metrics.json"))

        heads: dict = {}
        earlier = self._earlier_report(input_dict, model, fingerprint)
        if earlier:  # the last blessed model is this one (a rerun with a cached Trainer): no need to re-probe
            copy_folder(earlier, evaluation.uri, skip=(CHECKS_FILE,))
            candidate = _read_json(os.path.join(earlier, "metrics.json"))
        else:
            candidate = probe(serving_dir(model), evaluation.uri, bool(exec_properties["onehot_baseline"]), heads)
        summary = read_model_info(serving_dir(model), SUMMARY_FILE)
        baseline, baseline_model = self._baseline(input_dict, fingerprint, probe, evaluation.uri)
        checks = blessing.judge(candidate, summary, baseline, rules)
        blessed = all(check.passed for check in checks)

        report = {"blessed": blessed, "gate": dataclasses.asdict(rules), "checks": [check.describe() for check in checks],
                  "failed": [check.describe() for check in checks if not check.passed],
                  "training_summary": summary, "candidate": blessing.headline_metrics(candidate),
                  "paired": {**candidate.get("paired", {}),
                             "last_blessed": paired_differences(candidate, baseline) if baseline else {}},
                  "onehot": blessing.headline_metrics(candidate.get("baseline", {})),
                  "references": {name: blessing.headline_metrics(measured)
                                 for name, measured in candidate.get("references", {}).items()},
                  "baseline_model": baseline_model,
                  "baseline": blessing.headline_metrics(baseline) if baseline else None}
        with tf.io.gfile.GFile(os.path.join(evaluation.uri, CHECKS_FILE), "w") as handle:
            handle.write(json.dumps(report, indent=2))
        # Blessed or not, the model with its heads: the Pusher serves it, or keeps it as the run's candidate.
        self._write_served_model(input_dict, model, heads, serving_dir(served))
        verdict.set_string_custom_property(PREDICTOR_URI, served.uri)
        tf.io.gfile.makedirs(verdict.uri)
        with tf.io.gfile.GFile(os.path.join(verdict.uri, "BLESSED" if blessed else "NOT_BLESSED"), "w"):
            pass
        verdict.set_int_custom_property("blessed", int(blessed))
        verdict.set_int_custom_property("current_model_id", model.id)
        verdict.set_string_custom_property("current_model", model.uri)
        verdict.set_string_custom_property(METRICS_URI, evaluation.uri)
        verdict.set_string_custom_property(PROBE_DATA_FINGERPRINT, fingerprint)
        if baseline_model:
            verdict.set_string_custom_property("baseline_model", baseline_model)
        for line in report["checks"]:
            print(f"ProbeEvaluator: {line}", flush=True)
        print(f"ProbeEvaluator: {'BLESSED' if blessed else 'NOT BLESSED'}; report: {evaluation.uri}", flush=True)

    @staticmethod
    def _write_served_model(input_dict, model: types.Artifact, heads: dict, destination: str) -> None:
        """The candidate with its probes as the ``predict`` signature, at `destination`. When the probes were not
        trained again (the candidate is the last blessed model), the earlier evaluation's files are copied, so the
        Pusher sees the model it already serves."""
        from models.export.predict import write_predictor

        if heads:
            write_predictor(serving_dir(model), heads, destination)
            return
        earlier = input_dict["baseline_blessing"][0].get_string_custom_property(PREDICTOR_URI)
        copy_folder(_serving_dir_of_uri(earlier), destination, recursive=True)

    @staticmethod
    def _earlier_report(input_dict, model: types.Artifact, fingerprint: str) -> str | None:
        """The report folder of the last blessing, if it judged this very model on the same probe sets (and kept
        the model it served: a blessing by an evaluator that wrote none is probed again, to train the heads)."""
        models, blessings = input_dict.get("baseline_model") or [], input_dict.get("baseline_blessing") or []
        if not models or not blessings or models[0].id != model.id:
            return None
        if blessings[0].get_string_custom_property(PROBE_DATA_FINGERPRINT) != fingerprint:
            return None
        if not blessings[0].get_string_custom_property(PREDICTOR_URI):
            return None
        return blessings[0].get_string_custom_property(METRICS_URI)

    @staticmethod
    def _baseline(input_dict, fingerprint: str, probe, evaluation_dir: str) -> tuple[dict | None, str | None]:
        """The last blessed model's probe metrics on the same probe sets, and its URI."""
        models, blessings = input_dict.get("baseline_model") or [], input_dict.get("baseline_blessing") or []
        if not models:
            return None, None
        model = models[0]
        earlier = blessings[0] if blessings else None
        if earlier is not None and earlier.get_string_custom_property(PROBE_DATA_FINGERPRINT) == fingerprint:
            return _read_json(os.path.join(earlier.get_string_custom_property(METRICS_URI), "metrics.json")), model.uri
        # The probe sets changed since that blessing: measure the blessed model on the current ones.
        return probe(serving_dir(model), os.path.join(evaluation_dir, "last_blessed_model"), False), model.uri


class ProbeEvaluator(base_component.BaseComponent):
    """Probe metrics for `model` and a ModelBlessing (see the module docstring). `probe_data_dir` has the layout
    of ``../shared/data``; empty means the sets bundled with `models`, wherever the evaluator runs."""

    SPEC_CLASS = ProbeEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, probe_data_dir: str = "", task: str = "all",
                 gate: blessing.GateRules = blessing.GateRules(),
                 baseline_model: types.BaseChannel | None = None,
                 baseline_blessing: types.BaseChannel | None = None, limit: int = 0, seed: int = 0, seeds: int = 5,
                 onehot_baseline: bool = True, profile_db: str = ""):
        if task not in ("ss", "localization", "all"):
            raise ValueError(f"task must be ss, localization or all, not {task!r}")
        super().__init__(spec=ProbeEvaluatorSpec(
            model=model, baseline_model=baseline_model, baseline_blessing=baseline_blessing,
            probe_data_dir=probe_data_dir, task=task, gate=json.dumps(dataclasses.asdict(gate), sort_keys=True),
            limit=int(limit), seed=int(seed), seeds=int(seeds),
            onehot_baseline=int(onehot_baseline), profile_db=profile_db,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            served_model=types.Channel(type=standard_artifacts.Model),
        ))
