"""The evolutionary-information reference: position-specific profiles from MMseqs2, as residue embeddings.

For each query, ``mmseqs search`` finds its homologues in a database FASTA, ``result2profile`` turns the
alignments into a profile and ``profile2pssm`` writes it as 20 log-odds scores per position (BLOSUM62 bits; the
same scores PSI-BLAST PSSMs give, which the secondary-structure methods before single-sequence LMs used). Each
residue's embedding is those 20 scores (divided by 10) plus the log of how many alignments cover it; a
protein's is their mean. A query without homologues gets its own substitution-matrix row (its profile is the
sequence alone) and zero coverage.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from typing import Sequence

import numpy as np

from models.export.embedding import ProteinEmbedding

PROFILE = "profile"
SCORE_SCALE = 0.1  # PSSM scores are integers of about -10…10; the probes train better on unit-sized inputs


class ProfileEmbedder:
    """Residue embeddings of 21 numbers: the query's MMseqs2 profile (20 log-odds scores) and log(1 + coverage)."""

    chunk_size = 4096  # queries per MMseqs2 search: each search reads the whole target database once

    def __init__(self, database: str, sensitivity: float = 5.7, threads: int | None = None,
                 work_dir: str | None = None):
        if shutil.which("mmseqs") is None:
            raise ValueError("the profile embedder needs MMseqs2 on PATH (Debian/Ubuntu: apt-get install mmseqs2)")
        if not os.path.isfile(database):
            raise ValueError(f"--profile-db {database!r}: not a FASTA file")
        self.database, self.sensitivity = os.path.abspath(database), sensitivity
        self.threads = threads or os.cpu_count() or 1
        self.name = f"{PROFILE}:{os.path.basename(database)}"
        self.identity = f"{PROFILE}:{_file_digest(database)}:s{sensitivity}"
        self._scratch = tempfile.TemporaryDirectory(dir=work_dir, prefix="profiles-")
        self._target = None

    def _mmseqs(self, *arguments: str) -> None:
        result = subprocess.run(["mmseqs", *arguments, "-v", "1"], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"mmseqs {arguments[0]} failed: {result.stderr.strip()[-2000:]}")

    def _target_db(self) -> str:
        if self._target is None:
            self._target = os.path.join(self._scratch.name, "target")
            self._mmseqs("createdb", self.database, self._target)
        return self._target

    def embed(self, sequences: Sequence[str]) -> list[ProteinEmbedding]:
        results: list[ProteinEmbedding | None] = [None] * len(sequences)
        queries = [(index, sequence.upper()) for index, sequence in enumerate(sequences) if sequence]
        for index, sequence in enumerate(sequences):
            if not sequence:
                results[index] = ProteinEmbedding(np.zeros((0, 21), np.float32), np.zeros(21, np.float32))
        if queries:
            scores, coverage = self._profiles([sequence for _, sequence in queries])
            for (index, sequence), pssm, covered in zip(queries, scores, coverage):
                if len(pssm) != len(sequence):
                    raise RuntimeError(f"MMseqs2 returned a profile of {len(pssm)} positions for a sequence of "
                                       f"{len(sequence)} residues")
                residues = np.concatenate([pssm * SCORE_SCALE, np.log1p(covered)[:, None]], axis=1).astype(np.float32)
                results[index] = ProteinEmbedding(residues, residues.mean(axis=0))
        return results

    def _profiles(self, sequences: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        with tempfile.TemporaryDirectory(dir=self._scratch.name) as work:
            path = lambda name: os.path.join(work, name)  # noqa: E731
            with open(path("queries.fasta"), "w") as handle:
                handle.writelines(f">{index}\n{sequence}\n" for index, sequence in enumerate(sequences))
            threads = ["--threads", str(self.threads)]
            self._mmseqs("createdb", path("queries.fasta"), path("query"))
            self._mmseqs("search", path("query"), self._target_db(), path("result"), path("tmp"),
                         "-s", str(self.sensitivity), *threads)
            self._mmseqs("result2profile", path("query"), self._target_db(), path("result"), path("profile"), *threads)
            self._mmseqs("profile2pssm", path("profile"), path("pssm.tsv"), *threads)
            self._mmseqs("convertalis", path("query"), self._target_db(), path("result"), path("alignments.tsv"),
                         "--format-output", "query,qstart,qend", *threads)
            # profile2pssm names queries by their database key; the lookup file maps keys to our headers
            with open(path("query.lookup")) as handle:
                index_of = {int(key): int(name) for key, name, *_ in (line.split("\t") for line in handle)}
            scores = _read_pssm(path("pssm.tsv"), index_of, len(sequences))
            coverage = [np.zeros(len(sequence)) for sequence in sequences]
            with open(path("alignments.tsv")) as handle:
                for line in handle:
                    query, start, end = line.split("\t")
                    coverage[int(query)][int(start) - 1: int(end)] += 1
        return scores, coverage


def _read_pssm(path: str, index_of: dict[int, int], count: int) -> list[np.ndarray]:
    """``profile2pssm``'s text: per query a ``Query profile of sequence KEY`` line, a header, then per position its
    index, consensus residue and 20 scores; returned in query order (`index_of` maps a key to its query)."""
    rows: dict[int, list[list[float]]] = {}
    current = None
    with open(path) as handle:
        for line in handle:
            if line.startswith("Query profile of sequence"):
                current = rows.setdefault(index_of[int(line.split()[-1])], [])
            elif line.startswith("Pos") or not line.strip():
                continue
            else:
                current.append([float(value) for value in line.split("\t")[2:22]])
    missing = [index for index in range(count) if index not in rows]
    if missing:
        raise RuntimeError(f"MMseqs2 wrote no profile for {len(missing)} queries (e.g. query {missing[0]})")
    return [np.array(rows[index], np.float64).reshape(-1, 20) for index in range(count)]


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
