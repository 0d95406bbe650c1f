"""Rostlab's ProtAlbert (transformers' ``AlbertForMaskedLM`` folder: config.json, vocab.txt, weights) → our model.

Only ALBERT's one group of one shared layer is mapped (ProtAlbert's layout).
"""

from __future__ import annotations

from typing import Callable

from models.hf_checkpoint import CheckpointError, read_config
from models.protbert.encoder_convert import EncoderCheckpointNames, load_encoder_masked_lm
from models.objectives.masked_lm import MaskedLM

_LAYER = "albert.encoder.albert_layer_groups.0.albert_layers.0."

NAMES = EncoderCheckpointNames(
    model_type="albert",
    embeddings={
        "token": "albert.embeddings.word_embeddings", "position": "albert.embeddings.position_embeddings",
        "segment": "albert.embeddings.token_type_embeddings", "embeddings_norm": "albert.embeddings.LayerNorm",
        "projection": "albert.encoder.embedding_hidden_mapping_in",
        "head_transform": "predictions.dense", "head_norm": "predictions.LayerNorm", "head_bias": "predictions.bias",
    },
    layer=lambda _: {
        "query": _LAYER + "attention.query", "key": _LAYER + "attention.key", "value": _LAYER + "attention.value",
        "attention_output": _LAYER + "attention.dense", "attention_norm": _LAYER + "attention.LayerNorm",
        "intermediate": _LAYER + "ffn", "output": _LAYER + "ffn_output", "output_norm": _LAYER + "full_layer_layer_norm",
    },
    own_prefixes=("albert.embeddings.", "albert.encoder.", "predictions."),
    share_layers=True,
)


def load_checkpoint(directory: str, log: Callable[[str], None] = print) -> MaskedLM:
    config = read_config(directory, NAMES.model_type)
    if config.get("num_hidden_groups", 1) != 1 or config.get("inner_group_num", 1) != 1:
        raise CheckpointError("only ALBERT checkpoints with one layer group of one layer are supported")
    return load_encoder_masked_lm(directory, NAMES, "protalbert", log)
