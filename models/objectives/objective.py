"""What a training objective is: the task model it puts around a backbone, its batches, the no-context floor, the
name of its accuracy and the state it keeps between batches. Each module of :mod:`models.objectives` implements
this protocol once; the trainer, the checkpoint reader and the tests call only these methods, so no code outside
an objective's module branches on which objective it is.

The batch contract: every batch holds ``token_ids`` (the model's input tokens), ``target_ids`` (the token each
scored slot should predict) and ``target_weights`` (1 for a real target, 0 for a padding slot); the model reads
everything else in the batch, so an objective adds its own inputs (``mask_positions``, ``decoder_ids``,
``permutation_mask``, …). Keys in `state_keys` carry stream state (``reset``): validation drops them, so that
every segment is read from a zero memory and the validation loss does not depend on what was read before.
"""

from __future__ import annotations

import abc
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from models.input_pipeline import InputConfig

TARGET_IDS = "target_ids"
TARGET_WEIGHTS = "target_weights"


class Objective(abc.ABC):
    """One training objective. `name` keys it (``--family``'s objective, the training summary); `accuracy_metric`
    names the share of targets whose argmax is right, as the trainer logs and reports it."""

    name: str
    description: str
    accuracy_metric: str
    state_keys: tuple[str, ...] = ()

    @abc.abstractmethod
    def floor(self, counts: Mapping[str, float], sequences: int) -> float:
        """The no-context floor in nats: the loss of the best model that ignores context, for residue `counts`
        over `sequences` proteins."""

    @abc.abstractmethod
    def task_model(self, backbone: keras.layers.Layer, lanes: int = 1) -> keras.Model:
        """The training model around `backbone`: a batch's model inputs → float logits per target slot.
        `lanes` is the per-replica batch, the memory rows of an objective that keeps a memory."""

    @abc.abstractmethod
    def dataset(self, files: Sequence[str], config: InputConfig,
                input_context: tf.distribute.InputContext | None = None,
                backbone: keras.layers.Layer | None = None, repeat: bool = True) -> tf.data.Dataset:
        """Training batches from the Beam job's TFRecord shards, deterministic for `config.seed`. Under a
        strategy, `input_context` gives this input pipeline its disjoint share of the files."""

    def keeps_memory(self, backbone: keras.layers.Layer) -> bool:
        """True when the task model carries a memory per batch lane from one batch to the next (so the per-replica
        batch may not change during a run)."""
        return False

    def with_lanes(self, task_model: keras.Model, lanes: int) -> keras.Model:
        """`task_model` (built elsewhere, e.g. imported) ready to train `lanes` memory rows per replica; unchanged
        for an objective without memory."""
        return task_model

    def serving_signatures(self, task_model: keras.Model) -> dict[str, tf.types.experimental.GenericFunction]:
        """What the objective's head serves beside the embeddings, by signature name (tf.functions with their
        input signatures, :mod:`models.objectives.scoring`); none for an objective whose head scores nothing."""
        return {}

    def model_inputs(self, batch: Mapping[str, Any], training: bool) -> dict[str, Any]:
        """What the task model reads from `batch`: all but the targets (and, outside training, the state)."""
        dropped = (TARGET_IDS, TARGET_WEIGHTS) + (() if training else self.state_keys)
        return {key: value for key, value in batch.items() if key not in dropped}

    def __repr__(self) -> str:
        return f"<objective {self.name}>"
