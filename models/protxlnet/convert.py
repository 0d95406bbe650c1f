"""transformers' XLNet weights (``TiedLMHeadModel`` state-dict names) → our XLNet backbone and LM head.

Segment embeddings (``r_s_bias``, ``seg_embed``) are not mapped: our models take one segment, for which
transformers' XLNet adds no segment term either.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from models.layers.tied_lm_head import TiedLMHead
from models.protxlnet.backbone import XLNetBackbone

_ATTENTION = {"q": "query_kernel", "k": "key_kernel", "v": "value_kernel", "o": "output_kernel",
              "r": "position_kernel", "r_w_bias": "content_bias", "r_r_bias": "position_bias"}


def assign_hf_xlnet(state: Mapping[str, np.ndarray], backbone: XLNetBackbone, head: TiedLMHead | None = None,
                    token_rows: np.ndarray | None = None) -> None:
    """Set built `backbone` (and `head`) weights from `state`. `token_rows[i]` is the checkpoint row of our token
    id i (None: the checkpoint uses our ids)."""
    def rows(matrix):
        return matrix if token_rows is None else matrix[token_rows]

    prefix = "transformer."
    backbone.token_embedding.embeddings.assign(rows(state[prefix + "word_embedding.weight"]))
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
        head.bias.assign(rows(state["lm_loss.bias"]))
