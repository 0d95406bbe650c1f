"""The masked-LM task model: a backbone plus the tied masked-LM head, scoring only the masked positions."""

from __future__ import annotations

import keras
from keras import ops

from models.input_pipeline import pretraining_dataset
from models.networks.encoder_backbone import EncoderBackbone, initializer
from models.layers import MaskedLMHead


@keras.saving.register_keras_serializable(package="prottrans")
class MaskedLM(keras.Model):
    """``{"token_ids": [batch, length], "mask_positions": [batch, positions]}`` → logits
    ``[batch, positions, vocabulary]`` at the given positions (all positions when `mask_positions` is absent).

    Scoring only the ~15% masked positions keeps the vocabulary projection off the other 85%.
    """

    def __init__(self, backbone: EncoderBackbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = MaskedLMHead(
            backbone.token_embedding, activation_name=backbone.activation_name,
            layer_norm_epsilon=backbone.layer_norm_epsilon, kernel_initializer=initializer(),
            dtype=backbone.dtype_policy, name="mlm_head")

    def build(self, input_shape):
        token_ids_shape = input_shape["token_ids"] if isinstance(input_shape, dict) else input_shape
        if not self.backbone.built:
            self.backbone.build(token_ids_shape)
        self.head.build((*token_ids_shape, self.backbone.hidden_dim))
        self.built = True

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            token_ids, mask_positions = inputs["token_ids"], inputs.get("mask_positions")
        else:
            token_ids, mask_positions = inputs, None
        hidden = self.backbone(token_ids, training=training)
        if mask_positions is not None:
            hidden = ops.take_along_axis(hidden, ops.expand_dims(ops.cast(mask_positions, "int32"), -1), axis=1)
        return self.head(hidden)

    def get_config(self):
        return {"name": self.name, "backbone": keras.saving.serialize_keras_object(self.backbone)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def masked_lm_task(backbone: EncoderBackbone, lanes: int = 1) -> MaskedLM:
    """The task model of the masked-LM families (`lanes` is for models with memory; an encoder has none)."""
    return MaskedLM(backbone)


def masked_lm_dataset(files, config, input_context=None, backbone=None):
    """The masked-LM families' training batches (:func:`models.input_pipeline.pretraining_dataset`)."""
    return pretraining_dataset(files, config, input_context)


CHECKPOINT_FILES = ("config.json", "vocab.txt", "model.safetensors or pytorch_model.bin")
