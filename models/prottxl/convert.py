"""transformers' Transformer-XL weights (``TransfoXLLMHeadModel`` state-dict names, plain softmax: no adaptive
cutoffs, embedding and output tied) → our Transformer-XL backbone and LM head."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from models.layers.tied_lm_head import TiedLMHead
from models.prottxl.backbone import TransformerXLBackbone


def assign_hf_transfo_xl(state: Mapping[str, np.ndarray], backbone: TransformerXLBackbone,
                         head: TiedLMHead | None = None) -> None:
    if any(key.startswith("transformer.word_emb.emb_layers.1") for key in state):
        raise ValueError("an adaptive-embedding Transformer-XL (cutoffs) is not supported: ProtTXL uses a plain softmax")
    n, d, h = backbone.num_heads, backbone.head_dim, backbone.hidden_dim
    backbone.token_embedding.embeddings.assign(state["transformer.word_emb.emb_layers.0.weight"])
    for index, (attention, feed_forward) in enumerate(zip(backbone.attention_layers, backbone.feed_forward_layers)):
        layer = f"transformer.layers.{index}."
        qkv = np.transpose(state[layer + "dec_attn.qkv_net.weight"]).reshape(h, 3, n, d)
        attention.query_kernel.assign(qkv[:, 0])
        attention.key_kernel.assign(qkv[:, 1])
        attention.value_kernel.assign(qkv[:, 2])
        attention.position_kernel.assign(np.transpose(state[layer + "dec_attn.r_net.weight"]).reshape(h, n, d))
        attention.output_kernel.assign(state[layer + "dec_attn.o_net.weight"].reshape(h, n, d))
        attention.content_bias.assign(state[layer + "dec_attn.r_w_bias"])
        attention.position_bias.assign(state[layer + "dec_attn.r_r_bias"])
        attention.layer_norm.gamma.assign(state[layer + "dec_attn.layer_norm.weight"])
        attention.layer_norm.beta.assign(state[layer + "dec_attn.layer_norm.bias"])
        for ours, theirs in (("layer_1", "CoreNet.0"), ("layer_2", "CoreNet.3")):
            dense = getattr(feed_forward, ours)
            dense.kernel.assign(np.transpose(state[f"{layer}pos_ff.{theirs}.weight"]))
            dense.bias.assign(state[f"{layer}pos_ff.{theirs}.bias"])
        feed_forward.layer_norm.gamma.assign(state[layer + "pos_ff.layer_norm.weight"])
        feed_forward.layer_norm.beta.assign(state[layer + "pos_ff.layer_norm.bias"])
    if head is not None:
        head.bias.assign(state["crit.out_layers.0.bias"])
