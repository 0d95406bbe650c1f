"""Peak memory and time of embedding one long protein with a model that has no residue limit (ProtT5).

    .venv/bin/python bench/long_sequence.py [--family prott5] [--preset xl] [--residues 5000] [--dtype float32]

Builds the preset with random weights (the shapes, not the values, set time and memory), embeds one protein of
`--residues` residues through the serving path (:func:`models.export.embedding.embed`, no windows), and prints
the wall time, the process's peak resident memory (``ru_maxrss``) before and after, the weights' size and a dense
matmul peak measured in the same run (CPUs differ 3-5x between our machines).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beam_jobs.console import quiet_start  # noqa: E402

quiet_start()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.flops import matmul_peak  # noqa: E402

RESIDUES = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKAL"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="prott5")
    parser.add_argument("--preset", default="xl")
    parser.add_argument("--residues", type=int, default=5000)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    args = parser.parse_args(argv)

    from models.export import embedding
    from models.export.signatures import in_precision
    from models.registry import build_backbone

    print(f"dense float32 matmul peak: {matmul_peak('float32', repeats=5) / 1e9:.0f} GFLOP/s")
    backbone = in_precision(build_backbone(args.family, args.preset), args.dtype)
    embedding.embed(backbone, ["MKT"])  # build and trace once
    weights_gib = sum(int(np.prod(w.shape)) * tf.as_dtype(w.dtype).size for w in backbone.weights) / 2**30
    before = peak_rss_gib()
    sequence = (RESIDUES * (args.residues // len(RESIDUES) + 1))[: args.residues]
    start = time.perf_counter()
    (result,) = embedding.embed(backbone, [sequence], max_tokens_per_batch=args.residues + 2)
    seconds = time.perf_counter() - start
    assert result.residues.shape == (args.residues, backbone.hidden_dim) and np.isfinite(result.residues).all()
    print(f"{args.family} {args.preset} ({args.dtype}; weights {weights_gib:.2f} GiB): {args.residues:,} residues "
          f"embedded in {seconds:.1f} s; peak resident memory {before:.2f} GiB before, {peak_rss_gib():.2f} GiB "
          f"after; residue embeddings {result.residues.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
