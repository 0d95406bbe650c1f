"""What the objectives of segment-recurrent models (causal LM, permutation LM) share: the per-lane memory of
training and the task model's base.

Row b of every batch continues lane b's stream, so the hidden states a layer saw for lane b in one batch are the
context of lane b's next segment. The memory lives in per-replica (sync-on-read) variables — each replica
feeds its own lanes — that are not model weights and not checkpointed: a resumed run starts its lanes afresh.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.input_pipeline import RESET
from models.layers.tied_lm_head import TiedLMHead
from models.objectives.objective import Objective


class LaneMemory:
    def __init__(self, lanes: int, num_layers: int, memory_length: int, hidden_dim: int):
        shape = [lanes, memory_length, hidden_dim]
        self.variables = [
            tf.Variable(tf.zeros(shape), trainable=False, name=f"memory_{i}",
                        synchronization=tf.VariableSynchronization.ON_READ,
                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            for i in range(num_layers)]

    def read(self, reset: tf.Tensor) -> list[tf.Tensor]:
        """The memory, zeroed for the lanes where `reset` ``[lanes]`` is 1 (a new stream starts)."""
        keep = 1.0 - tf.cast(reset, tf.float32)[:, None, None]
        return [variable * keep for variable in self.variables]

    def write(self, memory: list[tf.Tensor]) -> None:
        for variable, value in zip(self.variables, memory):
            variable.assign(tf.cast(value, tf.float32))


class StreamLM(keras.Model):
    """Base of the task models of segment-recurrent backbones: the tied LM head and, when the backbone has a
    memory, a :class:`LaneMemory` of `lanes` rows (not a Keras weight: stream state, not checkpointed)."""

    def __init__(self, backbone, lanes: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.lanes = lanes
        self.head = TiedLMHead(backbone, name="lm_head")

    def build(self, input_shape):
        token_ids_shape = input_shape["token_ids"] if isinstance(input_shape, dict) else input_shape
        if not self.backbone.built:
            self.backbone.build(token_ids_shape)
        self.head.build((None, None, self.backbone.hidden_dim))
        lane_memory = None
        if self.backbone.memory_length:
            lane_memory = LaneMemory(self.lanes, self.backbone.num_layers, self.backbone.memory_length,
                                     self.backbone.hidden_dim)
        object.__setattr__(self, "lane_memory", lane_memory)  # bypasses Keras tracking on purpose
        self.built = True

    def set_lanes(self, lanes: int) -> None:
        """One memory row per lane for `lanes` lanes, all zero (a model imported for one lane, trained on more)."""
        self.lanes = lanes
        if self.lane_memory is not None:
            object.__setattr__(self, "lane_memory", LaneMemory(lanes, self.backbone.num_layers,
                                                               self.backbone.memory_length, self.backbone.hidden_dim))


class StreamObjective(Objective):
    """An objective whose task model is a :class:`StreamLM`: with a backbone memory, its batches are segments of
    per-lane streams whose ``reset`` flags are stream state."""

    state_keys = (RESET,)

    def keeps_memory(self, backbone) -> bool:
        return bool(getattr(backbone, "memory_length", 0))

    def with_lanes(self, task_model, lanes):
        task_model.set_lanes(lanes)
        return task_model
