"""``training_summary.json``: what a training run learned, in numbers a gate can judge.

Written to the run's model directory (and, by the commands that export, into the SavedModel's ``assets.extra``):
the family and objective, the no-context floor, the last training loss and context gain, and every validation
(loss on fixed batches of the valid split, context gain and its 95% interval). Kept across resumes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

SUMMARY_FILE = "training_summary.json"


def validation_result(per_batch: np.ndarray, floor: float) -> dict[str, Any]:
    """From ``[batches, 2]`` rows of (summed target loss, targets): the mean loss per target, the context gain and
    its 95% interval (the ratio estimator's standard error over batches, normal approximation)."""
    sums, weights = per_batch[:, 0], per_batch[:, 1]
    total = float(weights.sum())
    if total <= 0:
        raise ValueError("the validation batches held no targets: is the valid split empty?")
    loss = float(sums.sum() / total)
    batches = len(weights)
    if batches > 1:
        residuals = sums - loss * weights
        standard_error = math.sqrt(batches / (batches - 1) * float((residuals ** 2).sum())) / total
    else:
        standard_error = float("inf")
    gain = floor - loss
    return {"loss": loss, "context_gain": gain,
            "context_gain_ci95": [gain - 1.96 * standard_error, gain + 1.96 * standard_error],
            "batches": batches, "targets": total}


@dataclass
class TrainingSummary:
    family: str
    objective: str
    floor: float
    step: int = 0
    train: dict[str, float] = field(default_factory=dict)
    valid: dict[str, Any] = field(default_factory=dict)
    valid_history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def load_or_new(cls, model_dir: str, family, floor: float) -> "TrainingSummary":
        """The summary a resumed run left in `model_dir` (its history continues), or a new one."""
        path = os.path.join(model_dir, SUMMARY_FILE)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as handle:
                saved = read_summary(handle.read())
            if saved.family == family.name:
                saved.floor = floor
                return saved
        return cls(family.name, family.objective.name, floor)

    @property
    def last_valid_step(self) -> int | None:
        return self.valid_history[-1]["step"] if self.valid_history else None

    def record_train(self, step: int, metrics: dict[str, float]) -> None:
        self.step = step
        self.train = {"step": step, "loss": metrics["loss"], "context_gain": metrics["context_gain"]}

    def record_valid(self, step: int, result: dict[str, Any]) -> None:
        self.step = max(self.step, step)
        self.valid = {"step": step, **result}
        self.valid_history.append({"step": step, "loss": result["loss"], "context_gain": result["context_gain"]})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, model_dir: str) -> str:
        tf.io.gfile.makedirs(model_dir)
        path = os.path.join(model_dir, SUMMARY_FILE)
        with tf.io.gfile.GFile(path, "w") as handle:
            handle.write(json.dumps(self.to_dict(), indent=2))
        return path


def read_summary(text: str) -> TrainingSummary:
    return TrainingSummary(**json.loads(text))
