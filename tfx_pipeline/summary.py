"""What a local run did, read back from its ML Metadata: each component's state and wall time, the probe
metrics, the blessing and where the model was pushed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

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


def describe_last_run(config: PipelineConfig) -> str:
    nodes = last_run(config)
    lines = ["component                        state      seconds"]
    lines += [f"{n.node:32} {n.state:10} {n.seconds:7.1f}" for n in nodes]
    by_name = {n.node: n for n in nodes}
    evaluator = by_name.get("ProbeEvaluator")
    if evaluator and evaluator.outputs.get("evaluation"):
        folder = evaluator.outputs["evaluation"][0].uri
        with open(os.path.join(folder, "blessing.json")) as handle:
            verdict = json.load(handle)
        lines.append(f"probe metrics: {os.path.join(folder, 'metrics.json')} (plots beside it)")
        lines += [f"  {check}" for check in verdict["checks"]]
        lines.append("blessed" if verdict["blessed"] else "NOT blessed: the model was not pushed")
    pusher = by_name.get("Pusher")
    if pusher and pusher.outputs.get("pushed_model"):
        pushed = pusher.outputs["pushed_model"][0]
        if _property(pushed, "pushed") == 1:
            lines.append(f"pushed model: {_property(pushed, 'pushed_destination')}")
    lines.append(f"serving model folder: {config.serving_model_dir('local')}")
    lines.append(f"ML Metadata: {config.metadata_path()}")
    return "\n".join(lines)
