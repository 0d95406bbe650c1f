"""gRPC serving overhead: residues/s and p50/p99 latency of embeddings from `prottrans-serve` against calling the
same SavedModel in process, same inputs, same run (interleaved rounds, best round of each). Run it with
``-m`` (as a script, this file would shadow the `serving` package).

    .venv/bin/python -m bench.serving [--preset small] [--batch 32] [--batches 20] [--rounds 3]

Inputs are real proteins (the bundled UniProt sample, cut to the model's limit), sent as batches of `--batch`
sequences, one request at a time. The overhead ratio is in-process throughput / gRPC throughput − 1.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import tempfile
import time

import numpy as np
import tensorflow as tf

from beam_jobs.fasta import read_fasta
from models.registry import build_backbone
from serving.client import EmbeddingClient
from serving.dev_server import DevServer
from models.export.signatures import export_saved_model

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "beam_jobs", "sample_data",
                      "uniprot_sample.fasta.gz")


def proteins(limit: int, count: int) -> list[str]:
    sequences = [record.sequence.upper()[:limit] for record in read_fasta(SAMPLE)]
    return [s for s in sequences if s.isalpha() and set(s) <= set("ACDEFGHIKLMNPQRSTVWYX")][:count]


def timed(call, batches) -> tuple[float, list[float]]:
    latencies = []
    start = time.perf_counter()
    for batch in batches:
        began = time.perf_counter()
        call(batch)
        latencies.append(time.perf_counter() - began)
    return time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--max-residues", type=int, default=510)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sequences = proteins(args.max_residues, args.batch * args.batches)
    batches = [sequences[i:i + args.batch] for i in range(0, len(sequences), args.batch)]
    residues = sum(len(s) for s in sequences)
    with tempfile.TemporaryDirectory() as scratch:
        backbone = build_backbone("protbert", args.preset, max_sequence_length=args.max_residues + 2)
        folder = os.path.join(scratch, "protbert")
        path = export_saved_model(backbone, folder, 1)
        signature = tf.saved_model.load(path).signatures["serving_default"]
        server = DevServer(folder, "protbert", port=0, host="127.0.0.1", max_batch_size=args.batch).start()
        client = EmbeddingClient(f"127.0.0.1:{server.port}", "protbert", timeout_s=600)
        local = lambda batch: signature(sequences=tf.constant(batch))["protein_embeddings"].numpy()  # noqa: E731
        remote = client.predict
        local(batches[0]), remote(batches[0])  # warm both
        best = {"in process": (float("inf"), []), "gRPC": (float("inf"), [])}
        for _ in range(args.rounds):
            for name, call in (("in process", local), ("gRPC", remote)):
                seconds, latencies = timed(call, batches)
                if seconds < best[name][0]:
                    best[name] = (seconds, latencies)
        client.close()
        server.stop()
    print(f"{len(sequences)} proteins, {residues:,} residues, batch {args.batch}, preset {args.preset}, "
          f"best of {args.rounds} interleaved rounds")
    print(f"{'':12} {'residues/s':>12} {'p50 ms':>8} {'p99 ms':>8}")
    for name, (seconds, latencies) in best.items():
        print(f"{name:12} {residues / seconds:12,.0f} {np.percentile(latencies, 50) * 1e3:8.1f} "
              f"{np.percentile(latencies, 99) * 1e3:8.1f}")
    overhead = best["gRPC"][0] / best["in process"][0] - 1
    print(f"gRPC throughput overhead: {overhead:+.1%} (target <= 15%)")


if __name__ == "__main__":
    main()
