"""The XLNet backbone: relative-position attention with a memory of the previous segment, and the two-stream
(content/query) attention of permutation language modelling.

`backbone(token_ids)` is the content stream over the whole input, ``[batch, length, hidden]``, what the
embedding API and the SavedModel use (bidirectional, like XLNet's fine-tuning). `backbone.forward(...)` also
takes a permutation mask, a target mapping and the memory, and returns both streams and the new memory.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from models import vocabulary
from models.layers.relative_attention import sinusoid_positions
from models.networks.segment_recurrent import SegmentRecurrentBackbone


class XLNetState(NamedTuple):
    hidden: tf.Tensor  # content stream [b, q, h]
    query: tf.Tensor | None  # query stream at the targets [b, m, h]
    memory: list[tf.Tensor]  # per layer, its input hidden states of this and earlier segments [b, mem, h]


@keras.saving.register_keras_serializable(package="prottrans")
class XLNetBackbone(SegmentRecurrentBackbone):

    def __init__(self, num_layers: int, hidden_dim: int, num_heads: int, intermediate_dim: int,
                 memory_length: int = 0, max_sequence_length: int = 1026,
                 vocabulary_size: int = vocabulary.VOCABULARY_SIZE, dropout: float = 0.0,
                 layer_norm_epsilon: float = 1e-12, initializer_range: float = 0.02, clamp_length: int = -1,
                 specials_at_end: bool = False, **kwargs):
        super().__init__(num_layers, hidden_dim, num_heads, intermediate_dim, memory_length, max_sequence_length,
                         vocabulary_size, dropout, layer_norm_epsilon, initializer_range, clamp_length,
                         activation="gelu", attention_dropout=dropout, **kwargs)
        self.specials_at_end = specials_at_end  # XLNet's own "residues <sep> <cls>" (imported checkpoints)

    @property
    def token_layout(self) -> str:
        return "sep_cls" if self.specials_at_end else "cls_sep"

    def build(self, token_ids_shape):
        self.mask_embedding = self.add_weight(
            name="mask_embedding", shape=(self.hidden_dim,),
            initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range))
        super().build(token_ids_shape)

    def forward(self, token_ids, memory: list[tf.Tensor] | None = None, permutation_mask=None,
                target_mapping=None, training=None) -> XLNetState:
        """`permutation_mask` ``[b, q, q]``: 1 where position i may not see position j (the permutation order);
        `target_mapping` ``[b, m, q]``: one-hot, the positions the m query vectors predict."""
        token_ids = tf.convert_to_tensor(token_ids)
        batch, query_length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        memory_length = tf.shape(memory[0])[1] if memory else 0
        key_length = memory_length + query_length

        padding = tf.equal(token_ids, vocabulary.PAD_ID)  # keys that nobody may see
        blocked = tf.broadcast_to(padding[:, None, :], [batch, query_length, query_length])
        if permutation_mask is not None:
            blocked = blocked | tf.cast(permutation_mask, tf.bool)
        blocked = tf.concat([tf.zeros([batch, query_length, memory_length], tf.bool), blocked], axis=2)
        # The content stream may see itself; the query stream may not (it predicts its own token).
        self_position = tf.concat([tf.zeros([query_length, memory_length], tf.bool),
                                   tf.cast(tf.eye(query_length), tf.bool)], axis=1)
        content_mask = blocked & ~self_position[None]

        hidden = self.drop(self.embed_tokens(token_ids), training=training)
        query = None
        if target_mapping is not None:
            target_mapping = tf.cast(target_mapping, hidden.dtype)
            shape = tf.shape(target_mapping)
            query = tf.broadcast_to(tf.cast(self.mask_embedding, hidden.dtype), [shape[0], shape[1], self.hidden_dim])
            query = self.drop(query, training=training)
        positions = self.drop(sinusoid_positions(query_length, key_length, self.hidden_dim, self.clamp_length),
                              training=training)

        new_memory = []
        for index, (attention, feed_forward) in enumerate(zip(self.attention_layers, self.feed_forward_layers)):
            keys_values = self.keys_values(hidden, memory, index, new_memory)
            next_hidden = feed_forward(attention(hidden, keys_values, positions, content_mask, training=training),
                                       training=training)
            if query is not None:
                query = feed_forward(attention(query, keys_values, positions, blocked, target_mapping,
                                               training=training), training=training)
            hidden = next_hidden
        hidden = self.drop(hidden, training=training)
        if query is not None:
            query = self.drop(query, training=training)
        return XLNetState(hidden, query, new_memory)

    def get_config(self):
        return {**super().get_config(), "specials_at_end": self.specials_at_end}
