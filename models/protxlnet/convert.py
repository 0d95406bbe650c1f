"""transformers' XLNet weights (``TiedLMHeadModel`` state-dict names) → our XLNet backbone and LM head.

Segment embeddings (``r_s_bias``, ``seg_embed``) are not mapped: our models take one segment, for which
transformers' XLNet adds no segment term either.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np

from models.hf_checkpoint import (SPIECE, CheckpointError, float32_weights, imported_vocabulary, read_config,
                                  read_sentencepiece_pieces, sentencepiece_rows, skipped_heads_note)
from models.layers.tied_lm_head import TiedLMHead
from models.protxlnet.backbone import XLNetBackbone
from models.objectives.permutation_lm import PermutationLM

# Weights the import does not map: one-segment inputs need no segment terms (see above).
IGNORABLE = ("r_s_bias", "seg_embed", "lm_loss.weight")
OWN_PREFIXES = ("transformer.", "lm_loss.")
_ATTENTION = {"q": "query_kernel", "k": "key_kernel", "v": "value_kernel", "o": "output_kernel",
              "r": "position_kernel", "r_w_bias": "content_bias", "r_r_bias": "position_bias"}


def assign_hf_xlnet(state: Mapping[str, np.ndarray], backbone: XLNetBackbone, head: TiedLMHead | None = None) -> None:
    """Set built `backbone` (and `head`) weights from `state` (the embedding and output bias whole, in the
    checkpoint's token order)."""
    prefix = "transformer."
    backbone.token_embedding.embeddings.assign(state[prefix + "word_embedding.weight"])
    backbone.mask_embedding.assign(np.reshape(state[prefix + "mask_emb"], [-1]))
    for index, (attention, feed_forward) in enumerate(zip(backbone.attention_layers, backbone.feed_forward_layers)):
        layer = f"{prefix}layer.{index}."
        for theirs, ours in _ATTENTION.items():
            getattr(attention, ours).assign(state[f"{layer}rel_attn.{theirs}"])
        attention.layer_norm.gamma.assign(state[f"{layer}rel_attn.layer_norm.weight"])
        attention.layer_norm.beta.assign(state[f"{layer}rel_attn.layer_norm.bias"])
        for name in ("layer_1", "layer_2"):
            dense = getattr(feed_forward, name)
            dense.kernel.assign(np.transpose(state[f"{layer}ff.{name}.weight"]))
            dense.bias.assign(state[f"{layer}ff.{name}.bias"])
        feed_forward.layer_norm.gamma.assign(state[f"{layer}ff.layer_norm.weight"])
        feed_forward.layer_norm.beta.assign(state[f"{layer}ff.layer_norm.bias"])
    if head is not None:
        head.bias.assign(state["lm_loss.bias"])


def backbone_config(hf_config: dict[str, Any]) -> dict[str, Any]:
    """Our backbone config from transformers' XLNet ``config.json`` (bidirectional attention, GELU, one data
    direction: ProtXLNet's)."""
    for key, supported in (("attn_type", "bi"), ("bi_data", False), ("ff_activation", "gelu")):
        if hf_config.get(key, supported) != supported:
            raise CheckpointError(f"only XLNet checkpoints with {key}={supported!r} are supported, not "
                                  f"{hf_config[key]!r}")
    return {
        "num_layers": hf_config["n_layer"], "hidden_dim": hf_config["d_model"], "num_heads": hf_config["n_head"],
        "intermediate_dim": hf_config["d_inner"], "memory_length": hf_config.get("mem_len") or 0,
        "max_sequence_length": 40000, "dropout": hf_config.get("dropout", 0.0),
        "layer_norm_epsilon": hf_config.get("layer_norm_eps", 1e-12), "clamp_length": hf_config.get("clamp_len", -1),
        "specials_at_end": True,
    }


def load_checkpoint(directory: str, log: Callable[[str], None] = print) -> PermutationLM:
    """The permutation-LM model with the weights of a Hugging Face XLNet folder (config.json, spiece.model,
    weights), as Rostlab ships ProtXLNet, its whole vocabulary kept; its backbone takes XLNet's own
    ``residues <sep> <cls>`` layout. Heads beside the LM head are skipped, named on `log`."""
    config = backbone_config(read_config(directory, "xlnet"))
    spiece_path = os.path.join(directory, SPIECE)
    if not os.path.exists(spiece_path):
        raise CheckpointError(f"{directory}: no {SPIECE}")
    weights = float32_weights(directory)
    table = weights["transformer.word_embedding.weight"]
    config.update(imported_vocabulary(sentencepiece_rows(read_sentencepiece_pieces(spiece_path)), table.shape[0]))
    model = PermutationLM(XLNetBackbone(**config, name="protxlnet_backbone"))
    model.build({"token_ids": (None, None)})
    assign_hf_xlnet(weights, model.backbone, model.head if "lm_loss.bias" in weights else None)
    skipped = weights.check_all_used(IGNORABLE, OWN_PREFIXES)
    if skipped:
        log(skipped_heads_note(skipped))
    return model
