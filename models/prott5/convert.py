"""transformers' T5 weights (``T5ForConditionalGeneration`` or ``T5EncoderModel`` state-dict names) → our encoder
backbone and, where the checkpoint has one, the decoder and LM head.

Published ProtT5 folders hold ``config.json``, ``spiece.model`` (``<pad> </s> <unk>``, the residues as ``▁A`` …
pieces; the 100 ``<extra_id_N>`` tokens follow the pieces, ``<extra_id_0>`` last) and the weights in float32,
float16 or bfloat16. Our ``[SEP]`` takes ``</s>``'s row, ``[MASK]`` ``<extra_id_0>``'s and ``[CLS]`` (which T5
inputs never hold) ``<unk>``'s.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np

from models import vocabulary
from models.hf_checkpoint import (SPIECE, CheckpointError, float32_weights, imported_vocabulary, read_config,
                                  read_sentencepiece_pieces, rows_or_unknown, skipped_heads_note)
from models.prott5.backbone import T5EncoderBackbone, T5Stack
from models.objectives.denoising import T5Denoising

EXTRA_IDS = 100
_PIECES = {"<pad>": vocabulary.PAD, "</s>": vocabulary.SEP, "<unk>": vocabulary.UNK}
# Stored copies of the shared embedding (tied), read from `shared.weight` instead.
IGNORABLE = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
OWN_PREFIXES = ("shared.", "encoder.", "decoder.", "lm_head.")


def token_rows(pieces: list[str], vocabulary_size: int) -> np.ndarray:
    """For each of our token ids, the row of the checkpoint's embedding that holds the same token: ``[MASK]`` is
    T5's first sentinel (``<extra_id_0>``, the last row of the sentencepiece vocabulary plus its extra ids) and
    ``[CLS]``, which T5 does not use, is ``<unk>``; a residue without a piece is ``<unk>``, as sentencepiece
    tokenizes it."""
    index = {_PIECES[piece]: row for row, piece in reversed(list(enumerate(pieces))) if piece in _PIECES}
    for row, piece in enumerate(pieces):
        residue = piece[1:] if piece.startswith("\u2581") else piece
        if residue in vocabulary.TOKENS[vocabulary.FIRST_RESIDUE_ID:]:
            index.setdefault(residue, row)
    extra_0 = len(pieces) + EXTRA_IDS - 1
    index[vocabulary.MASK] = extra_0 if extra_0 < vocabulary_size else index.get(vocabulary.UNK, 0)
    index.setdefault(vocabulary.CLS, index.get(vocabulary.UNK, 0))
    return rows_or_unknown(index, "the sentencepiece vocabulary")


def backbone_config(hf_config: dict[str, Any]) -> dict[str, Any]:
    """Our encoder config from transformers' T5 ``config.json``."""
    projection = hf_config.get("feed_forward_proj", "relu")
    if projection not in ("relu", "gated-gelu"):
        raise CheckpointError(f"feed_forward_proj {projection!r} is not supported (relu or gated-gelu)")
    return {
        "num_layers": hf_config["num_layers"], "hidden_dim": hf_config["d_model"],
        "num_heads": hf_config["num_heads"], "head_dim": hf_config["d_kv"], "intermediate_dim": hf_config["d_ff"],
        "feed_forward": projection, "dropout": hf_config.get("dropout_rate", 0.1),
        "layer_norm_epsilon": hf_config.get("layer_norm_epsilon", 1e-6),
        "num_buckets": hf_config.get("relative_attention_num_buckets", 32),
        "max_distance": hf_config.get("relative_attention_max_distance", 128),
    }


def _assign_stack(weights: Mapping[str, np.ndarray], stack: T5Stack, prefix: str) -> None:
    def dense(layer, name):
        layer.kernel.assign(np.transpose(weights[name]))

    stack.position_bias.table.assign(weights[f"{prefix}block.0.layer.0.SelfAttention.relative_attention_bias.weight"])
    for index in range(stack.num_layers):
        block = f"{prefix}block.{index}.layer."
        attention_layers = [(stack.self_attention[index], stack.self_norms[index], "0.SelfAttention", "0")]
        if stack.decoder:
            attention_layers.append((stack.cross_attention[index], stack.cross_norms[index], "1.EncDecAttention",
                                     "1"))
        for attention, norm, name, number in attention_layers:
            for theirs, ours in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "output_dense")):
                dense(getattr(attention, ours), f"{block}{name}.{theirs}.weight")
            norm.scale.assign(weights[f"{block}{number}.layer_norm.weight"])
        number = "2" if stack.decoder else "1"
        feed_forward = stack.feed_forwards[index]
        if feed_forward.gate is None:
            dense(feed_forward.inner, f"{block}{number}.DenseReluDense.wi.weight")
        else:
            dense(feed_forward.inner, f"{block}{number}.DenseReluDense.wi_0.weight")
            dense(feed_forward.gate, f"{block}{number}.DenseReluDense.wi_1.weight")
        dense(feed_forward.outer, f"{block}{number}.DenseReluDense.wo.weight")
        stack.feed_forward_norms[index].scale.assign(weights[f"{block}{number}.layer_norm.weight"])
    stack.final_norm.scale.assign(weights[f"{prefix}final_layer_norm.weight"])


def load_checkpoint(directory: str, log: Callable[[str], None] = print) -> T5Denoising:
    """The denoising model with the weights of a Hugging Face T5 folder (config.json, spiece.model, weights), its
    whole vocabulary kept: the encoder always; the decoder and LM head when the checkpoint is a
    ``T5ForConditionalGeneration`` (for a ``T5EncoderModel``, such as ``prot_t5_xl_half_uniref50-enc``, they keep
    their initial values and only the backbone is meant to be used). Heads beside T5's own are skipped, named on
    `log`."""
    hf_config = read_config(directory, "t5")
    spiece_path = os.path.join(directory, SPIECE)
    if not os.path.exists(spiece_path):
        raise CheckpointError(f"{directory}: no {SPIECE}")
    weights = float32_weights(directory)
    shared = "shared.weight" if "shared.weight" in weights else "encoder.embed_tokens.weight"
    table = weights[shared]
    rows = token_rows(read_sentencepiece_pieces(spiece_path), table.shape[0])
    tied = hf_config.get("tie_word_embeddings", True)
    has_decoder = any(name.startswith("decoder.") for name in weights)
    config = {**backbone_config(hf_config), **imported_vocabulary(rows, table.shape[0])}
    model = T5Denoising(T5EncoderBackbone(**config, name="prott5_backbone"),
                        num_decoder_layers=hf_config.get("num_decoder_layers") or hf_config["num_layers"],
                        tie_word_embeddings=tied, has_decoder=has_decoder)
    model.build({"token_ids": (None, None)})
    model.backbone.token_embedding.embeddings.assign(table)
    _assign_stack(weights, model.backbone.encoder, "encoder.")
    if has_decoder:
        _assign_stack(weights, model.decoder, "decoder.")
        if not tied:
            model.lm_head.kernel.assign(np.transpose(weights["lm_head.weight"]))
    else:
        log("an encoder-only checkpoint: it embeds; without a decoder it serves no masked or wild-type marginals")
    skipped = weights.check_all_used(IGNORABLE + (("lm_head.weight",) if tied else ()), OWN_PREFIXES)
    if skipped:
        log(skipped_heads_note(skipped))
    return model
