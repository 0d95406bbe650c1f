"""The permutation-LM task model: XLNet's query stream at the targets, scored by the tied LM head."""

from __future__ import annotations

import keras

from models.networks.stream_lm import StreamLM


@keras.saving.register_keras_serializable(package="prottrans")
class PermutationLM(StreamLM):
    """``{"token_ids", "permutation_mask", "target_mapping"[, "reset"]}`` → logits ``[batch, targets, vocabulary]``.

    With a backbone memory (`memory_length` > 0), batches are segments of per-lane streams (as Transformer-XL's)
    and each lane's memory of the previous segment is context for every position, targets included.
    """

    def call(self, inputs, training=None):
        memory = self.lane_memory.read(inputs["reset"]) if self.lane_memory and "reset" in inputs else None
        state = self.backbone.forward(inputs["token_ids"], memory=memory, permutation_mask=inputs["permutation_mask"],
                                      target_mapping=inputs["target_mapping"], training=training)
        if memory is not None:
            self.lane_memory.write(state.memory)
        return self.head(state.query)
