"""Labelled sets are split by MMseqs2 clusters: whole clusters go to one split, never single rows."""

from __future__ import annotations

import random
import shutil

import pytest

from models.probes import split


def test_whole_clusters_go_to_one_split_near_the_requested_fractions():
    clusters = {f"rep{i}": [f"rep{i}"] + [f"m{i}_{j}" for j in range(i % 4)] for i in range(300)}
    assignment = split.assign_clusters(clusters, valid_fraction=0.1, test_fraction=0.2, seed=1)
    for members in clusters.values():
        assert len({assignment[m] for m in members}) == 1
    total = len(assignment)
    share = {name: sum(1 for s in assignment.values() if s == name) / total for name in split.SPLITS}
    assert abs(share["test"] - 0.2) < 0.03 and abs(share["valid"] - 0.1) < 0.03
    assert split.assign_clusters(clusters, 0.1, 0.2, seed=1) == assignment  # deterministic
    assert split.assign_clusters(clusters, 0.1, 0.2, seed=2) != assignment


def test_malformed_fasta_is_a_clear_error(tmp_path):
    path = tmp_path / "x.fasta"
    path.write_text(">a Nucleus-S\nMKT\n>a Cytoplasm-S\nMKV\n")
    with pytest.raises(ValueError, match=r"x.fasta:3: duplicate id 'a'"):
        split.read_fasta_records(str(path))


@pytest.mark.skipif(shutil.which("mmseqs") is None, reason="needs MMseqs2 (Debian: apt-get install mmseqs2)")
def test_near_duplicates_never_straddle_splits(tmp_path):
    rng = random.Random(0)
    families = ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(150)) for _ in range(40)]
    lines = []
    for f, family in enumerate(families):
        for copy in range(3):  # three 95%-identical members per family
            mutated = "".join(c if rng.random() > 0.05 else rng.choice("ACDEFGHIKLMNPQRSTVWY") for c in family)
            lines.append(f">f{f}_{copy} Nucleus-S\n{mutated}\n")
    (tmp_path / "in.fasta").write_text("".join(lines))
    counts = split.split(str(tmp_path / "in.fasta"), str(tmp_path / "out"), valid_fraction=0.2, test_fraction=0.2)
    assert sum(counts.values()) == 120 and all(counts.values())
    family_splits = {}
    for name in split.SPLITS:
        for record_id in split.read_fasta_records(str(tmp_path / "out" / f"{name}.fasta")):
            family_splits.setdefault(record_id.split("_")[0], set()).add(name)
    assert all(len(splits) == 1 for splits in family_splits.values())
    assert "Nucleus-S" in (tmp_path / "out" / "test.fasta").read_text()  # headers (labels) travel along
