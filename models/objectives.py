"""What each model family is trained on, by family name: its task model and its input pipeline."""

from __future__ import annotations

from functools import partial
from typing import Callable

import keras

from models import input_pipeline
from models.presets import OBJECTIVES


def task_model(family: str, backbone, lanes: int = 1) -> keras.Model:
    """The family's training model; `lanes` is the per-replica batch of a model with memory (its memory's rows)."""
    objective = OBJECTIVES[family]
    if objective == "masked_lm":
        from models.masked_lm import MaskedLM

        return MaskedLM(backbone)
    if objective == "permutation_lm":
        from models.protxlnet.permutation_lm import PermutationLM

        return PermutationLM(backbone, lanes)
    if objective == "causal_lm":
        from models.prottxl.causal_lm import CausalLM

        return CausalLM(backbone, lanes)
    raise ValueError(f"unknown objective {objective!r} of {family}")


def task_dataset(family: str, backbone) -> Callable:
    """`(files, InputConfig, input_context) → tf.data.Dataset` of the family's training batches (segment streams
    for an XLNet with memory)."""
    objective = OBJECTIVES[family]
    if objective == "permutation_lm" and backbone.memory_length:
        return partial(input_pipeline.permutation_lm_dataset, streams=True)
    return {"masked_lm": input_pipeline.pretraining_dataset,
            "permutation_lm": input_pipeline.permutation_lm_dataset,
            "causal_lm": input_pipeline.causal_lm_dataset}[objective]
