"""Token embeddings that also project back onto the vocabulary (tied MLM decoders), and learned positions."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="prottrans")
class ReversibleEmbedding(keras.layers.Embedding):
    """An embedding whose matrix also decodes: ``layer(x, reverse=True)`` gives ``x @ embeddings.T``.

    The masked-LM heads of BERT and ALBERT tie their output projection to the input embedding this way.
    """

    def call(self, inputs, reverse: bool = False):
        if reverse:
            return ops.matmul(inputs, ops.transpose(ops.cast(self.embeddings, inputs.dtype)))
        return super().call(inputs)

    def compute_output_shape(self, input_shape, reverse: bool = False):
        if reverse:
            return (*input_shape[:-1], self.input_dim)
        return super().compute_output_shape(input_shape)


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
