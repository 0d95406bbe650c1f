"""The reference our masked LM is measured against: keras-hub's `BertMaskedLM` of the same shape."""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from models import vocabulary


def keras_hub_bert(shape: dict, length: int) -> tuple[keras.Model, Callable]:
    """keras-hub's BERT masked LM with `shape` (num_layers, hidden_dim, num_heads, intermediate_dim), and a forward
    function that takes our masked-LM batches (``token_ids``, ``mask_positions``)."""
    import keras_hub  # the bench dependency group only

    backbone = keras_hub.models.BertBackbone(vocabulary_size=vocabulary.VOCABULARY_SIZE, max_sequence_length=length,
                                             dropout=0.0, **shape)
    model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)

    def forward(batch):
        token_ids = batch["token_ids"]
        return model({"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids),
                      "padding_mask": tf.not_equal(token_ids, vocabulary.PAD_ID),
                      "mask_positions": batch["mask_positions"]}, training=True)

    return model, forward
