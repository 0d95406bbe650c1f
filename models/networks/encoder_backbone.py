"""The encoder shared by ProtBert and ProtAlbert: embeddings, then a stack of post-LN Transformer layers.

ProtBert embeds straight into the hidden size and has one set of weights per layer; ProtAlbert factorises
the embedding (``embedding_dim`` < ``hidden_dim``, projected up) and applies one shared layer
``num_layers`` times. The family folders (:mod:`models.protbert`, :mod:`models.protalbert`) fix those
choices and hold the presets.
"""

from __future__ import annotations

import keras
from keras import ops

from models import vocabulary
from models.layers import PositionEmbedding, ReversibleEmbedding, TransformerEncoderLayer

INITIALIZER_STDDEV = 0.02  # BERT's truncated-normal initialiser


def initializer() -> keras.initializers.Initializer:
    return keras.initializers.TruncatedNormal(stddev=INITIALIZER_STDDEV)


@keras.saving.register_keras_serializable(package="prottrans")
class EncoderBackbone(keras.Model):
    """``token_ids [batch, length]`` (``[CLS] residues [SEP]``, padded with ``[PAD]``) → hidden states
    ``[batch, length, hidden_dim]``. Padded positions are masked out of attention."""

    def __init__(
        self,
        num_layers: int,
        hidden_dim: int,
        num_heads: int,
        intermediate_dim: int,
        max_sequence_length: int,
        vocabulary_size: int = vocabulary.VOCABULARY_SIZE,
        embedding_dim: int | None = None,
        share_layers: bool = False,
        type_vocabulary_size: int = 2,
        activation_name: str = "gelu",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-12,
        token_rows: list[int] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.max_sequence_length = max_sequence_length
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim or hidden_dim
        self.share_layers = share_layers
        self.type_vocabulary_size = type_vocabulary_size
        self.activation_name = activation_name
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.token_rows = vocabulary.check_token_rows(token_rows, vocabulary_size)

        policy = self.dtype_policy
        self.token_embedding = ReversibleEmbedding(
            vocabulary_size, self.embedding_dim, embeddings_initializer=initializer(), dtype=policy,
            name="token_embedding")
        self.position_embedding = PositionEmbedding(
            max_sequence_length, self.embedding_dim, initializer=initializer(), dtype=policy,
            name="position_embedding")
        self.segment_embedding = keras.layers.Embedding(
            type_vocabulary_size, self.embedding_dim, embeddings_initializer=initializer(), dtype=policy,
            name="segment_embedding")
        self.embeddings_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="embeddings_norm")
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=policy)
        self.embedding_projection = None
        if self.embedding_dim != hidden_dim:
            self.embedding_projection = keras.layers.Dense(
                hidden_dim, kernel_initializer=initializer(), dtype=policy, name="embedding_projection")
        layer_count = 1 if share_layers else num_layers
        self.encoder_layers = [
            TransformerEncoderLayer(
                hidden_dim, num_heads, intermediate_dim, activation_name=activation_name, dropout=dropout,
                attention_dropout=attention_dropout, layer_norm_epsilon=layer_norm_epsilon,
                kernel_initializer=initializer(), dtype=policy, name=f"transformer_layer_{i}")
            for i in range(layer_count)
        ]

    def build(self, token_ids_shape):
        batch, length = token_ids_shape
        embedded = (batch, length, self.embedding_dim)
        self.token_embedding.build(token_ids_shape)
        self.position_embedding.build(embedded)
        self.segment_embedding.build(token_ids_shape)
        self.embeddings_norm.build(embedded)
        if self.embedding_projection is not None:
            self.embedding_projection.build(embedded)
        for layer in self.encoder_layers:
            layer.build((batch, length, self.hidden_dim))
        self.built = True

    def call(self, token_ids, training=None):
        padding_mask = ops.not_equal(token_ids, vocabulary.PAD_ID)
        hidden = (
            self.token_embedding(vocabulary.checkpoint_rows(token_ids, self.token_rows))
            + self.position_embedding(token_ids)
            + self.segment_embedding(ops.zeros_like(token_ids))  # proteins are single segments
        )
        hidden = self.embeddings_dropout(self.embeddings_norm(hidden), training=training)
        if self.embedding_projection is not None:
            hidden = self.embedding_projection(hidden)
        for index in range(self.num_layers):
            layer = self.encoder_layers[0 if self.share_layers else index]
            hidden = layer(hidden, padding_mask=padding_mask, training=training)
        return hidden

    def compute_output_shape(self, token_ids_shape):
        return (*token_ids_shape, self.hidden_dim)

    def get_config(self):
        return {
            "name": self.name,
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "max_sequence_length": self.max_sequence_length,
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "share_layers": self.share_layers,
            "type_vocabulary_size": self.type_vocabulary_size,
            "activation_name": self.activation_name,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            **({"token_rows": self.token_rows} if self.token_rows is not None else {}),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
