"""The training settings: one typed record that owns every setting's name, type, default and help.

`prottrans-train`'s flags are generated from it (:func:`add_arguments`), the pipeline config nests it (its
``training`` section), and the TFX Trainer's ``custom_config`` carries it as a dict that `run_fn` turns back
into it (:meth:`TrainingSettings.from_dict`). Each default is stated here and nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any


from models.registry import FAMILIES
from models.training.optimizers import OPTIMIZERS
from models.training.strategy import STRATEGIES

MIXED_PRECISION = ("none", "bfloat16", "float16")
MAX_LEARNING_RATE = 1.0  # far above any rate that trains these models; above it, a typo


@dataclass(frozen=True)
class Phase:
    """A stretch of training at one sequence length (tokens, with [CLS]/[SEP]) and global batch."""

    sequence_length: int
    steps: int
    global_batch: int


def two_phase_schedule(steps: int, global_batch: int, lengths: tuple[int, int] = (512, 2048)) -> tuple[Phase, ...]:
    """The paper's schedule: most steps at length 512, the last quarter at 2048 with a quarter of the batch
    (so a batch holds about as many tokens)."""
    second = max(steps // 4, 1)
    return (Phase(lengths[0], steps - second, global_batch), Phase(lengths[1], second, max(global_batch // 4, 1)))


def _setting(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TrainingSettings:
    """How to pretrain: the model, the schedule, the optimizer and the hardware options.

    The defaults are a laptop run (AdamW, which suits small batches: LAMB's trust ratio takes ~25× smaller
    steps at batch 32); the paper's recipe is ``optimizer=lamb``, ``learning_rate=2e-3``, ``two_phase=True``
    with a large global batch.
    """

    family: str = _setting("protbert", "model family", tuple(FAMILIES))
    preset: str = _setting("small", "tiny, small or paper (or the family's name, meaning paper)")
    init_from: typing.Optional[str] = _setting(
        None, "start from a checkpoint instead of random weights: a transformers folder of this family, a "
              "prottrans-train model folder, or a SavedModel of ours written with its LM head (or its TF Serving "
              "model folder: the latest version); its own config, weights and LM head are used (not --preset, "
              "not --dropout)")
    steps: int = _setting(300, "optimizer updates in all")
    global_batch: int = _setting(16, "sequences per optimizer update")
    sequence_length: int = _setting(256, "tokens per sequence, with [CLS]/[SEP]; longer proteins are cropped at "
                                         "random")
    two_phase: bool = _setting(False, "the paper's schedule: 3/4 of the steps at 512, the last 1/4 at 2048 with "
                                      "1/4 of the batch (sequence_length is then not used)")
    strategy: str = _setting("default", "tf.distribute strategy", STRATEGIES)
    tpu: typing.Optional[str] = _setting(None, "TPU name or address for strategy tpu")
    optimizer: str = _setting("adamw", "adamw (small batches) or lamb (the paper's, for large batches)",
                              tuple(OPTIMIZERS))
    learning_rate: float = _setting(1e-3, "peak learning rate, after the linear warm-up")
    warmup_steps: typing.Optional[int] = _setting(None, "linear warm-up steps (default: 10%% of steps)")
    weight_decay: float = _setting(0.01, "decoupled weight decay (not on biases and norm parameters)")
    gradient_clip_norm: float = _setting(1.0, "clip each update's global gradient norm to this (0: no clipping); "
                                              "transformers' Trainer default")
    adam_epsilon: float = _setting(1e-8, "the optimizer's epsilon (torch's and transformers' default)")
    accumulation_steps: int = _setting(1, "micro-batches accumulated per optimizer update")
    steps_per_execution: int = _setting(1, "optimizer updates per tf.function call")
    mixed_precision: str = _setting("none", "bfloat16 for TPUs, float16 (with loss scaling) for GPUs",
                                    MIXED_PRECISION)
    jit_compile: bool = _setting(False, "XLA-compile the forward and backward pass")
    dropout: typing.Optional[float] = _setting(0.0, "hidden and attention dropout, replacing the preset's "
                                                    "(none: keep the preset's)")
    checkpoint_every: int = _setting(100, "optimizer updates between checkpoints")
    log_every: int = _setting(50, "optimizer updates between logged metrics")
    eval_every: int = _setting(100, "optimizer updates between validation losses on the valid split (0: only at "
                                    "the end)")
    eval_batches: int = _setting(20, "batches of the valid split per validation (the same batches each time)")
    seed: int = _setting(0, "fixes initialisation, data order, crops and masks")

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; built: {sorted(FAMILIES)}")
        FAMILIES[self.family].preset_config(self.preset)  # names the presets if this one does not exist
        for name in ("strategy", "optimizer", "mixed_precision"):
            choices = _choices(name)
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, not {getattr(self, name)!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:  # NaN fails every comparison
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if not 0.0 < self.learning_rate <= MAX_LEARNING_RATE:
            raise ValueError(f"learning_rate must be in (0, {MAX_LEARNING_RATE}], not {self.learning_rate}")
        if not 0.0 <= self.weight_decay < 1.0:
            raise ValueError(f"weight_decay must be in [0, 1), not {self.weight_decay}")
        if not self.gradient_clip_norm >= 0.0 or self.gradient_clip_norm == float("inf"):
            raise ValueError(f"gradient_clip_norm must be >= 0 and finite, not {self.gradient_clip_norm}")
        if not 0.0 < self.adam_epsilon < 1.0:
            raise ValueError(f"adam_epsilon must be in (0, 1), not {self.adam_epsilon}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, not {self.warmup_steps}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, not {self.seed}")
        if self.steps < 1 or self.global_batch < 1 or self.sequence_length < 3:
            raise ValueError("steps and global_batch must be >= 1 and sequence_length >= 3")
        if self.accumulation_steps < 1 or self.steps_per_execution < 1:
            raise ValueError("accumulation_steps and steps_per_execution must be >= 1")
        if self.checkpoint_every < 1 or self.log_every < 1 or self.eval_batches < 1 or self.eval_every < 0:
            raise ValueError("checkpoint_every, log_every and eval_batches must be >= 1, eval_every >= 0")

    def phases(self) -> tuple[Phase, ...]:
        if self.two_phase:
            return two_phase_schedule(self.steps, self.global_batch)
        return (Phase(self.sequence_length, self.steps, self.global_batch),)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainingSettings":
        """Settings from a mapping (a config file, a Trainer's custom_config); unknown keys are refused, since a
        typo must not train the defaults silently."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(f.name for f in dataclasses.fields(cls))}")
        return cls(**{name: coerce(value, _hint(name), name) for name, value in values.items()})


def _hint(name: str) -> Any:
    return typing.get_type_hints(TrainingSettings)[name]


def _choices(name: str) -> tuple[str, ...]:
    return next(f.metadata["choices"] for f in dataclasses.fields(TrainingSettings) if f.name == name)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` as the type `hint` says (ints are accepted for floats, None for optionals), or ValueError naming
    `key`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return None if value is None else coerce(value, options[0], key)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = origin or hint
    if expected is list and isinstance(value, str):
        value = [value]
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(f"{key}: expected {getattr(expected, '__name__', expected)}, got {value!r}")
    if expected is dict:
        value_type = (typing.get_args(hint) or (str, float))[1]
        return {str(k): coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    return value


def _optional_type(hint: Any):
    inner = next(arg for arg in typing.get_args(hint) if arg is not type(None))

    def parse(text: str):
        return None if text.lower() == "none" else inner(text)

    parse.__name__ = inner.__name__
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per setting, with the setting's type, default, choices and help."""
    group = parser.add_argument_group("training settings")
    for setting in dataclasses.fields(TrainingSettings):
        flag = "--" + setting.name.replace("_", "-")
        hint = _hint(setting.name)
        help_text = f"{setting.metadata['help']} (default: {setting.default})"
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=setting.default, help=help_text)
            continue
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
        group.add_argument(flag, type=_optional_type(hint) if optional else hint, default=setting.default,
                           choices=setting.metadata["choices"], help=help_text, dest=setting.name,
                           metavar=None if setting.metadata["choices"] else setting.name.upper())


def from_arguments(args: argparse.Namespace) -> TrainingSettings:
    return TrainingSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingSettings)})
