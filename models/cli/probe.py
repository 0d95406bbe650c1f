"""`prottrans-probe`: the paper's probes on frozen embeddings, beside the one-hot baseline."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import sys
import time
from typing import Sequence

from models.export.embedders import load_embedder
from models.probes import probe
from models.probes.datasets import DatasetError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prottrans-probe", description=__doc__)
    parser.add_argument("--model", required=True, help="'onehot', a SavedModel (or TF Serving model folder), "
                        "or a prottrans-train --model-dir")
    parser.add_argument("--data-dir", required=True, help="ss/{train,valid,test}.tsv and "
                        "localization/{train,valid,test}.fasta, as in ../shared/data")
    parser.add_argument("--task", choices=("ss", "localization", "all"), default="all")
    parser.add_argument("--output", required=True, metavar="DIR")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-hot baseline run")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N rows of each split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None, metavar="FILE.h5",
                        help="embedding cache (default: OUTPUT/embeddings.h5); reruns read embeddings from it")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        embedder = load_embedder(args.model)
        metrics, files = probe.probe_model(embedder, args.data_dir, args.task, args.output, probe.ProbeSettings(seed=args.seed),
                                     args.limit, not args.no_baseline, args.cache)
    except (DatasetError, ValueError, FileNotFoundError) as error:
        print(f"prottrans-probe: error: {error}", file=sys.stderr)
        return 2
    for family, key_metrics in (("ss", ("q3", "q8")), ("localization", ("q10", "q2"))):
        for set_name, result in metrics.get(family, {}).items():
            line = "  ".join(f"{key.upper()} {result[key]:.3f}" for key in key_metrics)
            base = metrics.get("baseline", {}).get(family, {}).get(set_name)
            if base:
                line += "   (one-hot: " + "  ".join(f"{key.upper()} {base[key]:.3f}" for key in key_metrics) + ")"
            print(f"{family} {set_name}: {line}")
    print(f"metrics: {files[0]}; plots: {', '.join(files[1:])} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
