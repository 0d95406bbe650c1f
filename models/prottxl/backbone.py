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
from models.layers.relative_attention import sinusoid_positions
from models.networks.segment_recurrent import SegmentRecurrentBackbone


class TransformerXLState(NamedTuple):
    hidden: tf.Tensor  # [b, q, h]
    memory: list[tf.Tensor]  # per layer: its inputs over the last `memory_length` positions [b, mem, h]


@keras.saving.register_keras_serializable(package="prottrans")
class TransformerXLBackbone(SegmentRecurrentBackbone):

    def __init__(self, num_layers: int, hidden_dim: int, num_heads: int, head_dim: int, intermediate_dim: int,
                 memory_length: int = 0, max_sequence_length: int = 1026,
                 vocabulary_size: int = vocabulary.VOCABULARY_SIZE, dropout: float = 0.0,
                 attention_dropout: float = 0.0, layer_norm_epsilon: float = 1e-5, initializer_range: float = 0.02,
                 clamp_length: int = -1, **kwargs):
        super().__init__(num_layers, hidden_dim, num_heads, intermediate_dim, memory_length, max_sequence_length,
                         vocabulary_size, dropout, layer_norm_epsilon, initializer_range, clamp_length,
                         activation="relu", attention_dropout=attention_dropout, head_dim=head_dim, **kwargs)
        self.head_dim, self.attention_dropout = head_dim, attention_dropout

    def initial_memory(self, batch) -> list[tf.Tensor]:
        """The zero memory a stream starts from."""
        return [tf.zeros([batch, self.memory_length, self.hidden_dim], self.compute_dtype)
                for _ in range(self.num_layers)]

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

        hidden = self.embed_tokens(token_ids) * tf.cast(self.hidden_dim ** 0.5, self.compute_dtype)
        hidden = self.drop(hidden, training=training)
        positions = self.drop(sinusoid_positions(query_length, key_length, self.hidden_dim, self.clamp_length),
                              training=training)
        new_memory = []
        for index, (attention, feed_forward) in enumerate(zip(self.attention_layers, self.feed_forward_layers)):
            keys_values = self.keys_values(hidden, memory, index, new_memory)
            hidden = feed_forward(attention(hidden, keys_values, positions, mask, training=training),
                                  training=training)
        return TransformerXLState(self.drop(hidden, training=training), new_memory)

    def get_config(self):
        return {**super().get_config(), "head_dim": self.head_dim, "attention_dropout": self.attention_dropout}
