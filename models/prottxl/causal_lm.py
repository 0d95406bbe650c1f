"""The causal-LM task model of Transformer-XL: next-token logits at every position of a segment, with each batch
lane's memory carried from one training batch to the next."""

from __future__ import annotations

import keras

from models.networks.stream_lm import StreamLM
from models.prottxl.backbone import TransformerXLBackbone


@keras.saving.register_keras_serializable(package="prottrans")
class CausalLM(StreamLM):
    """``{"token_ids": [lanes, length], "reset": [lanes]}`` → logits ``[lanes, length, vocabulary]``.

    Row b of every batch continues lane b's stream of proteins, so the memory the previous batch left is the
    context of this one; ``reset`` is 1 where a lane starts over (the first batch of a run), and zeroes its
    memory (:class:`models.networks.stream_lm.LaneMemory`).
    """

    def __init__(self, backbone: TransformerXLBackbone, lanes: int = 1, **kwargs):
        if not backbone.memory_length:
            raise ValueError("a causal LM trained on segment streams needs a memory_length > 0")
        super().__init__(backbone, lanes, **kwargs)

    def call(self, inputs, training=None):
        if "reset" not in inputs:  # one segment read on its own (validation): from a zero memory, no lane touched
            return self.head(self.backbone.forward(inputs["token_ids"], training=training).hidden)
        state = self.backbone.forward(inputs["token_ids"], memory=self.lane_memory.read(inputs["reset"]),
                                      training=training)
        self.lane_memory.write(state.memory)
        return self.head(state.hidden)
