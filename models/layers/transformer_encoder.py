"""The post-layer-norm Transformer encoder layer of BERT and ALBERT."""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf
from keras import ops

from models.layers.query_blocks import over_blocks, query_block

_ACTIVATIONS: dict[str, Callable] = {
    "gelu": lambda x: keras.activations.gelu(x, approximate=False),  # BERT's erf GELU
    "gelu_new": lambda x: keras.activations.gelu(x, approximate=True),  # ALBERT's tanh approximation
    "relu": keras.activations.relu,
}


def activation(name: str) -> Callable:
    """The activation a published config names (`hidden_act`)."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}") from None


@keras.saving.register_keras_serializable(package="prottrans")
class TransformerEncoderLayer(keras.layers.Layer):
    """Self-attention and a feed-forward block, each followed by dropout, a residual add and LayerNorm.

    Call with ``(hidden [batch, length, hidden_dim], padding_mask [batch, length] bool)``: padded positions
    are never attended to (they still get outputs, which callers ignore). Outside training, an input whose scores
    would pass ``SCORE_BYTES`` attends in query blocks (:mod:`models.layers.query_blocks`), with equal results.
    """

    def __init__(
        self,
        hidden_dim: int,
        num_heads: int,
        intermediate_dim: int,
        activation_name: str = "gelu",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-12,
        kernel_initializer="truncated_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}")
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.activation_name = activation_name
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self._activation = activation(activation_name)

        init = lambda: keras.initializers.get(keras.initializers.serialize(self.kernel_initializer))  # noqa: E731
        self.attention = keras.layers.MultiHeadAttention(
            num_heads, hidden_dim // num_heads, dropout=attention_dropout, kernel_initializer=init(),
            dtype=self.dtype_policy, name="attention")
        self.attention_dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="attention_norm")
        self.intermediate = keras.layers.Dense(
            intermediate_dim, kernel_initializer=init(), dtype=self.dtype_policy, name="intermediate")
        self.output_dense = keras.layers.Dense(
            hidden_dim, kernel_initializer=init(), dtype=self.dtype_policy, name="output")
        self.output_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.output_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="output_norm")

    def build(self, hidden_shape, padding_mask_shape=None):
        self.attention.build(hidden_shape, hidden_shape)
        self.attention_norm.build(hidden_shape)
        self.intermediate.build(hidden_shape)
        self.output_dense.build((*hidden_shape[:-1], self.intermediate_dim))
        self.output_norm.build(hidden_shape)

    def call(self, hidden, padding_mask=None, training=None):
        attention_mask = None
        if padding_mask is not None:
            attention_mask = ops.expand_dims(ops.cast(padding_mask, "bool"), 1)  # keys only: [batch, 1, length]
        attended = self._self_attention(hidden, attention_mask, training)
        hidden = self.attention_norm(hidden + self.attention_dropout_layer(attended, training=training))
        feed_forward = self.output_dense(self._activation(self.intermediate(hidden)))
        return self.output_norm(hidden + self.output_dropout(feed_forward, training=training))

    def _self_attention(self, hidden, attention_mask, training):
        def whole():
            return self.attention(hidden, hidden, attention_mask=attention_mask, training=training)

        if training:  # training lengths are bounded, and XLA compiles no dynamic block loop
            return whole()
        length = tf.shape(hidden)[1]
        block = query_block(tf.shape(hidden)[0], self.num_heads, length)
        return tf.cond(block < length, lambda: self._in_query_blocks(hidden, attention_mask, block), whole)

    def _in_query_blocks(self, hidden, attention_mask, block):
        """The attention layer's own projections and scoring (``_compute_attention``, Keras's documented hook),
        `block` queries at a time against every key."""
        attention = self.attention
        query, key, value = attention.query_dense(hidden), attention.key_dense(hidden), attention.value_dense(hidden)
        length = tf.shape(hidden)[1]

        def attend(start, stop):
            mask = None if attention_mask is None else tf.broadcast_to(
                attention_mask, [tf.shape(hidden)[0], stop - start, length])
            output, _ = attention._compute_attention(query[:, start:stop], key, value, mask, training=False)
            return output

        return attention.output_dense(over_blocks(length, block, attend, value.dtype, tuple(value.shape[2:])))

    def compute_output_shape(self, hidden_shape, padding_mask_shape=None):
        return hidden_shape

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "activation_name": self.activation_name,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
