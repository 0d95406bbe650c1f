"""T5's own pieces: RMS layer norm, bucketed relative position bias, attention without 1/√d scaling, and the
ReLU or gated-GELU feed-forward (Raffel et al. 2020; T5 v1.1 for the gated variant).

Keras's MultiHeadAttention is not used: it scales scores by 1/√d and takes no additive position bias, both of
which T5 needs to match published checkpoints. Layer norms and softmax compute in float32 whatever the model's
dtype (under float16 the squared activations of a 24-layer T5 overflow).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from models.layers.query_blocks import over_blocks


def relative_position_bucket(relative_position: tf.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> tf.Tensor:
    """T5's bucket of each ``key − query`` offset: exact buckets for small distances, logarithmic ones up to
    `max_distance`; half the buckets for each direction when `bidirectional`, else only the past counts."""
    bucket = tf.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket += tf.cast(relative_position > 0, relative_position.dtype) * num_buckets
        distance = tf.abs(relative_position)
    else:
        distance = -tf.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # max(distance, 1) keeps log finite; those small distances take the exact branch anyway.
    logarithmic = max_exact + tf.cast(
        tf.math.log(tf.cast(tf.maximum(distance, 1), tf.float32) / max_exact)
        / math.log(max_distance / max_exact) * (num_buckets - max_exact), distance.dtype)
    logarithmic = tf.minimum(logarithmic, num_buckets - 1)
    return bucket + tf.where(is_small, distance, logarithmic)


class RelativePositionBias(keras.layers.Layer):
    """``[1, heads, queries, keys]`` additive attention bias (float32) from bucketed offsets; computed once per
    forward pass and shared by every layer of a stack (T5 keeps the table in the first layer only)."""

    def __init__(self, num_heads: int, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.bidirectional = num_heads, bidirectional
        self.num_buckets, self.max_distance = num_buckets, max_distance

    def build(self, input_shape=None):
        self.table = self.add_weight(name="embeddings", shape=(self.num_buckets, self.num_heads),
                                     initializer=keras.initializers.RandomNormal(stddev=1.0))
        super().build(input_shape)

    def call(self, query_length: tf.Tensor, key_length: tf.Tensor, query_start: tf.Tensor | int = 0) -> tf.Tensor:
        """The bias of queries ``query_start … query_start + query_length − 1`` over keys ``0 … key_length − 1``."""
        offsets = tf.range(key_length)[None, :] - (query_start + tf.range(query_length))[:, None]
        buckets = relative_position_bucket(offsets, self.bidirectional, self.num_buckets, self.max_distance)
        bias = tf.gather(tf.cast(self.table, tf.float32), buckets)  # [q, k, heads]; scores are float32
        return tf.transpose(bias, [2, 0, 1])[None]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "bidirectional": self.bidirectional,
                "num_buckets": self.num_buckets, "max_distance": self.max_distance}


class T5Attention(keras.layers.Layer):
    """Multi-head attention as T5 computes it: bias-free projections, unscaled scores plus the position bias and
    the mask, softmax in float32."""

    def __init__(self, hidden_dim: int, num_heads: int, head_dim: int, dropout: float = 0.0, **kwargs):
        # The float32 bias must not be cast to a half compute dtype on the way in (the projections cast their own
        # inputs).
        super().__init__(**{**kwargs, "autocast": False})
        self.hidden_dim, self.num_heads, self.head_dim, self.dropout = hidden_dim, num_heads, head_dim, dropout
        inner = num_heads * head_dim
        self.query = keras.layers.Dense(inner, use_bias=False, name="query")
        self.key = keras.layers.Dense(inner, use_bias=False, name="key")
        self.value = keras.layers.Dense(inner, use_bias=False, name="value")
        self.output_dense = keras.layers.Dense(hidden_dim, use_bias=False, name="output")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        for dense in (self.query, self.key, self.value):
            dense.build((None, None, self.hidden_dim))
        self.output_dense.build((None, None, self.num_heads * self.head_dim))
        super().build(input_shape)

    def _heads(self, x: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(x)
        return tf.transpose(tf.reshape(x, [shape[0], shape[1], self.num_heads, self.head_dim]), [0, 2, 1, 3])

    def call(self, hidden: tf.Tensor, keys_values: tf.Tensor, bias: tf.Tensor, training=None) -> tf.Tensor:
        """`bias` ``[batch or 1, heads or 1, queries, keys]``: the position bias plus the mask (a large negative
        number where attention is blocked), in float32."""
        query, key, value = self._heads(self.query(hidden)), self._heads(self.key(keys_values)), \
            self._heads(self.value(keys_values))
        context = self._attend(query, key, value, bias, training)
        shape = tf.shape(context)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [shape[0], shape[2], self.num_heads * self.head_dim])
        return self.output_dense(context)

    def in_query_blocks(self, hidden: tf.Tensor, key_bias: tf.Tensor, position_bias: RelativePositionBias,
                        block: tf.Tensor, whole_bias: tf.Tensor, training=None) -> tf.Tensor:
        """Self-attention of `hidden` ``[batch, length, hidden]`` equal to :meth:`call` with the full bias, holding
        the scores of `block` queries at a time (``[batch, heads, block, length]``) instead of all of them: memory
        beyond the projections grows linearly with the length. `key_bias` ``[batch, 1, 1, length]``: the mask;
        `whole_bias`: position bias plus mask for every query, computed once for all layers, used when one block
        holds every query (a block's own bias is computed in the block otherwise)."""
        query, key, value = (self._heads(dense(hidden)) for dense in (self.query, self.key, self.value))
        length = tf.shape(hidden)[1]

        def attend(start, stop):
            bias = tf.cond(stop - start >= length, lambda: whole_bias,
                           lambda: position_bias(stop - start, length, start) + key_bias)
            context = self._attend(query[:, :, start:stop], key, value, bias, training)  # [batch, heads, q, d]
            return tf.transpose(context, [0, 2, 1, 3])

        context = over_blocks(length, block, attend, value.dtype, (self.num_heads, self.head_dim))
        shape = tf.shape(context)
        return self.output_dense(tf.reshape(context, [shape[0], shape[1], self.num_heads * self.head_dim]))

    def _attend(self, query, key, value, bias, training) -> tf.Tensor:
        scores = tf.matmul(tf.cast(query, tf.float32), tf.cast(key, tf.float32), transpose_b=True) + bias
        weights = self.drop(tf.nn.softmax(scores, axis=-1), training=training)
        return tf.matmul(tf.cast(weights, value.dtype), value)

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "num_heads": self.num_heads,
                "head_dim": self.head_dim, "dropout": self.dropout}


FEED_FORWARDS = ("relu", "gated-gelu")


class T5FeedForward(keras.layers.Layer):
    """``relu``: wo(relu(wi x)) (T5 v1.0, ProtT5-XL); ``gated-gelu``: wo(gelu_tanh(wi_0 x) · wi_1 x) (T5 v1.1).
    No biases. Under float16 the output projection ``wo`` computes in float32: T5's feed-forward outputs pass
    float16's 65,504 on real checkpoints (transformers keeps ``wo`` in float32 for the same reason); bfloat16 has
    float32's range and keeps it in bfloat16."""

    def __init__(self, hidden_dim: int, intermediate_dim: int, variant: str = "relu", dropout: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        if variant not in FEED_FORWARDS:
            raise ValueError(f"feed_forward must be one of {FEED_FORWARDS}, not {variant!r}")
        self.hidden_dim, self.intermediate_dim, self.variant, self.dropout = hidden_dim, intermediate_dim, variant, \
            dropout
        self.inner = keras.layers.Dense(intermediate_dim, use_bias=False, name="inner")
        self.gate = keras.layers.Dense(intermediate_dim, use_bias=False, name="gate") if variant == "gated-gelu" \
            else None
        wide_outer = self.dtype_policy.compute_dtype == "float16"
        self.outer = keras.layers.Dense(hidden_dim, use_bias=False, name="outer",
                                        dtype="float32" if wide_outer else self.dtype_policy)
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        self.inner.build((None, None, self.hidden_dim))
        if self.gate is not None:
            self.gate.build((None, None, self.hidden_dim))
        self.outer.build((None, None, self.intermediate_dim))
        super().build(input_shape)

    def call(self, hidden: tf.Tensor, training=None) -> tf.Tensor:
        if self.gate is None:
            inner = tf.nn.relu(self.inner(hidden))
        else:
            inner = tf.nn.gelu(self.inner(hidden), approximate=True) * self.gate(hidden)
        return self.outer(tf.cast(self.drop(inner, training=training), self.outer.compute_dtype))

    def in_position_blocks(self, hidden: tf.Tensor, block: tf.Tensor) -> tf.Tensor:
        """:meth:`call` at inference on `block` positions at a time: the inner activations of one block are live,
        not those of the whole protein."""
        return over_blocks(tf.shape(hidden)[1], block, lambda start, stop: self(hidden[:, start:stop]),
                           self.outer.compute_dtype, (self.hidden_dim,))

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "intermediate_dim": self.intermediate_dim,
                "variant": self.variant, "dropout": self.dropout}


def rms_norm(epsilon: float, name: str) -> keras.layers.Layer:
    """T5's layer norm (scale only, no mean, no bias), in float32."""
    return keras.layers.RMSNormalization(epsilon=epsilon, name=name, dtype="float32")
