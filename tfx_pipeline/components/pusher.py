"""TFX's Pusher, except that a model already being served is not pushed again, and a refused model is written as
the run's candidate instead.

A rerun whose Trainer is cached meets its own model as the last blessed one; the stock Pusher would copy it to
a new timestamped version, which TF Serving would load as if it were new.

A model the gate refused is not served, but it is still what the run produced: it is copied, with its probes'
``predict`` signature, to ``<candidate_root>/<version>`` (``candidate_root`` from the component's
``custom_config``), a folder outside the serving root that TF Serving never watches. The pushed-model artifact
records it as ``candidate_destination``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

CANDIDATE_ROOT = "candidate_root"  # custom_config key: where refused models go
CANDIDATE_DESTINATION = "candidate_destination"  # pushed_model property: the version folder written


def latest_version(base: str) -> str | None:
    """The highest numeric version folder under `base`, or None."""
    if not base or not fileio.isdir(base):
        return None
    versions = [name.rstrip("/") for name in fileio.listdir(base) if name.rstrip("/").isdigit()]
    return os.path.join(base, max(versions, key=int)) if versions else None


def copy_saved_model(source: str, destination: str) -> None:
    """`source` to `destination`, ``saved_model.pb`` last: servers take that file as the sign of a whole model."""
    io_utils.copy_dir(source, destination, deny_regex_patterns=[r"saved_model\.pb"])
    io_utils.copy_file(os.path.join(source, "saved_model.pb"), os.path.join(destination, "saved_model.pb"))


def _same_model(path: str | None, model_path: str) -> bool:
    from models.export.signatures import saved_model_digest

    if path is None:
        return False
    digest = saved_model_digest(path)
    return digest is not None and digest == saved_model_digest(model_path)


class Executor(pusher_executor.Executor):

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            custom = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
            self._MarkNotPushed(model_push)
            if custom.get(CANDIDATE_ROOT):
                written = self._write_candidate(self.GetModelPath(input_dict), custom[CANDIDATE_ROOT])
                model_push.set_string_custom_property(CANDIDATE_DESTINATION, written)
            return
        served = latest_version(destination.filesystem.base_directory)
        if _same_model(served, self.GetModelPath(input_dict)):
            self._MarkPushed(model_push, pushed_destination=served, pushed_version=os.path.basename(served))
            print(f"Pusher: this model is already served as {served}; not pushed again", flush=True)
            return
        super().Do(input_dict, output_dict, exec_properties)

    @staticmethod
    def _write_candidate(model_path: str, root: str) -> str:
        """The refused model as a new version under `root` (the latest one if it is this same model)."""
        latest = latest_version(root)
        if _same_model(latest, model_path):
            print(f"Pusher: not blessed; the candidate is already at {latest}", flush=True)
            return latest
        version = os.path.join(root, str(int(time.time())))
        if latest is not None and int(os.path.basename(latest)) >= int(os.path.basename(version)):
            version = os.path.join(root, str(int(os.path.basename(latest)) + 1))
        copy_saved_model(model_path, version)
        print(f"Pusher: not blessed, not pushed; the candidate is at {version} (outside the serving root)", flush=True)
        return version


EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
