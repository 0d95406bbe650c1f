"""Relative-position attention of Transformer-XL and XLNet (Dai et al. 2019; Yang et al. 2019).

Scores are ``(q + u)·k`` (content) plus ``(q + v)·R`` (position), where ``R`` projects sinusoids of the relative
distance and ``u``/``v`` are learned per-head biases; keys and values may include a memory of the previous
segment's hidden states. Batch-major (``[batch, length, …]``) throughout.
"""

from __future__ import annotations

import keras
import tensorflow as tf

NEG_INF = -1e30


def sinusoid_positions(query_length: tf.Tensor, key_length: tf.Tensor, dim: int, clamp: int = -1) -> tf.Tensor:
    """Sinusoids of the relative distances ``key_length, key_length - 1, …, -query_length + 1`` ``[klen + qlen,
    dim]`` (sin half, then cos half), as both papers' reference code computes them."""
    inverse_frequency = 1.0 / tf.pow(10000.0, tf.range(0, dim, 2, dtype=tf.float32) / dim)
    distances = tf.cast(tf.range(key_length, -query_length, -1), tf.float32)
    if clamp > 0:
        distances = tf.clip_by_value(distances, -float(clamp), float(clamp))
    angles = distances[:, None] * inverse_frequency[None, :]
    return tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)


def relative_shift(scores: tf.Tensor, key_length: tf.Tensor) -> tf.Tensor:
    """``[b, n, i, klen + qlen]`` scores by distance → ``[b, n, i, klen]`` scores by key position."""
    shape = tf.shape(scores)
    b, n, i, r = shape[0], shape[1], shape[2], shape[3]
    shifted = tf.reshape(scores, [b, n, r, i])[:, :, 1:, :]
    return tf.reshape(shifted, [b, n, i, r - 1])[:, :, :, :key_length]


@keras.saving.register_keras_serializable(package="prottrans")
class RelativeAttention(keras.layers.Layer):
    """Relative multi-head attention with post-attention residual + LayerNorm (both models' layout).

    `call(hidden, keys_values, positions, mask)`: `hidden` ``[b, i, h]`` are the queries' stream, `keys_values`
    ``[b, j, h]`` (memory + current hidden), `positions` ``[j + i, h]`` sinusoids, `mask` ``[b, i, j]`` bool,
    True where attention is forbidden (or None). `query_positions`: for XLNet's query stream, a
    ``[b, m, i]`` target mapping from the m query vectors to the positions they stand for.
    """

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float = 0.0, attention_dropout: float = 0.0,
                 layer_norm_epsilon: float = 1e-12, initializer_range: float = 0.02, head_dim: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if head_dim is None and hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}")
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.head_dim = head_dim or hidden_dim // num_heads
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.output_dropout = keras.layers.Dropout(dropout)
        self.probability_dropout = keras.layers.Dropout(attention_dropout)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="layer_norm")

    def build(self, hidden_shape, *_):
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        shape = (self.hidden_dim, self.num_heads, self.head_dim)
        for name in ("query", "key", "value", "output", "position"):
            setattr(self, f"{name}_kernel", self.add_weight(name=f"{name}_kernel", shape=shape, initializer=init))
        self.content_bias = self.add_weight(name="content_bias", shape=(self.num_heads, self.head_dim),
                                            initializer=init)  # u
        self.position_bias = self.add_weight(name="position_bias", shape=(self.num_heads, self.head_dim),
                                             initializer=init)  # v
        self.layer_norm.build((None, None, self.hidden_dim))
        super().build(hidden_shape)

    def _scores(self, queries, keys, positions_r, key_length, mask, training):
        content = tf.einsum("bind,bjnd->bnij", queries + tf.cast(self.content_bias, queries.dtype), keys)
        position = tf.einsum("bind,rnd->bnir", queries + tf.cast(self.position_bias, queries.dtype), positions_r)
        scores = tf.cast(content + relative_shift(position, key_length), tf.float32) * (self.head_dim ** -0.5)
        if mask is not None:
            scores = scores + tf.cast(mask[:, None, :, :], tf.float32) * NEG_INF
        probabilities = tf.cast(tf.nn.softmax(scores, axis=-1), queries.dtype)
        return self.probability_dropout(probabilities, training=training)

    def call(self, hidden, keys_values, positions, mask=None, query_positions=None, training=None):
        dtype = hidden.dtype
        keys = tf.einsum("bjh,hnd->bjnd", keys_values, tf.cast(self.key_kernel, dtype))
        values = tf.einsum("bjh,hnd->bjnd", keys_values, tf.cast(self.value_kernel, dtype))
        positions_r = tf.einsum("rh,hnd->rnd", tf.cast(positions, dtype), tf.cast(self.position_kernel, dtype))
        queries = tf.einsum("bih,hnd->bind", hidden, tf.cast(self.query_kernel, dtype))
        if query_positions is not None:  # m query vectors → the positions they predict
            queries = tf.einsum("bmnd,bml->blnd", queries, tf.cast(query_positions, dtype))
        probabilities = self._scores(queries, keys, positions_r, tf.shape(keys)[1], mask, training)
        attended = tf.einsum("bnij,bjnd->bind", probabilities, values)
        if query_positions is not None:
            attended = tf.einsum("blnd,bml->bmnd", attended, tf.cast(query_positions, dtype))
        output = tf.einsum("bind,hnd->bih", attended, tf.cast(self.output_kernel, dtype))
        return self.layer_norm(self.output_dropout(output, training=training) + hidden)

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "num_heads": self.num_heads,
                "dropout": self.dropout, "attention_dropout": self.attention_dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon, "initializer_range": self.initializer_range,
                "head_dim": self.head_dim}
