"""What a local run did, read back from its ML Metadata: each component's state and wall time, the probe
metrics, the blessing, where the model was pushed (or kept as a refused candidate) and the commands that use it."""

from __future__ import annotations

import glob
import json
import os
import shlex
import sys
from dataclasses import dataclass, field

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_pipeline.blessing import GATE_SET, paired_outcome
from tfx_pipeline.components.pusher import CANDIDATE_DESTINATION
from tfx_pipeline.config import PipelineConfig

_STATES = {value: name for name, value in metadata_store_pb2.Execution.State.items()}


@dataclass
class NodeRun:
    node: str
    state: str  # COMPLETE, CACHED, FAILED, …
    seconds: float
    outputs: dict[str, list[metadata_store_pb2.Artifact]] = field(default_factory=dict)


def _store(config: PipelineConfig) -> metadata_store.MetadataStore:
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config.metadata_path()
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def last_run(config: PipelineConfig) -> list[NodeRun]:
    """The nodes of the latest run of `config`'s pipeline, in execution order."""
    store = _store(config)
    runs = [c for c in store.get_contexts_by_type("pipeline_run")
            if any(p.name == config.pipeline_name for p in store.get_parent_contexts_by_context(c.id))]
    if not runs:
        return []
    run = max(runs, key=lambda c: c.create_time_since_epoch)
    nodes = []
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node = next((c.name.split(".", 1)[1] for c in store.get_contexts_by_execution(execution.id)
                     if c.type == "node"), execution.type)
        outputs: dict[str, list] = {}
        events = [e for e in store.get_events_by_execution_ids([execution.id])
                  if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else ""
            outputs.setdefault(key, []).append(artifacts[event.artifact_id])
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        nodes.append(NodeRun(node, _STATES.get(execution.last_known_state, "UNKNOWN"), seconds, outputs))
    return nodes


def _property(artifact: metadata_store_pb2.Artifact, name: str):
    value = artifact.custom_properties.get(name)
    if value is None:
        return None
    return value.string_value if value.HasField("string_value") else value.int_value


@dataclass
class RunOutcome:
    """What a local run produced: its verdict (None if the evaluator did not run) and the model folder to use next
    (the serving model folder when pushed, the candidates folder when refused; None if neither was written)."""

    blessed: bool | None
    model_dir: str | None
    text: str


def describe_last_run(config: PipelineConfig) -> RunOutcome:
    nodes = last_run(config)
    lines = ["component                        state      seconds"]
    lines += [f"{n.node:32} {n.state:10} {n.seconds:7.1f}" for n in nodes]
    by_name = {n.node: n for n in nodes}
    evaluator = by_name.get("ProbeEvaluator")
    blessed = None
    if evaluator and evaluator.outputs.get("evaluation"):
        folder = evaluator.outputs["evaluation"][0].uri
        with open(os.path.join(folder, "blessing.json")) as handle:
            verdict = json.load(handle)
        blessed = bool(verdict["blessed"])
        lines += describe_verdict(verdict)
        lines.append(f"probe metrics: {os.path.join(folder, 'metrics.json')} (plots beside it)")
    finetuner = by_name.get("Finetuner")
    if finetuner and finetuner.outputs.get("evaluation"):
        lines += describe_finetuning(os.path.join(finetuner.outputs["evaluation"][0].uri, "metrics.json"))
    model_dir = None
    pusher = by_name.get("Pusher")
    if pusher and pusher.outputs.get("pushed_model"):
        pushed = pusher.outputs["pushed_model"][0]
        if _property(pushed, "pushed") == 1:
            lines.append(f"pushed model: {_property(pushed, 'pushed_destination')}")
            model_dir = config.serving_model_dir("local")
        elif _property(pushed, CANDIDATE_DESTINATION):
            lines.append(f"candidate model (refused, not served): {_property(pushed, CANDIDATE_DESTINATION)}")
            model_dir = config.candidate_model_dir("local")
    lines.append(f"serving model folder: {config.serving_model_dir('local')}")
    lines.append(f"ML Metadata: {config.metadata_path()}")
    if model_dir:
        lines += next_commands(config, model_dir, pushed=model_dir == config.serving_model_dir("local"))
    return RunOutcome(blessed, model_dir, "\n".join(lines))


def _shown(path: str) -> str:
    """`path` relative to the working folder when it lies under it (as a user would type it), else absolute."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def next_commands(config: PipelineConfig, model_dir: str, pushed: bool) -> list[str]:
    """The commands that embed, predict and serve with what the run produced, ready to paste."""
    tools = _shown(os.path.dirname(sys.executable))  # the console scripts sit beside the interpreter
    tool = lambda name: shlex.quote(os.path.join(tools, name))  # noqa: E731
    fasta = sorted(glob.glob(os.path.join(config.input_base, config.input_patterns[0])))
    sample = shlex.quote(_shown(fasta[0])) if fasta else "PROTEINS.fasta"
    model = shlex.quote(_shown(model_dir))
    name = shlex.quote(config.model_name or config.training.family)
    head = (f"next: use the pushed model in {model}:" if pushed else
            f"next: the gate refused this run's model, so nothing was pushed; try it from the candidates folder "
            f"{model} (outside the serving root, never served by TF Serving there):")
    return [head,
            f"  {tool('prottrans-embed')} --saved-model {model} {sample} out/sample_embeddings.h5",
            f"  {tool('prottrans-predict')} --saved-model {model} {sample} out/sample_predictions.tsv",
            f"  {tool('prottrans-serve')} --model-base-path {model} --model-name {name} --port 8500"]


def describe_finetuning(metrics_path: str) -> list[str]:
    """The fine-tuned model (what the Pusher takes) beside the frozen probes of the same backbone, paired."""
    from models.finetuning.run import describe

    with open(metrics_path) as handle:
        report = json.load(handle)
    kept = "the state before fine-tuning (no epoch lowered the valid loss)" if report["best_epoch"] == 0 else \
        f"epoch {report['best_epoch']}"
    return [f"fine-tuned ({report['method']}, {report['trainable_parameters']:,} trainable parameters; kept {kept}) "
            "against the frozen probes:", *(f"  {line}" for line in describe(report)),
            f"fine-tuning metrics: {metrics_path}"]


def describe_verdict(verdict: dict) -> list[str]:
    """The training evidence, the probe metrics of the model beside one-hot with the paired difference and its
    95% interval, and the gate's decision with each failed condition."""
    lines = []
    summary = verdict.get("training_summary") or {}
    if summary:
        valid = summary.get("valid") or {}
        gain = f"{valid['context_gain']:+.4f} nats, 95% [{valid['context_gain_ci95'][0]:+.4f}, " \
               f"{valid['context_gain_ci95'][1]:+.4f}]" if valid else "not measured (no valid split)"
        lines.append(f"no-context floor {summary['floor']:.4f} nats; valid loss "
                     f"{valid.get('loss', float('nan')):.4f}; valid context gain {gain}")
    candidate = verdict.get("candidate", {})
    gate = verdict.get("gate") or {}
    others = {"one-hot": ("onehot", verdict.get("onehot", {})),
              **{name: (name, values) for name, values in (verdict.get("references") or {}).items()}}
    pairs = verdict.get("paired") or {}
    paired = pairs.get("onehot", {})
    for label, (key, values) in others.items():
        if not candidate or not values:
            continue
        gated = key == "onehot" and "onehot_margin" in gate
        lines.append(f"  {'metric':24} {'model':>7} {label[:16]:>16} {'model − ' + label[:16] + ' [95% CI]':>36}"
                     + ("  gate (valid)" if gated else ""))
        for metric, value in sorted(candidate.items()):
            difference = pairs.get(key, {}).get(metric)
            interval = (f"{difference['difference']:+.4f} [{difference['ci95'][0]:+.4f}, {difference['ci95'][1]:+.4f}]"
                        if difference else "")
            other = values.get(metric)
            outcome = (paired_outcome(difference["ci95"], gate["onehot_margin"])
                       if gated and difference and metric.split("/")[1] == GATE_SET
                       and metric.rsplit("/", 1)[1] in gate.get("gated_metrics", ()) else "")
            lines.append(f"  {metric:24} {value:7.4f} {'' if other is None else format(other, '.4f'):>16} "
                         f"{interval:>36}" + (f"  {outcome}" if outcome else ""))
    if paired:
        beats = [m for m, d in paired.items() if d["ci95"][0] > 0]
        lines.append("the model beats one-hot (paired 95% interval above 0) on: " + (", ".join(sorted(beats)) or
                                                                                      "nothing"))
    lines.append("BLESSED" if verdict["blessed"] else "NOT BLESSED: the model was not pushed; failed conditions:")
    lines += [f"  {check}" for check in verdict.get("failed", [])]
    return lines
