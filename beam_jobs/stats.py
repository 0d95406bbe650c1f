"""Exact dataset statistics for ``manifest.json``, accumulated per bundle and merged with a CombineFn.

DoFns keep a :class:`DatasetStats` per bundle and emit it when the bundle finishes, so counting costs a few
dict updates per record, and a retried bundle's counts are discarded with its outputs (unlike Beam metrics,
which may count attempts). The merged counts must reconcile: read = written + rejected + duplicates removed.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any, Iterable

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from beam_jobs import schema
from beam_jobs.sequences import RESIDUES

COMPOSITION_BATCH_BYTES = 1 << 20
# Upper edges (inclusive) of the length histogram; chosen around the crop lengths models train at.
LENGTH_BIN_EDGES = (50, 100, 200, 300, 400, 512, 768, 1024, 1536, 2048, 4096, 8192, 16384, 40000)


class DatasetStats:
    """Counts of every outcome, plus residue and length statistics of the written records."""

    def __init__(self) -> None:
        self.read: Counter = Counter()  # by source
        self.written: Counter = Counter()  # by (split, source)
        self.rejected: Counter = Counter()  # by (reason, source)
        self.duplicates: Counter = Counter()  # by (reason, source)
        self.repairs: Counter = Counter()  # by repair name
        self.residues: Counter = Counter()  # by split
        self._composition = np.zeros(256, dtype=np.int64)  # by residue byte
        self._uncounted: list[bytes] = []  # sequences not yet in _composition (counted in ~1 MiB batches)
        self._uncounted_bytes = 0
        self.length_bins = [0] * (len(LENGTH_BIN_EDGES) + 1)
        self.min_length: int | None = None
        self.max_length: int | None = None

    @property
    def composition(self) -> np.ndarray:
        """Residue counts indexed by byte value."""
        if self._uncounted:
            joined = b"".join(self._uncounted)
            self._composition += np.bincount(np.frombuffer(joined, dtype=np.uint8), minlength=256)
            self._uncounted, self._uncounted_bytes = [], 0
        return self._composition

    def __getstate__(self) -> dict[str, Any]:
        self.composition  # noqa: B018 — fold pending sequences before pickling
        return self.__dict__

    def count_written(self, split: str, source: str, sequence: bytes) -> None:
        length = len(sequence)
        self.written[(split, source)] += 1
        self.residues[split] += length
        self.length_bins[bisect.bisect_left(LENGTH_BIN_EDGES, length)] += 1
        self.min_length = length if self.min_length is None else min(self.min_length, length)
        self.max_length = length if self.max_length is None else max(self.max_length, length)
        self._uncounted.append(sequence)
        self._uncounted_bytes += length
        if self._uncounted_bytes > COMPOSITION_BATCH_BYTES:
            self.composition  # noqa: B018 — folds the batch

    def merge(self, other: "DatasetStats") -> "DatasetStats":
        for name in ("read", "written", "rejected", "duplicates", "repairs", "residues"):
            getattr(self, name).update(getattr(other, name))
        self._composition = self.composition + other.composition
        self.length_bins = [a + b for a, b in zip(self.length_bins, other.length_bins)]
        for name, pick in (("min_length", min), ("max_length", max)):
            values = [v for v in (getattr(self, name), getattr(other, name)) if v is not None]
            setattr(self, name, pick(values) if values else None)
        return self

    def publish_metrics(self, namespace: str) -> None:
        """Add these counts to Beam metrics (for runner UIs): read, written_<split>, rejected_<reason>, …"""
        counts = {"read": sum(self.read.values()), "residues_written": sum(self.residues.values())}
        for (split, _), n in self.written.items():
            counts[f"written_{split}"] = counts.get(f"written_{split}", 0) + n
        for prefix, counter in (("rejected", self.rejected), ("duplicates", self.duplicates)):
            for (reason, _), n in counter.items():
                counts[f"{prefix}_{reason}"] = counts.get(f"{prefix}_{reason}", 0) + n
        for repair, n in self.repairs.items():
            counts[f"repaired_{repair}"] = n
        for name, n in counts.items():
            if n:
                Metrics.counter(namespace, name).inc(n)

    def is_empty(self) -> bool:
        return not (self.read or self.written or self.rejected or self.duplicates)

    def to_counts(self) -> dict[str, Any]:
        """The `counts`, `residues`, `length_histogram` and `residue_composition` parts of the manifest."""
        total_read = sum(self.read.values())
        total_written = sum(self.written.values())
        total_rejected = sum(self.rejected.values())
        total_duplicates = sum(self.duplicates.values())
        by_split: dict[str, dict[str, int]] = {split: {} for split in schema.SPLITS}
        for (split, source), n in sorted(self.written.items()):
            by_split[split][source] = n
        total_residues = sum(self.residues.values())
        return {
            "counts": {
                "read": total_read,
                "written": total_written,
                "rejected": total_rejected,
                "duplicates_removed": total_duplicates,
                "reconciled": total_read == total_written + total_rejected + total_duplicates,
                "read_by_source": dict(sorted(self.read.items())),
                "written_by_split": {split: sum(by_split[split].values()) for split in schema.SPLITS},
                "written_by_split_and_source": by_split,
                "rejected_by_reason": _sum_by_first(self.rejected),
                "rejected_by_reason_and_source": _nested(self.rejected),
                "duplicates_by_reason": _sum_by_first(self.duplicates),
                "repairs": dict(sorted(self.repairs.items())),
            },
            "residues": {**{split: self.residues.get(split, 0) for split in schema.SPLITS}, "total": total_residues},
            "lengths": {
                "min": self.min_length,
                "max": self.max_length,
                "mean": total_residues / total_written if total_written else None,
                "histogram": {
                    "upper_edges": list(LENGTH_BIN_EDGES) + [None],
                    "counts": self.length_bins,
                },
            },
            "residue_composition": {
                residue: {"count": count, "fraction": count / total_residues if total_residues else 0.0}
                for residue, count in ((r, int(self.composition[ord(r)])) for r in RESIDUES)
            },
        }


def _sum_by_first(counter: Counter) -> dict[str, int]:
    sums: Counter = Counter()
    for (first, _), n in counter.items():
        sums[first] += n
    return dict(sorted(sums.items()))


def _nested(counter: Counter) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for (first, second), n in sorted(counter.items()):
        nested.setdefault(first, {})[second] = n
    return nested


class MergeStats(beam.CombineFn):
    """Merges the per-bundle :class:`DatasetStats` of all stages into one."""

    def create_accumulator(self) -> DatasetStats:
        return DatasetStats()

    def add_input(self, accumulator: DatasetStats, element: DatasetStats) -> DatasetStats:
        return accumulator.merge(element)

    def merge_accumulators(self, accumulators: Iterable[DatasetStats]) -> DatasetStats:
        merged = DatasetStats()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: DatasetStats) -> DatasetStats:
        return accumulator
