"""The masked-LM transform of BERT and ALBERT; the vocabulary projection is the tied embedding."""

from __future__ import annotations

import keras
from keras import ops

from models.layers.transformer_encoder import activation


class MaskedLMHead(keras.layers.Layer):
    """``hidden → Dense(embedding_dim) → activation → LayerNorm → embeddings.T + bias``.

    `token_embedding` is the model's :class:`~models.layers.ReversibleEmbedding`, shared, not owned: the task
    model that builds the head passes it (and it is not part of this layer's config). Call with hidden
    states ``[batch, positions, hidden_dim]``; returns logits ``[batch, positions, vocabulary]``.
    """

    def __init__(self, token_embedding, activation_name: str = "gelu", layer_norm_epsilon: float = 1e-12,
                 kernel_initializer="truncated_normal", **kwargs):
        super().__init__(**kwargs)
        self.token_embedding = token_embedding
        self.embedding_dim = token_embedding.output_dim
        self.vocabulary_size = token_embedding.input_dim
        self.activation_name = activation_name
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self._activation = activation(activation_name)
        self.transform = keras.layers.Dense(
            self.embedding_dim, kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy, name="transform")
        self.norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="norm")

    def build(self, hidden_shape):
        self.transform.build(hidden_shape)
        self.norm.build((*hidden_shape[:-1], self.embedding_dim))
        self.bias = self.add_weight(name="bias", shape=(self.vocabulary_size,), initializer="zeros")

    def call(self, hidden):
        transformed = self.norm(self._activation(self.transform(hidden)))
        logits = self.token_embedding(transformed, reverse=True)  # Keras's layer may return them in float32
        return logits + ops.cast(self.bias, logits.dtype)

    def compute_output_shape(self, hidden_shape):
        return (*hidden_shape[:-1], self.vocabulary_size)

    def get_config(self):
        return {
            **super().get_config(),
            "activation_name": self.activation_name,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
