"""A language-model head tied to its backbone's token embedding (Transformer-XL and XLNet)."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="prottrans")
class TiedLMHead(keras.layers.Layer):
    """Logits over the vocabulary from hidden states: the token embedding transposed (tied) plus a bias."""

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def build(self, shape):
        self.bias = self.add_weight(name="bias", shape=(self.backbone.vocabulary_size,), initializer="zeros")
        super().build(shape)

    def call(self, hidden):
        embeddings = tf.cast(self.backbone.token_embedding.embeddings, hidden.dtype)
        return tf.einsum("...h,vh->...v", hidden, embeddings) + tf.cast(self.bias, hidden.dtype)
