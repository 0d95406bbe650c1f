"""The Transformer-XL backbone: causal relative-position attention over the current segment and a memory of
the previous segments' hidden states (no gradient through the memory).

`backbone(token_ids)` gives the hidden states ``[batch, length, hidden]`` of one segment read from a zero memory
(as the reference implementation starts); `backbone.forward(token_ids, memory)` also returns the new memory, so a
stream of segments (one protein after another in each batch lane) carries context from batch to batch.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from models import vocabulary
from models.layers.feed_forward import PositionwiseFeedForward
from models.layers.relative_attention import RelativeAttention, sinusoid_positions


class TransformerXLState(NamedTuple):
    hidden: tf.Tensor  # [b, q, h]
    memory: list[tf.Tensor]  # per layer: its inputs over the last `memory_length` positions [b, mem, h]


@keras.saving.register_keras_serializable(package="prottrans")
class TransformerXLBackbone(keras.layers.Layer):

    def __init__(self, num_layers: int, hidden_dim: int, num_heads: int, head_dim: int, intermediate_dim: int,
                 memory_length: int = 0, max_sequence_length: int = 1026,
                 vocabulary_size: int = vocabulary.VOCABULARY_SIZE, dropout: float = 0.0,
                 attention_dropout: float = 0.0, layer_norm_epsilon: float = 1e-5, initializer_range: float = 0.02,
                 clamp_length: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.hidden_dim, self.num_heads, self.head_dim = num_layers, hidden_dim, num_heads, head_dim
        self.intermediate_dim, self.memory_length = intermediate_dim, memory_length
        self.max_sequence_length, self.vocabulary_size = max_sequence_length, vocabulary_size
        self.dropout, self.attention_dropout, self.layer_norm_epsilon = dropout, attention_dropout, layer_norm_epsilon
        self.initializer_range, self.clamp_length = initializer_range, clamp_length
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.token_embedding = keras.layers.Embedding(vocabulary_size, hidden_dim, embeddings_initializer=init,
                                                      name="token_embedding")
        self.drop = keras.layers.Dropout(dropout)
        self.attention_layers = [
            RelativeAttention(hidden_dim, num_heads, dropout, attention_dropout, layer_norm_epsilon,
                              initializer_range, head_dim=head_dim, name=f"relative_attention_{i}")
            for i in range(num_layers)]
        self.feed_forward_layers = [
            PositionwiseFeedForward(hidden_dim, intermediate_dim, dropout, "relu", layer_norm_epsilon,
                                    initializer_range, name=f"feed_forward_{i}") for i in range(num_layers)]

    def build(self, token_ids_shape):
        self.token_embedding.build(token_ids_shape)
        for attention, feed_forward in zip(self.attention_layers, self.feed_forward_layers):
            attention.build((None, None, self.hidden_dim))
            feed_forward.build((None, None, self.hidden_dim))
        super().build(token_ids_shape)

    def initial_memory(self, batch) -> list[tf.Tensor]:
        """The zero memory a stream starts from."""
        return [tf.zeros([batch, self.memory_length, self.hidden_dim], self.compute_dtype)
                for _ in range(self.num_layers)]

    def call(self, token_ids, training=None):
        return self.forward(token_ids, training=training).hidden

    def forward(self, token_ids, memory: list[tf.Tensor] | None = None, training=None) -> TransformerXLState:
        token_ids = tf.convert_to_tensor(token_ids)
        batch, query_length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        if memory is None and self.memory_length:
            memory = self.initial_memory(batch)
        memory_length = tf.shape(memory[0])[1] if memory else 0
        key_length = memory_length + query_length
        # Query i (at stream position memory_length + i) sees keys up to and including itself.
        future = tf.range(key_length)[None, :] > (tf.range(query_length)[:, None] + memory_length)
        mask = tf.broadcast_to(future[None], [batch, query_length, key_length])

        hidden = self.token_embedding(token_ids) * tf.cast(self.hidden_dim ** 0.5, self.compute_dtype)
        hidden = self.drop(hidden, training=training)
        positions = self.drop(sinusoid_positions(query_length, key_length, self.hidden_dim, self.clamp_length),
                              training=training)
        new_memory = []
        for index, (attention, feed_forward) in enumerate(zip(self.attention_layers, self.feed_forward_layers)):
            keys_values = hidden if not memory else tf.concat([tf.cast(memory[index], hidden.dtype), hidden], 1)
            if self.memory_length:
                new_memory.append(tf.stop_gradient(keys_values[:, -self.memory_length:]))
            hidden = feed_forward(attention(hidden, keys_values, positions, mask, training=training),
                                  training=training)
        return TransformerXLState(self.drop(hidden, training=training), new_memory)

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads, "head_dim": self.head_dim, "intermediate_dim": self.intermediate_dim,
                "memory_length": self.memory_length, "max_sequence_length": self.max_sequence_length,
                "vocabulary_size": self.vocabulary_size, "dropout": self.dropout,
                "attention_dropout": self.attention_dropout, "layer_norm_epsilon": self.layer_norm_epsilon,
                "initializer_range": self.initializer_range, "clamp_length": self.clamp_length}
