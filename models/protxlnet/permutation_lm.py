"""The permutation-LM task model: XLNet's query stream at the targets, scored by the tied LM head."""

from __future__ import annotations

import keras

from models.layers.tied_lm_head import TiedLMHead
from models.protxlnet.backbone import XLNetBackbone


@keras.saving.register_keras_serializable(package="prottrans")
class PermutationLM(keras.Model):
    """``{"token_ids", "permutation_mask", "target_mapping"}`` → logits ``[batch, targets, vocabulary]``."""

    def __init__(self, backbone: XLNetBackbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = TiedLMHead(backbone, name="lm_head")

    def build(self, input_shape):
        token_ids_shape = input_shape["token_ids"] if isinstance(input_shape, dict) else input_shape
        if not self.backbone.built:
            self.backbone.build(token_ids_shape)
        self.head.build((None, None, self.backbone.hidden_dim))
        self.built = True

    def call(self, inputs, training=None):
        state = self.backbone.forward(inputs["token_ids"], permutation_mask=inputs["permutation_mask"],
                                      target_mapping=inputs["target_mapping"], training=training)
        return self.head(state.query)
