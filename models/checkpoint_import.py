"""Import of published Hugging Face ProtBert / ProtAlbert checkpoints into our Keras models.

Reads ``config.json``, ``vocab.txt`` and the weights (``model.safetensors``, or ``pytorch_model.bin`` read
without torch: it is a zip of pickled metadata and raw storages). The published vocabularies order tokens
differently from ours (Rostlab's ProtBert: ``[PAD] [UNK] [CLS] [SEP] [MASK] L A G V E S I K R D T P N Q F Y
M H C W X U B Z O``); :func:`vocabulary_rows` is the explicit mapping: each of our tokens takes the row of
the same token. Their ``U B Z O`` rows are not kept: our tokeniser maps those residues to ``X``.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from typing import Any, Callable, Iterator

import numpy as np

from models import vocabulary
from models.encoder_backbone import EncoderBackbone
from models.masked_lm import MaskedLM

SAFETENSORS = "model.safetensors"
PYTORCH_BIN = "pytorch_model.bin"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be imported, with the reason."""


# ---- reading -------------------------------------------------------------------------------------------------

_TORCH_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "LongStorage": np.int64,
    "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "BFloat16Storage": "bfloat16",
}


class _StorageType:
    def __init__(self, name: str):
        if name not in _TORCH_DTYPES:
            raise CheckpointError(f"unsupported tensor storage torch.{name}")
        self.dtype = _TORCH_DTYPES[name]


def _rebuild_tensor(storage: np.ndarray, offset: int, shape, stride, *_) -> np.ndarray:
    if not shape:
        return storage[offset].copy()
    strides = [step * storage.itemsize for step in stride]
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(shape), strides=strides).copy()


def read_pytorch_bin(path: str) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save`` zip file as numpy arrays, without importing torch."""
    with zipfile.ZipFile(path) as archive:
        pickle_name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
        if pickle_name is None:
            raise CheckpointError(f"{path}: not a torch zip checkpoint (no data.pkl); legacy tar files are not read")
        prefix = pickle_name[: -len("data.pkl")]

        def load_storage(pid) -> np.ndarray:
            _, storage_type, key, _, _ = pid
            raw = archive.read(f"{prefix}data/{key}")
            if storage_type.dtype == "bfloat16":
                return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            return np.frombuffer(raw, storage_type.dtype)

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if module == "torch._utils" and name == "_rebuild_tensor_v2":
                    return _rebuild_tensor
                if module == "torch" and name.endswith("Storage"):
                    return _StorageType(name)
                if module == "collections" and name == "OrderedDict":
                    import collections

                    return collections.OrderedDict
                raise CheckpointError(f"{path}: refusing to unpickle {module}.{name} (only tensors are read)")

            def persistent_load(self, pid):
                return load_storage(pid)

        with archive.open(pickle_name) as handle:
            return dict(Unpickler(handle).load())


def read_weights(directory: str) -> dict[str, np.ndarray]:
    """Weights of a checkpoint folder, from safetensors if present, else pytorch_model.bin."""
    safetensors_path = os.path.join(directory, SAFETENSORS)
    if os.path.exists(safetensors_path):
        from safetensors.numpy import load_file

        return load_file(safetensors_path)
    bin_path = os.path.join(directory, PYTORCH_BIN)
    if os.path.exists(bin_path):
        return read_pytorch_bin(bin_path)
    raise CheckpointError(f"{directory}: neither {SAFETENSORS} nor {PYTORCH_BIN} found")


def read_vocabulary(directory: str) -> list[str]:
    path = os.path.join(directory, "vocab.txt")
    if not os.path.exists(path):
        raise CheckpointError(f"{directory}: no vocab.txt (needed to map the checkpoint's tokens to ours)")
    with open(path) as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def vocabulary_rows(checkpoint_tokens: list[str]) -> np.ndarray:
    """For each of our token ids, the row of the same token in the checkpoint's vocabulary."""
    index = {token: row for row, token in enumerate(checkpoint_tokens)}
    missing = [token for token in vocabulary.TOKENS if token not in index]
    if missing:
        raise CheckpointError(f"the checkpoint's vocabulary lacks {missing}")
    return np.array([index[token] for token in vocabulary.TOKENS])


# ---- mapping -------------------------------------------------------------------------------------------------

def backbone_config(hf_config: dict, family: str) -> dict[str, Any]:
    """Our backbone config from a Hugging Face ``config.json``."""
    expected = {"protbert": "bert", "protalbert": "albert"}[family]
    if hf_config.get("model_type") != expected:
        raise CheckpointError(f"--family {family} expects a {expected!r} checkpoint, not {hf_config.get('model_type')!r}")
    if family == "protalbert" and (hf_config.get("num_hidden_groups", 1) != 1 or hf_config.get("inner_group_num", 1) != 1):
        raise CheckpointError("only ALBERT checkpoints with one layer group of one layer are supported")
    return {
        "num_layers": hf_config["num_hidden_layers"],
        "hidden_dim": hf_config["hidden_size"],
        "num_heads": hf_config["num_attention_heads"],
        "intermediate_dim": hf_config["intermediate_size"],
        "max_sequence_length": hf_config["max_position_embeddings"],
        "embedding_dim": hf_config.get("embedding_size", hf_config["hidden_size"]),
        "share_layers": family == "protalbert",
        "type_vocabulary_size": hf_config.get("type_vocab_size", 2),
        "activation_name": hf_config.get("hidden_act", "gelu"),
        "dropout": hf_config.get("hidden_dropout_prob", 0.0),
        "attention_dropout": hf_config.get("attention_probs_dropout_prob", 0.0),
        "layer_norm_epsilon": hf_config.get("layer_norm_eps", 1e-12),
    }


def _bert_names(layer: int | None) -> dict[str, str]:
    if layer is None:
        return {
            "token": "bert.embeddings.word_embeddings", "position": "bert.embeddings.position_embeddings",
            "segment": "bert.embeddings.token_type_embeddings", "embeddings_norm": "bert.embeddings.LayerNorm",
            "head_transform": "cls.predictions.transform.dense", "head_norm": "cls.predictions.transform.LayerNorm",
            "head_bias": "cls.predictions.bias",
        }
    base = f"bert.encoder.layer.{layer}."
    return {
        "query": base + "attention.self.query", "key": base + "attention.self.key",
        "value": base + "attention.self.value", "attention_output": base + "attention.output.dense",
        "attention_norm": base + "attention.output.LayerNorm", "intermediate": base + "intermediate.dense",
        "output": base + "output.dense", "output_norm": base + "output.LayerNorm",
    }


def _albert_names(layer: int | None) -> dict[str, str]:
    if layer is None:
        return {
            "token": "albert.embeddings.word_embeddings", "position": "albert.embeddings.position_embeddings",
            "segment": "albert.embeddings.token_type_embeddings", "embeddings_norm": "albert.embeddings.LayerNorm",
            "projection": "albert.encoder.embedding_hidden_mapping_in",
            "head_transform": "predictions.dense", "head_norm": "predictions.LayerNorm", "head_bias": "predictions.bias",
        }
    base = "albert.encoder.albert_layer_groups.0.albert_layers.0."
    return {
        "query": base + "attention.query", "key": base + "attention.key", "value": base + "attention.value",
        "attention_output": base + "attention.dense", "attention_norm": base + "attention.LayerNorm",
        "intermediate": base + "ffn", "output": base + "ffn_output", "output_norm": base + "full_layer_layer_norm",
    }


def _assign_layer(layer, names: dict[str, str], take: Callable[[str], np.ndarray], num_heads: int) -> None:
    hidden = layer.hidden_dim
    head_dim = hidden // num_heads
    attention = layer.attention
    for name, dense in (("query", attention.query_dense), ("key", attention.key_dense),
                        ("value", attention.value_dense)):
        dense.kernel.assign(take(names[name] + ".weight").T.reshape(hidden, num_heads, head_dim))
        dense.bias.assign(take(names[name] + ".bias").reshape(num_heads, head_dim))
    attention.output_dense.kernel.assign(take(names["attention_output"] + ".weight").T.reshape(num_heads, head_dim, hidden))
    attention.output_dense.bias.assign(take(names["attention_output"] + ".bias"))
    _assign_norm(layer.attention_norm, names["attention_norm"], take)
    _assign_dense(layer.intermediate, names["intermediate"], take)
    _assign_dense(layer.output_dense, names["output"], take)
    _assign_norm(layer.output_norm, names["output_norm"], take)


def _assign_dense(dense, name: str, take) -> None:
    dense.kernel.assign(take(name + ".weight").T)
    dense.bias.assign(take(name + ".bias"))


def _assign_norm(norm, name: str, take) -> None:
    # Old BERT checkpoints name LayerNorm parameters gamma/beta; newer ones weight/bias.
    norm.gamma.assign(take(name + ".weight", name + ".gamma"))
    norm.beta.assign(take(name + ".bias", name + ".beta"))


def load_masked_lm(directory: str, family: str) -> MaskedLM:
    """A :class:`MaskedLM` with the weights of the Hugging Face checkpoint in `directory`."""
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"{directory}: no config.json")
    with open(config_path) as handle:
        hf_config = json.load(handle)
    config = backbone_config(hf_config, family)
    weights = read_weights(directory)
    rows = vocabulary_rows(read_vocabulary(directory))
    used: set[str] = set()

    def take(*names: str) -> np.ndarray:
        for name in names:
            if name in weights:
                used.add(name)
                return weights[name].astype(np.float32)
        raise CheckpointError(f"{directory}: weight {names[0]!r} not found")

    backbone = EncoderBackbone(**config, name=f"{family}_backbone")
    model = MaskedLM(backbone)
    model.build({"token_ids": (None, None)})
    names = (_bert_names if family == "protbert" else _albert_names)(None)
    backbone.token_embedding.embeddings.assign(take(names["token"] + ".weight")[rows])
    backbone.position_embedding.embeddings.assign(take(names["position"] + ".weight"))
    backbone.segment_embedding.embeddings.assign(take(names["segment"] + ".weight"))
    _assign_norm(backbone.embeddings_norm, names["embeddings_norm"], take)
    if backbone.embedding_projection is not None:
        _assign_dense(backbone.embedding_projection, names["projection"], take)
    for index, layer in enumerate(backbone.encoder_layers):
        layer_names = (_bert_names if family == "protbert" else _albert_names)(index)
        _assign_layer(layer, layer_names, take, config["num_heads"])
    _assign_dense(model.head.transform, names["head_transform"], take)
    _assign_norm(model.head.norm, names["head_norm"], take)
    model.head.bias.assign(take(names["head_bias"])[rows])

    ignorable = ("position_ids", "decoder.weight", "decoder.bias", "pooler.", "seq_relationship", "sop_classifier")
    unused = sorted(name for name in weights if name not in used and not any(part in name for part in ignorable))
    if unused:
        raise CheckpointError(f"{directory}: weights not mapped to the model: {unused[:10]}")
    return model


# ---- XLNet (ProtXLNet): sentencepiece vocabulary ---------------------------------------------------------------
SPIECE = "spiece.model"
# XLNet's special pieces, as ours
_XLNET_SPECIALS = {"<pad>": vocabulary.PAD, "<unk>": vocabulary.UNK, "<cls>": vocabulary.CLS,
                   "<sep>": vocabulary.SEP, "<mask>": vocabulary.MASK}


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _fields(message: bytes) -> Iterator[tuple[int, bytes | None]]:
    """``(field number, bytes)`` of each length-delimited field of a protobuf message (None for the others);
    IndexError if the message is cut short."""
    position = 0
    while position < len(message):
        key, position = _varint(message, position)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, position = _varint(message, position)
            yield field, None
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
            yield field, None
        elif wire == 2:
            size, position = _varint(message, position)
            if position + size > len(message):
                raise IndexError
            yield field, message[position: position + size]
            position += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _piece_text(piece: bytes) -> str:
    """The text (field 1) of a ``SentencePiece`` message."""
    return next((text.decode("utf-8") for number, text in _fields(piece) if number == 1 and text is not None), "")


def read_sentencepiece_pieces(path: str) -> list[str]:
    """The pieces of a sentencepiece ``ModelProto`` file, in id order (read from the protobuf wire format:
    field 1 holds the pieces, each with its text in field 1), without the sentencepiece library."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        pieces = [_piece_text(body) for field, body in _fields(data) if field == 1 and body is not None]
    except IndexError:
        raise CheckpointError(f"{path}: truncated sentencepiece model") from None
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    if not pieces:
        raise CheckpointError(f"{path}: no pieces: not a sentencepiece model")
    return pieces


def sentencepiece_rows(pieces: list[str]) -> np.ndarray:
    """For each of our token ids, the row of its piece: specials by name, a residue by its piece (``▁A``, the
    piece of a space-separated residue, before a bare ``A``)."""
    index: dict[str, int] = {}
    for row, piece in enumerate(pieces):
        if piece in _XLNET_SPECIALS:
            index.setdefault(_XLNET_SPECIALS[piece], row)
    for prefer_word_start in (True, False):
        for row, piece in enumerate(pieces):
            residue = piece[1:] if piece.startswith("\u2581") else piece
            if (piece.startswith("\u2581") == prefer_word_start) and residue in vocabulary.TOKENS[5:]:
                index.setdefault(residue, row)
    missing = [token for token in vocabulary.TOKENS if token not in index]
    if missing:
        raise CheckpointError(f"the sentencepiece vocabulary lacks {missing}")
    return np.array([index[token] for token in vocabulary.TOKENS])


def xlnet_backbone_config(hf_config: dict) -> dict[str, Any]:
    if hf_config.get("model_type") != "xlnet":
        raise CheckpointError(f"--family protxlnet expects an 'xlnet' checkpoint, not {hf_config.get('model_type')!r}")
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


def load_xlnet(directory: str):
    """An :class:`XLNetBackbone` with the weights of the Hugging Face XLNet checkpoint in `directory` (config.json,
    spiece.model, weights); it takes XLNet's own ``residues <sep> <cls>`` layout."""
    from models.layers.tied_lm_head import TiedLMHead
    from models.protxlnet.backbone import XLNetBackbone
    from models.protxlnet.convert import assign_hf_xlnet

    config_path, spiece_path = os.path.join(directory, "config.json"), os.path.join(directory, SPIECE)
    for path in (config_path, spiece_path):
        if not os.path.exists(path):
            raise CheckpointError(f"{directory}: no {os.path.basename(path)}")
    with open(config_path) as handle:
        config = xlnet_backbone_config(json.load(handle))
    rows = sentencepiece_rows(read_sentencepiece_pieces(spiece_path))
    weights = {name: value.astype(np.float32) for name, value in read_weights(directory).items()}
    backbone = XLNetBackbone(**config, name="protxlnet_backbone")
    head = TiedLMHead(backbone)
    backbone.build((None, None))
    head.build((None, None, backbone.hidden_dim))
    try:
        assign_hf_xlnet(weights, backbone, head if "lm_loss.bias" in weights else None, rows)
    except KeyError as error:
        raise CheckpointError(f"{directory}: weight {error.args[0]!r} not found") from None
    return backbone
