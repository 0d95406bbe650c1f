"""What Transformer-XL and XLNet backbones share: a token embedding, a stack of relative-attention and
feed-forward layers, and the memory step (keys and values of a layer are its memory plus the current segment;
its new memory is the last `memory_length` of those, without gradient)."""

from __future__ import annotations

import keras
import tensorflow as tf

from models import vocabulary
from models.layers.feed_forward import PositionwiseFeedForward
from models.layers.relative_attention import RelativeAttention


class SegmentRecurrentBackbone(keras.layers.Layer):
    """Base of :class:`~models.prottxl.backbone.TransformerXLBackbone` and
    :class:`~models.protxlnet.backbone.XLNetBackbone`; subclasses write `forward`."""

    def __init__(self, num_layers: int, hidden_dim: int, num_heads: int, intermediate_dim: int, memory_length: int,
                 max_sequence_length: int, vocabulary_size: int, dropout: float, layer_norm_epsilon: float,
                 initializer_range: float, clamp_length: int, *, activation: str, attention_dropout: float,
                 head_dim: int | None = None, token_rows: list[int] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.hidden_dim, self.num_heads = num_layers, hidden_dim, num_heads
        self.intermediate_dim, self.memory_length = intermediate_dim, memory_length
        self.max_sequence_length, self.vocabulary_size = max_sequence_length, vocabulary_size
        self.dropout, self.layer_norm_epsilon = dropout, layer_norm_epsilon
        self.initializer_range, self.clamp_length = initializer_range, clamp_length
        self.token_rows = vocabulary.check_token_rows(token_rows, vocabulary_size)
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.token_embedding = keras.layers.Embedding(vocabulary_size, hidden_dim, embeddings_initializer=init,
                                                      name="token_embedding")
        self.drop = keras.layers.Dropout(dropout)
        self.attention_layers = [
            RelativeAttention(hidden_dim, num_heads, dropout, attention_dropout, layer_norm_epsilon,
                              initializer_range, head_dim=head_dim, name=f"relative_attention_{i}")
            for i in range(num_layers)]
        self.feed_forward_layers = [
            PositionwiseFeedForward(hidden_dim, intermediate_dim, dropout, activation, layer_norm_epsilon,
                                    initializer_range, name=f"feed_forward_{i}") for i in range(num_layers)]

    def build(self, token_ids_shape):
        self.token_embedding.build(token_ids_shape)
        for attention, feed_forward in zip(self.attention_layers, self.feed_forward_layers):
            attention.build((None, None, self.hidden_dim))
            feed_forward.build((None, None, self.hidden_dim))
        super().build(token_ids_shape)

    def call(self, token_ids, training=None):
        return self.forward(token_ids, training=training).hidden

    def embed_tokens(self, token_ids: tf.Tensor) -> tf.Tensor:
        """The token embeddings of our token ids (through `token_rows` for an imported vocabulary)."""
        return self.token_embedding(vocabulary.checkpoint_rows(token_ids, self.token_rows))

    def keys_values(self, hidden: tf.Tensor, memory: list[tf.Tensor] | None, index: int,
                    new_memory: list[tf.Tensor]) -> tf.Tensor:
        """Layer `index`'s keys and values (its memory, if any, then `hidden`); appends its new memory."""
        keys_values = hidden if not memory else tf.concat([tf.cast(memory[index], hidden.dtype), hidden], 1)
        if self.memory_length:
            new_memory.append(tf.stop_gradient(keys_values[:, -self.memory_length:]))
        return keys_values

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads, "intermediate_dim": self.intermediate_dim,
                "memory_length": self.memory_length, "max_sequence_length": self.max_sequence_length,
                "vocabulary_size": self.vocabulary_size, "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon, "initializer_range": self.initializer_range,
                "clamp_length": self.clamp_length,
                **({"token_rows": self.token_rows} if self.token_rows is not None else {})}
