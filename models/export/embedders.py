"""The :class:`Embedder` protocol — sequences in, per-residue and per-protein embeddings out — and the embedders
the probes and the embed command use: an in-process backbone (a training directory), a SavedModel with the
serving signature, and the one-hot baseline (whose per-protein mean is the amino-acid composition). The gRPC
client (`serving.client.EmbeddingClient`) satisfies the same protocol."""

from __future__ import annotations

import os
from typing import Protocol, Sequence

import numpy as np
import tensorflow as tf

from beam_jobs.sequences import RESIDUES
from models.export import embedding
from models.export.embedding import ProteinEmbedding
from models.export.signatures import SIGNATURE, check_serving_signature, read_model_info, saved_model_digest
from models.training.checkpoints import load_trained_backbone

ONEHOT = "onehot"
_ONEHOT_INDEX = np.full(256, len(RESIDUES) - 1, dtype=np.int64)  # anything else → X
for _i, _r in enumerate(RESIDUES):
    _ONEHOT_INDEX[ord(_r)] = _ONEHOT_INDEX[ord(_r.lower())] = _i


class Embedder(Protocol):
    name: str
    identity: str  # changes whenever the embeddings would: the cache key's model part

    def embed(self, sequences: Sequence[str]) -> list[ProteinEmbedding]: ...


class OneHotEmbedder:
    """Residues as one-hot vectors over the 20 residues and X; the protein vector is the composition."""

    name = ONEHOT
    identity = ONEHOT

    def embed(self, sequences: Sequence[str]) -> list[ProteinEmbedding]:
        results = []
        for sequence in sequences:
            codes = _ONEHOT_INDEX[np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)]
            residues = np.eye(len(RESIDUES), dtype=np.float32)[codes]
            results.append(ProteinEmbedding(residues, residues.mean(axis=0) if len(sequence) else
                                            np.zeros(len(RESIDUES), np.float32)))
        return results


class BackboneEmbedder:
    """An in-process backbone (from a training directory, or built in tests)."""

    def __init__(self, backbone, name: str, identity: str, max_tokens_per_batch: int = 16384):
        self.backbone = backbone
        self.name = name
        self.identity = identity
        self.max_tokens_per_batch = max_tokens_per_batch

    def embed(self, sequences: Sequence[str]) -> list[ProteinEmbedding]:
        return embedding.embed(self.backbone, sequences, self.max_tokens_per_batch)


class SavedModelEmbedder:
    """A SavedModel with the ``serving_default`` signature (docs/contracts.md)."""

    def __init__(self, path: str, max_tokens_per_batch: int = 16384, max_residues: int | None = None):
        self.name = path
        self.identity = f"savedmodel:{saved_model_digest(path)}"
        check_serving_signature(path)
        self._signature = tf.saved_model.load(path).signatures[SIGNATURE]
        self.max_tokens_per_batch = max_tokens_per_batch
        # A model this project did not write may carry no model info: its limit is then the caller's, or none.
        info = read_model_info(path)
        self.max_residues = max_residues or (info["max_residues"] if info else None)

    def embed(self, sequences: Sequence[str]) -> list[ProteinEmbedding]:
        return embedding.embed_with_limit(lambda batch: self._signature(sequences=batch), sequences,
                                          self.max_residues, self.max_tokens_per_batch)


def _latest_version(model_folder: str) -> str | None:
    versions = [name for name in os.listdir(model_folder) if name.isdigit()]
    return os.path.join(model_folder, max(versions, key=int)) if versions else None


def saved_model_path(spec: str) -> str:
    """`spec` itself when it holds a SavedModel, else the latest version of the TF Serving model folder it is;
    ValueError naming it otherwise."""
    if os.path.exists(os.path.join(spec, "saved_model.pb")):
        return spec
    version = _latest_version(spec) if os.path.isdir(spec) else None
    if version and os.path.exists(os.path.join(version, "saved_model.pb")):
        return version
    raise ValueError(f"{spec}: neither a SavedModel nor a model folder of numbered SavedModel versions")


def load_embedder(spec: str, max_residues: int | None = None) -> Embedder:
    """``onehot``; a SavedModel directory; a TF Serving model folder (its latest version); or a
    ``prottrans-train --model-dir``. `max_residues`: a SavedModel's limit where it does not carry one."""
    if spec == ONEHOT:
        return OneHotEmbedder()
    if not os.path.isdir(spec):
        raise ValueError(f"--model {spec!r}: neither 'onehot' nor a directory")
    if os.path.exists(os.path.join(spec, "saved_model.pb")):
        return SavedModelEmbedder(spec, max_residues=max_residues)
    version = _latest_version(spec)
    if version and os.path.exists(os.path.join(version, "saved_model.pb")):
        return SavedModelEmbedder(version, max_residues=max_residues)
    try:
        backbone, checkpoint = load_trained_backbone(spec)
        return BackboneEmbedder(backbone, name=spec, identity=f"checkpoint:{os.path.abspath(checkpoint)}")
    except FileNotFoundError as error:
        raise ValueError(f"--model {spec!r}: not a SavedModel, a model folder with versions, or a training "
                         f"directory ({error})") from None
