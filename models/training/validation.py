"""Validation during training: the loss on fixed batches of the valid split, its context gain against the
no-context floor and the gain's 95% interval over batches. Models with memory read each segment from a zero
memory (the objective drops its state keys), so the loss does not depend on what was read before."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from models import vocabulary
from models.objectives.objective import TARGET_IDS, TARGET_WEIGHTS, Objective
from models.training.data import distributed_batches
from models.training.settings import Phase, TrainingSettings
from models.training.state import TrainingState
from models.training.summary import validation_result


def target_rows(model: keras.Model, batch: dict) -> tf.Tensor:
    """The batch's targets (our token ids) as rows of the model's output vocabulary: the same ids for our own
    vocabulary, the imported checkpoint's rows for a published one (its head keeps the publisher's vocabulary)."""
    return vocabulary.checkpoint_rows(batch[TARGET_IDS], model.backbone.token_rows)


def target_losses(model: keras.Model, objective: Objective, batch: dict,
                  training: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """The float32 logits and the cross-entropy of every target slot."""
    logits = tf.cast(model(objective.model_inputs(batch, training), training=training), tf.float32)
    return logits, keras.losses.sparse_categorical_crossentropy(target_rows(model, batch), logits, from_logits=True)


class Validation:
    """`validation(phase)`: the result of `settings.eval_batches` batches of `valid_files` at `phase`'s shape —
    the same batches every time (seeded by `settings.seed`)."""

    def __init__(self, state: TrainingState, settings: TrainingSettings, valid_files: Sequence[str], floor: float):
        self.state, self.settings, self.valid_files, self.floor = state, settings, tuple(valid_files), floor
        self._evaluate = None

    def __call__(self, phase: Phase) -> dict[str, Any]:
        iterator = iter(distributed_batches(self.state, self.settings, self.valid_files, phase, self.settings.seed,
                                            shard=False))
        evaluate = self._evaluate_function()
        per_batch = np.array([evaluate(iterator).numpy() for _ in range(self.settings.eval_batches)])
        return validation_result(per_batch, self.floor)

    def _evaluate_function(self):
        if self._evaluate is None:
            model, strategy, objective = self.state.model, self.state.strategy, self.state.family.objective

            def replica_step(batch):
                _, losses = target_losses(model, objective, batch, training=False)
                weights = batch[TARGET_WEIGHTS]
                return tf.stack([tf.reduce_sum(losses * weights), tf.reduce_sum(weights)])

            @tf.function
            def evaluate(iterator):
                return strategy.reduce("sum", strategy.run(replica_step, args=(next(iterator),)), axis=None)

            self._evaluate = evaluate
        return self._evaluate
