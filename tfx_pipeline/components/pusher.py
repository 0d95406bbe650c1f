"""TFX's Pusher, except that a model already being served is not pushed again.

A rerun whose Trainer is cached meets its own model as the last blessed one; the stock Pusher would copy it to
a new timestamped version, which TF Serving would load as if it were new.
"""

from __future__ import annotations

import os
from typing import Any

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils


class Executor(pusher_executor.Executor):

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = destination.filesystem.base_directory
        from models.export.signatures import saved_model_digest

        if self.CheckBlessing(input_dict) and base and fileio.isdir(base):
            versions = [name.rstrip("/") for name in fileio.listdir(base) if name.rstrip("/").isdigit()]
            if versions:
                latest = max(versions, key=int)
                served = os.path.join(base, latest)
                if saved_model_digest(served) == saved_model_digest(self.GetModelPath(input_dict)):
                    model_push = artifact_utils.get_single_instance(
                        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
                    self._MarkPushed(model_push, pushed_destination=served, pushed_version=latest)
                    print(f"Pusher: this model is already served as {served}; not pushed again", flush=True)
                    return
        super().Do(input_dict, output_dict, exec_properties)


EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
