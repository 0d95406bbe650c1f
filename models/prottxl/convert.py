"""transformers' Transformer-XL weights (``TransfoXLLMHeadModel`` state-dict names, plain softmax: no adaptive
cutoffs, embedding and output tied) → our Transformer-XL backbone and LM head.

A checkpoint folder holds config.json (``model_type`` ``transfo-xl``), the weights and optionally ``vocab.txt``
(one token a line, the first word of each line: the format of transformers' ``TransfoXLTokenizer`` vocab
file; ``<pad> <unk> <cls> <sep> <mask>`` name the specials). Without it the checkpoint must use our token ids
(``vocab_size`` 26: ``[PAD] [UNK] [CLS] [SEP] [MASK]`` then the 20 residues and X), as ProtTXL's training here
writes them.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np

from models import vocabulary
from models.hf_checkpoint import (SENTENCEPIECE_SPECIALS, CheckpointError, float32_weights, imported_vocabulary,
                                  read_config, skipped_heads_note, vocabulary_rows)
from models.layers.tied_lm_head import TiedLMHead
from models.prottxl.backbone import TransformerXLBackbone
from models.objectives.causal_lm import CausalLM

VOCABULARY_FILE = "vocab.txt"
# The untied copy of the embedding in the output layer, and buffers.
IGNORABLE = ("crit.out_layers.0.weight", "crit.out_projs", "pos_emb.inv_freq")
OWN_PREFIXES = ("transformer.", "crit.")


def assign_hf_transfo_xl(state: Mapping[str, np.ndarray], backbone: TransformerXLBackbone,
                         head: TiedLMHead | None = None) -> None:
    """Set built `backbone` (and `head`) weights from `state` (the embedding and output bias whole, in the
    checkpoint's token order)."""
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


def backbone_config(hf_config: dict[str, Any]) -> dict[str, Any]:
    """Our backbone config from transformers' Transformer-XL ``config.json`` (plain softmax, post-LN, one set of
    position biases per layer: ProtTXL's layout)."""
    for key, supported in (("cutoffs", []), ("div_val", 1), ("pre_lnorm", False), ("untie_r", True),
                           ("same_length", False), ("attn_type", 0)):
        if hf_config.get(key, supported) != supported:
            raise CheckpointError(f"only Transformer-XL checkpoints with {key}={supported!r} are supported, not "
                                  f"{hf_config[key]!r}")
    if hf_config.get("d_embed", hf_config["d_model"]) != hf_config["d_model"]:
        raise CheckpointError("only Transformer-XL checkpoints with d_embed = d_model are supported")
    return {
        "num_layers": hf_config["n_layer"], "hidden_dim": hf_config["d_model"], "num_heads": hf_config["n_head"],
        "head_dim": hf_config["d_head"], "intermediate_dim": hf_config["d_inner"],
        "memory_length": hf_config.get("mem_len") or 0, "max_sequence_length": 40000,
        "dropout": hf_config.get("dropout", 0.0), "attention_dropout": hf_config.get("dropatt", 0.0),
        "layer_norm_epsilon": hf_config.get("layer_norm_epsilon", 1e-5), "clamp_length": hf_config.get("clamp_len", -1),
    }


def _vocabulary(directory: str, vocabulary_size: int) -> dict[str, Any]:
    """The backbone config of the checkpoint's vocabulary (from its vocab.txt; without one, it must be ours)."""
    path = os.path.join(directory, VOCABULARY_FILE)
    if os.path.exists(path):
        with open(path) as handle:
            tokens = [line.split()[0] for line in handle if line.strip()]
        return imported_vocabulary(vocabulary_rows(tokens, aliases=SENTENCEPIECE_SPECIALS), vocabulary_size)
    if vocabulary_size != vocabulary.VOCABULARY_SIZE:
        raise CheckpointError(f"{directory}: no {VOCABULARY_FILE}, and its vocab_size {vocabulary_size} is not ours "
                              f"({vocabulary.VOCABULARY_SIZE}): add the checkpoint's {VOCABULARY_FILE}")
    return {}


def load_checkpoint(directory: str, log: Callable[[str], None] = print) -> CausalLM:
    """The causal-LM model with the weights of a Hugging Face Transformer-XL folder, its whole vocabulary kept;
    heads beside the LM head are skipped, named on `log`."""
    hf_config = read_config(directory, "transfo-xl")
    config = backbone_config(hf_config)
    if not config["memory_length"]:
        raise CheckpointError(f"{directory}: mem_len is 0; ProtTXL reads with a memory")
    config.update(_vocabulary(directory, hf_config["vocab_size"]))
    weights = float32_weights(directory)
    model = CausalLM(TransformerXLBackbone(**config, name="prottxl_backbone"))
    model.build({"token_ids": (None, None)})
    assign_hf_transfo_xl(weights, model.backbone, model.head)
    skipped = weights.check_all_used(IGNORABLE, OWN_PREFIXES)
    if skipped:
        log(skipped_heads_note(skipped))
    return model
