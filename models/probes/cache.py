"""An on-disk embedding cache (HDF5), so probes re-train without re-embedding and memory stays bounded.

Entries are keyed by a hash of the embedder's identity and the sequence, so one file can hold several
models' embeddings and a changed model never serves stale vectors. Readers get lazy views that load one
protein at a time, so training a probe holds a batch in memory, not the data set.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import h5py
import numpy as np

from beam_jobs.console import Progress
from models.export.embedding import ProteinEmbedding

WRITE_EVERY = 256  # sequences embedded per call of an embedder that does not name its own `chunk_size`
PARTS = ("residues", "protein")


def entry_key(identity: str, sequence: str) -> str:
    return hashlib.sha256(f"{identity}\0{sequence}".encode()).hexdigest()


class EmbeddingCache:
    def __init__(self, path: str):
        self.path = path
        self._file = h5py.File(path, "a")

    def close(self) -> None:
        self._file.close()

    def has(self, key: str, parts: tuple[str, ...]) -> bool:
        return key in self._file and all(part in self._file[key] for part in parts)

    def put(self, key: str, embedding: ProteinEmbedding, parts: tuple[str, ...] = PARTS) -> None:
        """Store the `parts` of `embedding` a probe will read (per-protein probes never read residue vectors)."""
        group = self._file.require_group(key)
        for name in parts:
            value = getattr(embedding, name)
            if name in group:
                del group[name]
            group.create_dataset(name, data=np.asarray(value, np.float32))

    def residues(self, key: str) -> np.ndarray:
        return self._file[key]["residues"][()]

    def protein(self, key: str) -> np.ndarray:
        return self._file[key]["protein"][()]

    def flush(self) -> None:
        self._file.flush()


class LazyView:
    """``view[i]``: the residue (or protein) embedding of sequence i, read from the cache when asked."""

    def __init__(self, cache: EmbeddingCache, keys: list[str], part: str):
        self._cache, self._keys, self._part = cache, keys, part

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index: int) -> np.ndarray:
        return getattr(self._cache, self._part)(self._keys[index])


def fill(cache: EmbeddingCache, embedder, sequences: Sequence[str], label: str = "embedding",
         parts: tuple[str, ...] = PARTS) -> list[str]:
    """Embed the sequences whose `parts` the cache lacks (longest first, in chunks, with a progress line); store
    those parts; return the keys."""
    keys = [entry_key(embedder.identity, s) for s in sequences]
    missing = sorted({k: s for k, s in zip(keys, sequences) if not cache.has(k, parts)}.items(),
                     key=lambda kv: -len(kv[1]))
    step = getattr(embedder, "chunk_size", WRITE_EVERY)
    progress = Progress(label, len(missing))
    for start in range(0, len(missing), step):
        chunk = missing[start : start + step]
        for (key, _), embedding in zip(chunk, embedder.embed([s for _, s in chunk])):
            cache.put(key, embedding, parts)
        cache.flush()
        progress.update(min(start + step, len(missing)), "new sequences embedded")
    return keys
