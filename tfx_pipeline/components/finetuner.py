"""Finetuner: `prottrans-finetune` as a component. It starts from the Trainer's model run (the training folder of
the run's last checkpoint), trains the probe tasks' heads together with the backbone (LoRA or every weight), and
writes:

- ``evaluation`` (ModelEvaluation): ``metrics.json``, the fine-tuned model's probe metrics beside the frozen
  probes of the same backbone on the same proteins, paired;
- ``finetuned_model`` (Model): the fine-tuned SavedModel (LoRA merged) with its heads as the ``predict``
  signature, under ``Format-Serving`` as the Trainer's model is, for the Pusher.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from tfx_pipeline.components.probe_evaluator import copy_folder, serving_dir


class FinetunerSpec(ComponentSpec):
    PARAMETERS = {
        "probe_data_dir": ExecutionParameter(type=str),  # "": the probe sets bundled with `models`
        "settings": ExecutionParameter(type=str),  # JSON of models.finetuning.run.FinetuneSettings
        "limit": ExecutionParameter(type=int),  # 0: every row
    }
    INPUTS = {"model_run": ChannelParameter(type=standard_artifacts.ModelRun)}
    OUTPUTS = {
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "finetuned_model": ChannelParameter(type=standard_artifacts.Model),
    }


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        from models.finetuning.run import FinetuneSettings, describe, export_to, finetune
        from models.probes.datasets import SAMPLE_DATA_DIR
        from models.probes.report import write_metrics
        from models.training.checkpoints import load_trained_model

        model_run = artifact_utils.get_single_instance(input_dict["model_run"])
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        finetuned_model = artifact_utils.get_single_instance(output_dict["finetuned_model"])
        raw = json.loads(exec_properties["settings"])
        settings = FinetuneSettings(**{**raw, "tasks": tuple(raw["tasks"])})
        limit = int(exec_properties["limit"]) or None
        family, model, checkpoint = load_trained_model(model_run.uri)
        print(f"Finetuner: {family} from {checkpoint}", flush=True)
        result = finetune(model.backbone, family, exec_properties["probe_data_dir"] or SAMPLE_DATA_DIR, settings,
                          limit, log=lambda line: print(f"Finetuner: {line}", flush=True))
        with tempfile.TemporaryDirectory() as scratch:  # the artifact may be in a bucket
            write_metrics(result.report, scratch)
            copy_folder(scratch, evaluation.uri)
        export_to(result, serving_dir(finetuned_model))
        for line in describe(result.report):
            print(f"Finetuner: {line}", flush=True)
        evaluation.set_int_custom_property("best_epoch", result.report["best_epoch"])
        finetuned_model.set_string_custom_property("finetune_method", settings.method)


class Finetuner(base_component.BaseComponent):
    """The probe tasks fine-tuned on the trained backbone (see the module docstring)."""

    SPEC_CLASS = FinetunerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model_run: types.BaseChannel, settings, probe_data_dir: str = "", limit: int = 0):
        super().__init__(spec=FinetunerSpec(
            model_run=model_run, probe_data_dir=probe_data_dir, limit=int(limit),
            settings=json.dumps(dataclasses.asdict(settings), sort_keys=True),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            finetuned_model=types.Channel(type=standard_artifacts.Model),
        ))
