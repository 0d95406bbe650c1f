"""Per-lane memory of a segment-recurrent model during training (Transformer-XL, XLNet).

Row b of every batch continues lane b's stream, so the hidden states a layer saw for lane b in one batch are the
context of lane b's next segment. The memory lives in per-replica (sync-on-read) variables — each replica
feeds its own lanes — that are not model weights and not checkpointed: a resumed run starts its lanes afresh.
"""

from __future__ import annotations

import tensorflow as tf


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
