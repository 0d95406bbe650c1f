"""Serving, measured in one run: (1) the gRPC overhead — residues/s and p50/p99 latency of embeddings from
`prottrans-serve` against calling the same SavedModel in process (interleaved rounds, best round of each);
(2) per-residue responses in float32 (``serving_default``) against float16 (``serving_float16``): bytes on the wire
and time; (3) the ``predict`` signature's latency, p50/p99 at batch 1 and 32, in process and through gRPC. Run it
with ``-m`` (as a script, this file would shadow the `serving` package).

    .venv/bin/python -m bench.serving [--preset small] [--batch 32] [--batches 20] [--rounds 3]

Inputs are real proteins (the bundled UniProt sample, cut to `--max-residues`), sent as batches of `--batch`
sequences, one request at a time. The overhead ratio is in-process throughput / gRPC throughput − 1. The predict
heads are the probes' architectures with untrained weights (latency does not depend on the weights).
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
from bench.flops import matmul_peak
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
    print(f"dense float32 matmul peak of this machine: {matmul_peak('float32', repeats=5) / 1e9:.0f} GFLOP/s")
    print()
    wire_sizes(args, batches, residues)
    print()
    predict_latency(args, sequences)


def wire_sizes(args, batches: list[list[str]], residues: int) -> None:
    """Per-residue embeddings through gRPC in float32 and float16: bytes received and time (best of rounds)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.path.join(scratch, "protbert")
        export_saved_model(build_backbone("protbert", args.preset, max_sequence_length=args.max_residues + 2), folder, 1)
        server = DevServer(folder, "protbert", port=0, host="127.0.0.1", max_batch_size=args.batch).start()
        clients = {dtype: EmbeddingClient(f"127.0.0.1:{server.port}", "protbert", timeout_s=600, residue_dtype=dtype)
                   for dtype in ("float32", "float16")}
        for client in clients.values():
            client.predict(batches[0], client.signature)  # warm each signature
        best = {}
        for _ in range(args.rounds):
            for dtype, client in clients.items():
                received = 0
                start = time.perf_counter()
                for batch in batches:
                    received += client.predict(batch, client.signature)["residue_embeddings"].nbytes
                best[dtype] = min(best.get(dtype, (float("inf"), 0)), (time.perf_counter() - start, received))
        for client in clients.values():
            client.close()
        server.stop()
    print(f"per-residue embeddings through gRPC ({residues:,} residues, batch {args.batch}):")
    print(f"{'':10} {'MiB received':>13} {'bytes/residue':>14} {'seconds':>8}")
    for dtype, (seconds, received) in best.items():
        print(f"{dtype:10} {received / 2**20:13,.1f} {received / residues:14,.0f} {seconds:8.2f}")
    print(f"float16 / float32: bytes {best['float16'][1] / best['float32'][1]:.2f}, "
          f"time {best['float16'][0] / best['float32'][0]:.2f}")


def predict_latency(args, sequences: list[str], repeats: int = 50) -> None:
    """p50/p99 of the predict signature at batch 1 and 32, in process and through gRPC."""
    import keras

    from models.export.predict import PREDICT_SIGNATURE, write_predictor
    from models.probes.probe import protein_fnn, residue_cnn

    with tempfile.TemporaryDirectory() as scratch:
        backbone = build_backbone("protbert", args.preset, max_sequence_length=args.max_residues + 2)
        path = export_saved_model(backbone, os.path.join(scratch, "embedding"), 1)
        heads = {"ss": residue_cnn(backbone.hidden_dim),
                 "localization": protein_fnn(np.random.default_rng(0).normal(size=(64, backbone.hidden_dim)))}
        keras.utils.set_random_seed(0)
        folder = os.path.join(scratch, "protbert")
        predictor = write_predictor(path, heads, os.path.join(folder, "1"))
        signature = tf.saved_model.load(predictor).signatures[PREDICT_SIGNATURE]
        server = DevServer(folder, "protbert", port=0, host="127.0.0.1", max_batch_size=args.batch).start()
        client = EmbeddingClient(f"127.0.0.1:{server.port}", "protbert", timeout_s=600)
        calls = {"in process": lambda batch: signature(sequences=tf.constant(batch)),
                 "gRPC": lambda batch: client.predict(batch, PREDICT_SIGNATURE)}
        print(f"predict signature latency ({repeats} calls each; proteins of the sample, median "
              f"{int(np.median([len(s) for s in sequences]))} residues):")
        print(f"{'':12} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8}")
        for size in (1, 32):
            batches = [sequences[(i * size) % len(sequences):][:size] for i in range(repeats)]
            for name, call in calls.items():
                call(batches[0])  # warm
                _, latencies = timed(call, batches)
                print(f"{name:12} {size:5} {np.percentile(latencies, 50) * 1e3:8.1f} "
                      f"{np.percentile(latencies, 99) * 1e3:8.1f}")
        client.close()
        server.stop()


if __name__ == "__main__":
    main()
