"""The position-wise feed-forward block of Transformer-XL and XLNet."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="prottrans")
class PositionwiseFeedForward(keras.layers.Layer):
    """Transformer-XL/XLNet feed-forward: Dense, activation, Dense, then residual + post-LayerNorm."""

    def __init__(self, hidden_dim: int, intermediate_dim: int, dropout: float = 0.0, activation: str = "gelu",
                 layer_norm_epsilon: float = 1e-12, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim, self.intermediate_dim, self.dropout = hidden_dim, intermediate_dim, dropout
        self.activation, self.layer_norm_epsilon = activation, layer_norm_epsilon
        self.initializer_range = initializer_range
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.layer_1 = keras.layers.Dense(intermediate_dim, kernel_initializer=init, name="layer_1")
        self.layer_2 = keras.layers.Dense(hidden_dim, kernel_initializer=init, name="layer_2")
        self.drop = keras.layers.Dropout(dropout)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="layer_norm")

    def build(self, shape):
        self.layer_1.build((None, None, self.hidden_dim))
        self.layer_2.build((None, None, self.intermediate_dim))
        self.layer_norm.build((None, None, self.hidden_dim))
        super().build(shape)

    def call(self, hidden, training=None):
        inner = self.layer_1(hidden)
        # "gelu" is the erf GELU (XLNet's); "relu" is Transformer-XL's
        inner = keras.activations.gelu(inner, approximate=False) if self.activation == "gelu" else \
            keras.activations.get(self.activation)(inner)
        inner = self.drop(inner, training=training)
        return self.layer_norm(self.drop(self.layer_2(inner), training=training) + hidden)

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout, "activation": self.activation,
                "layer_norm_epsilon": self.layer_norm_epsilon, "initializer_range": self.initializer_range}
