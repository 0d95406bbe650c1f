"""How far the probes' metrics move when only round-off changes, with one probe and with several averaged.

    .venv/bin/python bench/probe_spread.py --model prottrans-pipeline/serving/protbert [--seeds 1 5] [--limit N]

Embeds the bundled probe sets once (or reads `--data-dir`'s), then trains the probes on those same embeddings in
separate processes that differ only in what differs between CPUs: the intra-op thread count (1 or 2), oneDNN on
or off, and the embeddings' last bits (a relative jitter of 1e-6, as another CPU's arithmetic gives). For each
`--seeds` setting it prints, per headline metric, the spread (largest minus smallest value over the variants)
beside the width of the metric's own 95% interval; the spread should be well under it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beam_jobs.console import quiet_start  # noqa: E402

quiet_start()

# (intra-op threads, oneDNN on, relative jitter, jitter seed): a reference and what another CPU could change.
VARIANTS = ((2, True, 0.0, 0), (1, True, 0.0, 0), (2, False, 0.0, 0), (1, False, 0.0, 0), (2, True, 1e-6, 1),
            (2, True, 1e-6, 2))
INTERVAL_OF = {"q3": "ss3", "q8": "ss8", "q10": "location", "q2": "membrane"}
SECONDS_FILE = "seconds.txt"  # the worker's probe training time, beside its metrics.json


class CachedOnly:
    """An embedder whose every embedding is already in the cache under `identity`."""

    def __init__(self, identity: str):
        self.name = self.identity = identity

    def embed(self, sequences: Sequence[str]):
        raise RuntimeError(f"{len(sequences)} sequences are not in the embedding cache")


def fill_cache(embedder, data_dir: str, task: str, limit: int | None, cache_path: str) -> None:
    """Every probe sequence of `task` embedded into `cache_path`, the parts each probe reads."""
    from models.probes import probe
    from models.probes.cache import EmbeddingCache, fill

    cache = EmbeddingCache(cache_path)
    try:
        for name, parts in (("ss", ("residues",)), ("localization", ("protein",))):
            if task in (name, "all"):
                train, valid, tests = probe.load_shared_layout(data_dir, name, limit)
                records = [*train, *valid, *(r for rows in tests.values() for r in rows)]
                fill(cache, embedder, [r.sequence for r in records], f"{name} probe sets", parts=parts)
    finally:
        cache.close()


def probe_in_subprocess(cache_path: str, identity: str, data_dir: str, task: str, seeds: int, limit: int | None,
                        threads: int, onednn: bool, jitter: float = 0.0, jitter_seed: int = 0) -> dict:
    """The probes' metrics.json from a fresh process with these threads, oneDNN and jitter, and the seconds the
    probes took there (under ``seconds``)."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, os.path.abspath(__file__), "--worker", "--cache", cache_path, "--identity", identity,
                   "--data-dir", data_dir, "--task", task, "--seeds", str(seeds), "--limit", str(limit or 0),
                   "--threads", str(threads), "--jitter", str(jitter), "--jitter-seed", str(jitter_seed), "--out", out]
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"probe worker failed:\n{done.stderr[-3000:]}")
        with open(os.path.join(out, "metrics.json")) as handle, open(os.path.join(out, SECONDS_FILE)) as seconds:
            return {**json.load(handle), "seconds": float(seconds.read())}


def _worker(args: argparse.Namespace) -> None:
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    from models.probes import probe, report
    from models.probes.cache import EmbeddingCache

    with tempfile.TemporaryDirectory() as scratch:
        cache_path = args.cache
        if args.jitter:
            cache_path = shutil.copy(args.cache, os.path.join(scratch, "jittered.h5"))
            import h5py

            rng = np.random.default_rng(args.jitter_seed)
            with h5py.File(cache_path, "r+") as handle:
                for group in handle.values():
                    for data in group.values():
                        values = data[()]
                        data[...] = values * (1 + args.jitter * rng.standard_normal(values.shape)).astype(np.float32)
        cache = EmbeddingCache(cache_path)
        try:
            settings = probe.ProbeSettings(seeds=args.seeds)
            started = time.perf_counter()
            metrics, _, _ = probe.run_probes(CachedOnly(args.identity), args.data_dir, args.task, settings,
                                             args.limit or None, cache)
            seconds = time.perf_counter() - started
        finally:
            cache.close()
    report.write_metrics(metrics, args.out)
    with open(os.path.join(args.out, SECONDS_FILE), "w") as handle:
        handle.write(str(seconds))


def spread(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per headline metric: the values' spread over `runs` and the mean width of the metric's 95% interval."""
    from models.probes.probe import headline_results

    values: dict[str, list[float]] = {}
    widths: dict[str, list[float]] = {}
    for run in runs:
        for key, _, _, name, result in headline_results(run):
            values.setdefault(key, []).append(result[name])
            low, high = result[INTERVAL_OF[name]]["ci95"]
            widths.setdefault(key, []).append(high - low)
    return {key: {"spread": max(v) - min(v), "interval_width": sum(widths[key]) / len(widths[key]),
                  "min": min(v), "max": max(v)} for key, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="onehot", help="a SavedModel or model folder, or onehot")
    parser.add_argument("--data-dir", default=None, help="probe sets (default: those bundled with models)")
    parser.add_argument("--task", default="all", choices=("ss", "localization", "all"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for flag, kind in (("--cache", str), ("--identity", str), ("--threads", int), ("--jitter", float),
                       ("--jitter-seed", int), ("--out", str)):
        parser.add_argument(flag, type=kind, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.seeds = args.seeds[0]
        _worker(args)
        return
    from bench.flops import matmul_peak
    from models.export.embedders import load_embedder
    from models.probes.datasets import SAMPLE_DATA_DIR

    data_dir = args.data_dir or SAMPLE_DATA_DIR
    embedder = load_embedder(args.model)
    print(f"model {args.model}; probe sets {data_dir}; "
          f"dense float32 matmul peak: {matmul_peak('float32', repeats=5) / 1e9:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as scratch:
        cache_path = os.path.join(scratch, "embeddings.h5")
        fill_cache(embedder, data_dir, args.task, args.limit or None, cache_path)
        for seeds in args.seeds:
            runs = [probe_in_subprocess(cache_path, embedder.identity, data_dir, args.task, seeds, args.limit or None,
                                        threads, onednn, jitter, jitter_seed)
                    for threads, onednn, jitter, jitter_seed in VARIANTS]
            seconds = sorted(run.pop("seconds") for run in runs)
            print(f"\nprobes averaged over {seeds} seed(s); {len(VARIANTS)} variants "
                  f"(threads 1/2 x oneDNN on/off; jitter 1e-6 twice); probe training {seconds[0]:.0f}-{seconds[-1]:.0f} s "
                  "a variant")
            print(f"  {'metric':24} {'min':>7} {'max':>7} {'spread':>7} {'95% CI width':>13}")
            for key, row in sorted(spread(runs).items()):
                print(f"  {key:24} {row['min']:7.4f} {row['max']:7.4f} {row['spread']:7.4f} "
                      f"{row['interval_width']:13.4f}")


if __name__ == "__main__":
    main()
