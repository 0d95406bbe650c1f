"""Shared fixtures: the bundled real sample, and running the preprocessing job in-process."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "beam_jobs" / "sample_data"
SAMPLE_FASTA = SAMPLE_DIR / "uniprot_sample.fasta.gz"
SAMPLE_A3M = SAMPLE_DIR / "hhsuite_query.a3m"


def read_fasta_reference(path: Path) -> list[tuple[str, str]]:
    """A deliberately naive reader (whole file, line by line), independent of the job's scanner."""
    opener = gzip.open if path.suffix == ".gz" else open
    records: list[tuple[str, list[str]]] = []
    with opener(path, "rt") as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            if line.startswith(">"):
                records.append((line[1:], []))
            elif line:
                records[-1][1].append(line)
    return [(header, "".join(lines)) for header, lines in records]


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """The bundled real sample through the Beam job in 2 shards: the folder with ``train/`` and ``valid/``."""
    from beam_jobs import fasta_to_tfrecords

    data = tmp_path_factory.mktemp("sample") / "data"
    fasta_to_tfrecords.run(["--input", str(SAMPLE_FASTA), "--output-dir", str(data), "--num-shards", "2"])
    return data


def shards(dataset: Path, split: str) -> tuple[str, ...]:
    return tuple(sorted(str(p) for p in (dataset / split).glob("data-*")))


@pytest.fixture(scope="session")
def sample_shards(sample_dataset) -> tuple[str, ...]:
    """The training split's shards of :func:`sample_dataset`."""
    return shards(sample_dataset, "train")


@pytest.fixture
def run_job(tmp_path):
    """Run `prottrans-preprocess` in-process with the given flags; returns (output_dir, manifest)."""
    from beam_jobs import fasta_to_tfrecords

    def run(*flags: str, output_dir: Path | None = None) -> tuple[Path, dict]:
        out = output_dir or tmp_path / "dataset"
        manifest = fasta_to_tfrecords.run([*flags, "--output-dir", str(out)])
        with open(out / "manifest.json") as handle:
            assert json.load(handle) == manifest
        return out, manifest

    return run


def read_records(output_dir: Path, split: str) -> list[dict]:
    """Read a split back with tf.data and the schema's feature spec, as models will."""
    import tensorflow as tf

    from beam_jobs import schema

    files = sorted(str(p) for p in (output_dir / split).glob("data-*"))
    compression = "GZIP" if files and files[0].endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset(files, compression_type=compression).map(schema.parse_example)
    return [
        {
            "id": r["id"].decode(),
            "sequence": r["sequence"].decode(),
            "length": int(r["length"]),
            "source": r["source"].decode(),
            "taxon_id": int(r["taxon_id"]),
        }
        for r in dataset.as_numpy_iterator()
    ]


def read_rejects(output_dir: Path) -> list[dict]:
    rejects = []
    for path in sorted((output_dir / "rejects").glob("*.jsonl")):
        rejects += [json.loads(line) for line in path.read_text().splitlines() if line]
    return rejects


def assert_reconciles(manifest: dict) -> None:
    counts = manifest["counts"]
    assert counts["read"] == counts["written"] + counts["rejected"] + counts["duplicates_removed"]
    assert counts["reconciled"] is True


def one_family_per_objective(leaving_out: str | None = None) -> list[str]:
    """The first registered family (by name) of each objective, without `leaving_out`'s objective: where a test
    is too slow to run for every family, it still runs for every objective."""
    from models.registry import FAMILIES

    skipped = FAMILIES[leaving_out].objective.name if leaving_out else None
    first: dict[str, str] = {}
    for name in sorted(FAMILIES):
        first.setdefault(FAMILIES[name].objective.name, name)
    return sorted(name for objective, name in first.items() if objective != skipped)


def train_job(train_files, model_dir, *phases, valid_files=(), **settings):
    """A TrainJob over `train_files` (and `valid_files`) with `phases` (default: the settings'); settings default to
    a tiny ProtBert."""
    from models.training.settings import TrainingSettings
    from models.training.trainer import TrainJob

    return TrainJob(TrainingSettings(**{"family": "protbert", "preset": "tiny", **settings}),
                    tuple(str(path) for path in train_files), str(model_dir), tuple(phases),
                    tuple(str(path) for path in valid_files))


def train_and_log(job):
    """Train per `job` (a TrainJob); the trainer, its last metrics and the loss of every logged step."""
    from models.training.trainer import build_trainer

    logged: list[str] = []
    trainer = build_trainer(job, log=logged.append)
    metrics = trainer.train()
    losses = [float(line.split("loss ")[1].split()[0]) for line in logged if line.startswith("step")]
    return trainer, metrics, losses
