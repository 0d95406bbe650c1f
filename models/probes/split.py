"""Split a labelled protein set into train/valid/test by MMseqs2 clusters, never by random rows.

    python -m models.probes.split --input labelled.fasta --output-dir DIR [--min-seq-id 0.3] [--coverage 0.8]
        [--valid-fraction 0.1] [--test-fraction 0.1] [--seed 0]

Sequences are clustered with ``mmseqs easy-cluster`` (Debian's `mmseqs2`) at ≤30% identity by default, as
NetSurfP-2.0 and DeepLoc did, and whole clusters are assigned to splits, so no test protein has a
near-duplicate in train. Records keep their header lines, so labels in them (DeepLoc style) travel along; their
residues are written on one line.
Writes ``DIR/{train,valid,test}.fasta`` and ``DIR/clusters.tsv``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Sequence

from beam_jobs.fasta import FastaRecord, read_fasta

SPLITS = ("train", "valid", "test")


def read_fasta_records(path: str) -> dict[str, FastaRecord]:
    """id (first header word) → its record; a header without an id or an id seen twice is a ValueError."""
    records: dict[str, FastaRecord] = {}
    for record in read_fasta(path):
        if not record.id:
            raise ValueError(f"{path}:{record.line}: a header without an id")
        if record.oversized:
            raise ValueError(f"{path}:{record.line}: {record.id!r} is larger than the FASTA reader's bound")
        if record.id in records:
            raise ValueError(f"{path}:{record.line}: duplicate id {record.id!r}")
        records[record.id] = record
    return records


def read_clusters(path: str) -> dict[str, list[str]]:
    """MMseqs2's ``*_cluster.tsv`` (representative, member) → representative → members."""
    clusters: dict[str, list[str]] = {}
    with open(path) as handle:
        for line in handle:
            representative, member = line.rstrip("\n").split("\t")
            clusters.setdefault(representative, []).append(member)
    return clusters


def assign_clusters(clusters: dict[str, list[str]], valid_fraction: float, test_fraction: float,
                    seed: int = 0) -> dict[str, str]:
    """member → split. Clusters are ordered by a seeded hash of their representative and filled into test,
    then valid, until each holds its fraction of the members; the rest is train."""
    total = sum(len(members) for members in clusters.values())
    order = sorted(clusters, key=lambda rep: hashlib.sha256(f"{seed}:{rep}".encode()).hexdigest())
    targets = {"test": test_fraction * total, "valid": valid_fraction * total}
    filled = {"test": 0, "valid": 0}
    assignment = {}
    for representative in order:
        members = clusters[representative]
        split = next((s for s in ("test", "valid") if filled[s] + len(members) / 2 <= targets[s]), "train")
        if split != "train":
            filled[split] += len(members)
        for member in members:
            assignment[member] = split
    return assignment


def run_mmseqs(fasta: str, work_dir: str, min_seq_id: float, coverage: float) -> str:
    if shutil.which("mmseqs") is None:
        raise RuntimeError("mmseqs is not on PATH: install MMseqs2 (Debian/Ubuntu: apt-get install mmseqs2)")
    prefix = os.path.join(work_dir, "clusters")
    subprocess.run(["mmseqs", "easy-cluster", fasta, prefix, os.path.join(work_dir, "tmp"),
                    "--min-seq-id", str(min_seq_id), "-c", str(coverage), "-v", "1"],
                   check=True, stdout=subprocess.DEVNULL)
    return prefix + "_cluster.tsv"


def split(fasta: str, output_dir: str, min_seq_id: float = 0.3, coverage: float = 0.8,
          valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> dict[str, int]:
    """Cluster and split `fasta`; returns the number of records per split."""
    records = read_fasta_records(fasta)
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as work_dir:
        cluster_file = run_mmseqs(fasta, work_dir, min_seq_id, coverage)
        shutil.copy(cluster_file, os.path.join(output_dir, "clusters.tsv"))
        clusters = read_clusters(cluster_file)
    assignment = assign_clusters(clusters, valid_fraction, test_fraction, seed)
    missing = set(records) - set(assignment)
    if missing:
        raise RuntimeError(f"MMseqs2 left {len(missing)} records unclustered, e.g. {sorted(missing)[:3]}")
    counts = {}
    for name in SPLITS:
        with open(os.path.join(output_dir, f"{name}.fasta"), "w") as handle:
            chosen = [record for record_id, record in records.items() if assignment[record_id] == name]
            handle.writelines(f">{record.header}\n{record.sequence}\n" for record in chosen)
        counts[name] = len(chosen)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.probes.split", description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--min-seq-id", type=float, default=0.3)
    parser.add_argument("--coverage", type=float, default=0.8)
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        counts = split(args.input, args.output_dir, args.min_seq_id, args.coverage, args.valid_fraction,
                       args.test_fraction, args.seed)
    except (ValueError, RuntimeError) as error:
        print(f"split: error: {error}", file=sys.stderr)
        return 2
    print(", ".join(f"{name} {n}" for name, n in counts.items()), f"→ {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
