"""The permutation-LM task model: XLNet's query stream at the targets, scored by the tied LM head."""

from __future__ import annotations

import keras

from models.layers.lane_memory import LaneMemory
from models.layers.tied_lm_head import TiedLMHead
from models.protxlnet.backbone import XLNetBackbone


@keras.saving.register_keras_serializable(package="prottrans")
class PermutationLM(keras.Model):
    """``{"token_ids", "permutation_mask", "target_mapping"[, "reset"]}`` → logits ``[batch, targets, vocabulary]``.

    With a backbone memory (`memory_length` > 0), batches are segments of per-lane streams (as Transformer-XL's)
    and each lane's memory of the previous segment is context for every position, targets included.
    """

    def __init__(self, backbone: XLNetBackbone, lanes: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.lanes = lanes
        self.head = TiedLMHead(backbone, name="lm_head")

    def build(self, input_shape):
        token_ids_shape = input_shape["token_ids"] if isinstance(input_shape, dict) else input_shape
        if not self.backbone.built:
            self.backbone.build(token_ids_shape)
        self.head.build((None, None, self.backbone.hidden_dim))
        lane_memory = None
        if self.backbone.memory_length:  # not tracked by Keras on purpose: stream state, not a weight
            lane_memory = LaneMemory(self.lanes, self.backbone.num_layers, self.backbone.memory_length,
                                     self.backbone.hidden_dim)
        object.__setattr__(self, "lane_memory", lane_memory)
        self.built = True

    def call(self, inputs, training=None):
        memory = self.lane_memory.read(inputs["reset"]) if self.lane_memory and "reset" in inputs else None
        state = self.backbone.forward(inputs["token_ids"], memory=memory, permutation_mask=inputs["permutation_mask"],
                                      target_mapping=inputs["target_mapping"], training=training)
        if memory is not None:
            self.lane_memory.write(state.memory)
        return self.head(state.query)
