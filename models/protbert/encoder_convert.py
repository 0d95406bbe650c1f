"""Hugging Face BERT-style weights → our :class:`EncoderBackbone` and masked-LM head (ProtBert, ProtAlbert).

The families differ only in the weights' names and in how the config reads (:class:`EncoderCheckpointNames`);
the mapping — query/key/value/output per head, post-LN layers, the tied head — is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from models.hf_checkpoint import (WeightReader, float32_weights, imported_vocabulary, read_config, read_vocabulary,
                                  skipped_heads_note, vocabulary_rows)
from models.networks.encoder_backbone import EncoderBackbone
from models.objectives.masked_lm import MaskedLM

CHECKPOINT_FILES = ("config.json", "vocab.txt", "model.safetensors or pytorch_model.bin")
# Weights a masked-LM import does not need: buffers, the untied decoder copy.
IGNORABLE = ("position_ids", "decoder.weight", "decoder.bias")


@dataclass(frozen=True)
class EncoderCheckpointNames:
    """Where a family's weights live: `embeddings` (token, position, segment, embeddings_norm, projection,
    head_transform, head_norm, head_bias) and `layer(index)` (query, key, value, attention_output,
    attention_norm, intermediate, output, output_norm)."""

    model_type: str
    embeddings: dict[str, str]
    layer: Callable[[int], dict[str, str]]
    own_prefixes: tuple[str, ...]  # the backbone's and the masked-LM head's weights (others are extra heads)
    share_layers: bool = False


def backbone_config(hf_config: dict[str, Any], share_layers: bool) -> dict[str, Any]:
    """Our backbone config from a Hugging Face BERT/ALBERT ``config.json``."""
    return {
        "num_layers": hf_config["num_hidden_layers"],
        "hidden_dim": hf_config["hidden_size"],
        "num_heads": hf_config["num_attention_heads"],
        "intermediate_dim": hf_config["intermediate_size"],
        "max_sequence_length": hf_config["max_position_embeddings"],
        "embedding_dim": hf_config.get("embedding_size", hf_config["hidden_size"]),
        "share_layers": share_layers,
        "type_vocabulary_size": hf_config.get("type_vocab_size", 2),
        "activation_name": hf_config.get("hidden_act", "gelu"),
        "dropout": hf_config.get("hidden_dropout_prob", 0.0),
        "attention_dropout": hf_config.get("attention_probs_dropout_prob", 0.0),
        "layer_norm_epsilon": hf_config.get("layer_norm_eps", 1e-12),
    }


def load_encoder_masked_lm(directory: str, names: EncoderCheckpointNames, family: str,
                           log: Callable[[str], None] = print) -> MaskedLM:
    """A :class:`MaskedLM` with the weights of the Hugging Face checkpoint in `directory` (config.json,
    vocab.txt, weights), its whole vocabulary kept; heads beside the masked-LM head are skipped, named on `log`."""
    config = backbone_config(read_config(directory, names.model_type), names.share_layers)
    weights = float32_weights(directory)
    table = weights.take(names.embeddings["token"] + ".weight")
    config.update(imported_vocabulary(vocabulary_rows(read_vocabulary(directory)), table.shape[0]))
    backbone = EncoderBackbone(**config, name=f"{family}_backbone")
    model = MaskedLM(backbone)
    model.build({"token_ids": (None, None)})
    embeddings = names.embeddings
    backbone.token_embedding.embeddings.assign(table)
    backbone.position_embedding.embeddings.assign(weights.take(embeddings["position"] + ".weight"))
    backbone.segment_embedding.embeddings.assign(weights.take(embeddings["segment"] + ".weight"))
    _assign_norm(backbone.embeddings_norm, embeddings["embeddings_norm"], weights)
    if backbone.embedding_projection is not None:
        _assign_dense(backbone.embedding_projection, embeddings["projection"], weights)
    for index, layer in enumerate(backbone.encoder_layers):
        _assign_layer(layer, names.layer(index), weights, config["num_heads"])
    _assign_dense(model.head.transform, embeddings["head_transform"], weights)
    _assign_norm(model.head.norm, embeddings["head_norm"], weights)
    model.head.bias.assign(weights.take(embeddings["head_bias"]))
    skipped = weights.check_all_used(IGNORABLE, names.own_prefixes)
    if skipped:
        log(skipped_heads_note(skipped))
    return model


def _assign_layer(layer, names: dict[str, str], weights: WeightReader, num_heads: int) -> None:
    hidden = layer.hidden_dim
    head_dim = hidden // num_heads
    attention = layer.attention
    for name, dense in (("query", attention.query_dense), ("key", attention.key_dense),
                        ("value", attention.value_dense)):
        dense.kernel.assign(weights.take(names[name] + ".weight").T.reshape(hidden, num_heads, head_dim))
        dense.bias.assign(weights.take(names[name] + ".bias").reshape(num_heads, head_dim))
    attention.output_dense.kernel.assign(
        weights.take(names["attention_output"] + ".weight").T.reshape(num_heads, head_dim, hidden))
    attention.output_dense.bias.assign(weights.take(names["attention_output"] + ".bias"))
    _assign_norm(layer.attention_norm, names["attention_norm"], weights)
    _assign_dense(layer.intermediate, names["intermediate"], weights)
    _assign_dense(layer.output_dense, names["output"], weights)
    _assign_norm(layer.output_norm, names["output_norm"], weights)


def _assign_dense(dense, name: str, weights: WeightReader) -> None:
    dense.kernel.assign(weights.take(name + ".weight").T)
    dense.bias.assign(weights.take(name + ".bias"))


def _assign_norm(norm, name: str, weights: WeightReader) -> None:
    # Old BERT checkpoints name LayerNorm parameters gamma/beta; newer ones weight/bias.
    norm.gamma.assign(weights.take(name + ".weight", name + ".gamma"))
    norm.beta.assign(weights.take(name + ".bias", name + ".beta"))
