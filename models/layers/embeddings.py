"""Learned absolute position embeddings. (Token embeddings that also decode, for the tied masked-LM heads, are
:class:`keras.layers.ReversibleEmbedding`.)"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="prottrans")
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embeddings for positions ``0 … length-1`` of the input sequence."""

    def __init__(self, max_length: int, output_dim: int, initializer="truncated_normal", **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.output_dim = output_dim
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_length, self.output_dim), initializer=self.initializer)

    def call(self, inputs):
        """`inputs`: any tensor ``[batch, length, …]``; returns ``[1, length, output_dim]``."""
        length = ops.shape(inputs)[1]
        return ops.expand_dims(ops.cast(self.embeddings[:length], self.compute_dtype), 0)

    def compute_output_shape(self, input_shape):
        return (1, input_shape[1], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "max_length": self.max_length,
            "output_dim": self.output_dim,
            "initializer": keras.initializers.serialize(self.initializer),
        }
