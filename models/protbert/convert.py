"""Rostlab's ProtBert (transformers' ``BertForMaskedLM`` folder: config.json, vocab.txt, weights) → our model."""

from __future__ import annotations

from typing import Callable

from models.protbert.encoder_convert import EncoderCheckpointNames, load_encoder_masked_lm
from models.objectives.masked_lm import MaskedLM


def _layer_names(layer: int) -> dict[str, str]:
    base = f"bert.encoder.layer.{layer}."
    return {
        "query": base + "attention.self.query", "key": base + "attention.self.key",
        "value": base + "attention.self.value", "attention_output": base + "attention.output.dense",
        "attention_norm": base + "attention.output.LayerNorm", "intermediate": base + "intermediate.dense",
        "output": base + "output.dense", "output_norm": base + "output.LayerNorm",
    }


NAMES = EncoderCheckpointNames(
    model_type="bert",
    embeddings={
        "token": "bert.embeddings.word_embeddings", "position": "bert.embeddings.position_embeddings",
        "segment": "bert.embeddings.token_type_embeddings", "embeddings_norm": "bert.embeddings.LayerNorm",
        "head_transform": "cls.predictions.transform.dense", "head_norm": "cls.predictions.transform.LayerNorm",
        "head_bias": "cls.predictions.bias",
    },
    layer=_layer_names,
    own_prefixes=("bert.embeddings.", "bert.encoder.", "cls.predictions."),
)


def load_checkpoint(directory: str, log: Callable[[str], None] = print) -> MaskedLM:
    return load_encoder_masked_lm(directory, NAMES, "protbert", log)
