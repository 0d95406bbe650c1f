"""Reading Hugging Face checkpoint folders: ``config.json``, the weights and the vocabulary files.

Weights come from ``model.safetensors``, or ``pytorch_model.bin`` read without torch (a zip of pickled metadata
and raw storages). Published vocabularies order tokens differently from ours (Rostlab's ProtBert: ``[PAD] [UNK]
[CLS] [SEP] [MASK] L A G V E S I K R D T P N Q F Y M H C W X U B Z O``), and some lack tokens we have (a protein
BERT with the 20 residues and no ``X``). An import keeps the checkpoint's whole vocabulary — every row of its
embedding table and LM head, in its order — and maps each of our tokens to the row the checkpoint's own tokenizer
would use (:func:`vocabulary_rows`, :func:`sentencepiece_rows`): the row of the same token, or the row of its
unknown token (``[UNK]``, ``<unk>``) for one it lacks, as ``BertTokenizer`` and sentencepiece do. The families'
converters (``models/<family>/convert.py``) map the weights.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from typing import Any, Mapping

import numpy as np
import sentencepiece

from models import vocabulary

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


class _TensorRecord:
    """A tensor as the pickle describes it; made an array only after its bounds are checked, under its name."""

    def __init__(self, storage, offset, shape, stride, *_):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def array(self, name: str) -> np.ndarray:
        storage, offset, shape, stride = self.storage, self.offset, self.shape, self.stride

        def refuse(why: str) -> CheckpointError:
            return CheckpointError(f"tensor {name!r}: {why}; the checkpoint is corrupt or was not written by torch")

        if not isinstance(storage, np.ndarray):
            raise refuse("its storage is not a tensor storage")
        if not (isinstance(shape, tuple) and isinstance(stride, tuple) and len(shape) == len(stride)):
            raise refuse(f"shape {shape!r} and stride {stride!r} do not match")
        values = (offset, *shape, *stride)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise refuse(f"offset {offset!r}, shape {shape!r} and stride {stride!r} must be non-negative integers")
        elements = int(np.prod(shape, dtype=object))
        if elements == 0:
            return np.zeros(shape, storage.dtype)
        last = offset + sum((size - 1) * step for size, step in zip(shape, stride))
        if last >= storage.size or elements > storage.size:
            raise refuse(f"shape {list(shape)} with stride {list(stride)} at offset {offset} reaches past its storage "
                         f"of {storage.size} elements")
        if not shape:
            return storage[offset].copy()
        strides = [step * storage.itemsize for step in stride]
        return np.lib.stride_tricks.as_strided(storage[offset:], shape=shape, strides=strides).copy()


def read_pytorch_bin(path: str) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save`` zip file as numpy arrays, without importing torch. Only tensors, storages
    and ordered dicts are unpickled; every tensor's shape, stride and offset are checked against its storage before
    it is read, and anything else is a CheckpointError naming the file (and the tensor)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickle_name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            if pickle_name is None:
                raise CheckpointError("not a torch zip checkpoint (no data.pkl); legacy tar files are not read")
            prefix = pickle_name[: -len("data.pkl")]

            def load_storage(pid) -> np.ndarray:
                if not (isinstance(pid, tuple) and len(pid) == 5 and isinstance(pid[1], _StorageType)):
                    raise CheckpointError(f"unexpected persistent id {pid!r}")
                _, storage_type, key, _, _ = pid
                raw = archive.read(f"{prefix}data/{key}")
                if storage_type.dtype == "bfloat16":
                    return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
                return np.frombuffer(raw, storage_type.dtype)

            class Unpickler(pickle.Unpickler):
                def find_class(self, module: str, name: str) -> Any:
                    if module == "torch._utils" and name == "_rebuild_tensor_v2":
                        return _TensorRecord
                    if module == "torch" and name.endswith("Storage"):
                        return _StorageType(name)
                    if module == "collections" and name == "OrderedDict":
                        import collections

                        return collections.OrderedDict
                    raise CheckpointError(f"refusing to unpickle {module}.{name} (only tensors are read)")

                def persistent_load(self, pid):
                    return load_storage(pid)

            with archive.open(pickle_name) as handle:
                loaded = Unpickler(handle).load()
        if not isinstance(loaded, dict):
            raise CheckpointError(f"holds a {type(loaded).__name__}, not a dict of tensors")
        records = {name: record for name, record in loaded.items() if isinstance(record, _TensorRecord)}
        if len(records) != len(loaded):
            raise CheckpointError("holds values that are not tensors")
        return {name: record.array(name) for name, record in records.items()}
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError, ValueError, TypeError, AttributeError,
            IndexError) as error:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: {error})") from None


def read_weights(directory: str) -> dict[str, np.ndarray]:
    """Weights of a checkpoint folder, from safetensors if present, else pytorch_model.bin."""
    safetensors_path = os.path.join(directory, SAFETENSORS)
    if os.path.exists(safetensors_path):
        from safetensors.numpy import load_file

        try:
            return load_file(safetensors_path)
        except Exception as error:  # noqa: BLE001 — safetensors' errors (bad header, offsets, dtype) name no file
            raise CheckpointError(f"{safetensors_path}: not a readable safetensors file: {error}") from None
    bin_path = os.path.join(directory, PYTORCH_BIN)
    if os.path.exists(bin_path):
        return read_pytorch_bin(bin_path)
    raise CheckpointError(f"{directory}: neither {SAFETENSORS} nor {PYTORCH_BIN} found")


def read_config(directory: str, model_type: str) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder, checked to be of `model_type` (transformers' name)."""
    path = os.path.join(directory, "config.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{directory}: no config.json")
    try:
        with open(path) as handle:
            config = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, not {type(config).__name__}")
    if config.get("model_type") != model_type:
        raise CheckpointError(f"{directory}: expects a {model_type!r} checkpoint, not {config.get('model_type')!r}")
    return config


def float32_weights(directory: str) -> "WeightReader":
    """The folder's weights as float32 (checkpoints ship float16/bfloat16 too), for one import."""
    return WeightReader(directory, {name: value.astype(np.float32) for name, value in read_weights(directory).items()})


class WeightReader(Mapping[str, np.ndarray]):
    """Weights by name that remembers which were read, so an import can refuse a checkpoint with weights it did
    not map (a different architecture under the same model type). A missing weight is a CheckpointError."""

    def __init__(self, directory: str, weights: Mapping[str, np.ndarray]):
        self.directory, self.weights, self.used = directory, weights, set()

    def __getitem__(self, name: str) -> np.ndarray:
        return self.take(name)

    def __contains__(self, name: object) -> bool:
        return name in self.weights

    def __iter__(self):
        return iter(self.weights)

    def __len__(self) -> int:
        return len(self.weights)

    def take(self, *names: str) -> np.ndarray:
        """The first of `names` present (old and new spellings of one weight); one holding NaN or infinite values is
        a CheckpointError naming it."""
        for name in names:
            if name in self.weights:
                self.used.add(name)
                value = self.weights[name]
                if not np.isfinite(value).all():
                    raise CheckpointError(f"{self.directory}: weight {name!r} holds NaN or infinite values: the "
                                          "checkpoint is damaged or its model diverged")
                return value
        raise CheckpointError(f"{self.directory}: weight {names[0]!r} not found")

    def check_all_used(self, ignorable: tuple[str, ...] = (), own_prefixes: tuple[str, ...] = ()) -> list[str]:
        """Refuse the checkpoint if a weight of the family's own model (a name starting with one of
        `own_prefixes`, or any name when none are given) was not mapped; return the unmapped weights outside it —
        heads a publisher added beside the family's own (a classifier on the pooled output) — which the import
        skips. Names containing one of `ignorable` (buffers, tied copies) are neither."""
        unused = sorted(name for name in self.weights
                        if name not in self.used and not any(part in name for part in ignorable))
        own = [name for name in unused if not own_prefixes or name.startswith(own_prefixes)]
        if own:
            raise CheckpointError(f"{self.directory}: weights not mapped to the model: {own[:10]}")
        return unused


def skipped_heads_note(skipped: list[str]) -> str:
    """The one line an import prints about the weights it skipped (:meth:`WeightReader.check_all_used`)."""
    shown = ", ".join(skipped[:8]) + (f" and {len(skipped) - 8} more" if len(skipped) > 8 else "")
    return f"skipped {len(skipped)} weight(s) of heads beside the family's own: {shown}"


def read_vocabulary(directory: str) -> list[str]:
    path = os.path.join(directory, "vocab.txt")
    if not os.path.exists(path):
        raise CheckpointError(f"{directory}: no vocab.txt (needed to map the checkpoint's tokens to ours)")
    with open(path) as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def vocabulary_rows(checkpoint_tokens: list[str], aliases: Mapping[str, str] | None = None) -> np.ndarray:
    """For each of our token ids, the row of the same token in the checkpoint's vocabulary, or of its unknown
    token where it has none (`aliases` maps the checkpoint's names of special tokens to ours, e.g. ``<pad>`` →
    ``[PAD]``)."""
    index: dict[str, int] = {}
    for row, token in enumerate(checkpoint_tokens):
        index.setdefault((aliases or {}).get(token, token), row)
    return rows_or_unknown(index, "the checkpoint's vocabulary")


def rows_or_unknown(index: Mapping[str, int], what: str) -> np.ndarray:
    """Our tokens' rows from `index` (our token → the checkpoint's row), the unknown token's for those it lacks;
    a CheckpointError naming them when it has no unknown token either."""
    missing = [token for token in vocabulary.TOKENS if token not in index]
    if missing and vocabulary.UNK not in index:
        raise CheckpointError(f"{what} lacks {missing} and has no unknown token to stand for them")
    return np.array([index.get(token, index.get(vocabulary.UNK)) for token in vocabulary.TOKENS])


def imported_vocabulary(token_rows: np.ndarray, table_rows: int) -> dict[str, Any]:
    """The backbone config of an imported vocabulary: the checkpoint's table size and our tokens' rows in it
    (nothing when the checkpoint's vocabulary is ours, token for token)."""
    rows = [int(row) for row in token_rows]
    if table_rows == vocabulary.VOCABULARY_SIZE and rows == list(range(vocabulary.VOCABULARY_SIZE)):
        return {}
    return {"vocabulary_size": int(table_rows), "token_rows": rows}


SPIECE = "spiece.model"
# The special pieces of sentencepiece vocabularies (XLNet's), as ours
SENTENCEPIECE_SPECIALS = {"<pad>": vocabulary.PAD, "<unk>": vocabulary.UNK, "<cls>": vocabulary.CLS,
                          "<sep>": vocabulary.SEP, "<mask>": vocabulary.MASK}


def read_sentencepiece_pieces(path: str) -> list[str]:
    """The pieces of a sentencepiece model file, in id order."""
    try:
        processor = sentencepiece.SentencePieceProcessor(model_file=path)
    except (RuntimeError, OSError) as error:
        raise CheckpointError(f"{path}: truncated or not a sentencepiece model ({error})") from None
    return [processor.id_to_piece(row) for row in range(processor.get_piece_size())]


def sentencepiece_rows(pieces: list[str]) -> np.ndarray:
    """For each of our token ids, the row of its piece: specials by name, a residue by its piece (``▁A``, the
    piece of a space-separated residue, before a bare ``A``); ``<unk>``'s row for a token without a piece."""
    index: dict[str, int] = {}
    for row, piece in enumerate(pieces):
        if piece in SENTENCEPIECE_SPECIALS:
            index.setdefault(SENTENCEPIECE_SPECIALS[piece], row)
    for prefer_word_start in (True, False):
        for row, piece in enumerate(pieces):
            residue = piece[1:] if piece.startswith("\u2581") else piece
            if (piece.startswith("\u2581") == prefer_word_start) and residue in vocabulary.TOKENS[5:]:
                index.setdefault(residue, row)
    return rows_or_unknown(index, "the sentencepiece vocabulary")
