"""`prottrans-probe`: the paper's probes on frozen embeddings, beside the one-hot baseline."""

from __future__ import annotations

from beam_jobs.console import VERBOSE_FLAG, VERBOSE_HELP, guarded, quiet_start, whole_number

quiet_start()  # before TensorFlow is imported

import argparse
import os
import sys
import time
from typing import Sequence

from models.export.embedders import ONEHOT, SavedModelEmbedder, load_embedder
from models.export.predict import write_predictor
from models.export.signatures import next_version
from models.probes import probe
from models.probes.datasets import DatasetError
from models.probes.profile import PROFILE, ProfileEmbedder


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("prottrans-probe", lambda: _main(argv), argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prottrans-probe", description=__doc__)
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--model", required=True, help="'onehot', 'profile' (MMseqs2 profiles against "
                        "--profile-db), a SavedModel with the serving signature (or a TF Serving model folder), or a "
                        "prottrans-train --model-dir")
    parser.add_argument("--profile-db", default=None, metavar="FASTA",
                        help="the database MMseqs2 profiles are searched in (plain or gzip): with --model profile the "
                        "model itself; with another model, the evolutionary-profile reference probed beside it")
    parser.add_argument("--max-residues", type=whole_number(1), default=None,
                        help="a SavedModel's residue limit where it carries none (longer sequences are embedded in "
                        "pieces); default: its prottrans_model.json, else no limit")
    parser.add_argument("--data-dir", required=True, help="ss/{train,valid,test}.tsv and "
                        "localization/{train,valid,test}.fasta, as in ../shared/data")
    parser.add_argument("--task", choices=("ss", "localization", "all"), default="all")
    parser.add_argument("--output", required=True, metavar="DIR")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-hot baseline run")
    parser.add_argument("--no-maps", action="store_true",
                        help="skip the t-SNE maps of amino acids, residues and proteins (and their silhouettes)")
    parser.add_argument("--limit", type=whole_number(1), default=None, help="use only the first N rows of each split")
    parser.add_argument("--seed", type=whole_number(0), default=0, help="the first probe's seed")
    parser.add_argument("--seeds", type=whole_number(1), default=probe.ProbeSettings.seeds, metavar="N",
                        help="train each probe from N seeds (seed, seed+1, …) and average their probabilities, so "
                        "that round-off differences between machines move the metrics less (1: one probe)")
    parser.add_argument("--predictor-dir", default=None, metavar="MODEL_FOLDER",
                        help="with a SavedModel --model: write it, with the probes just trained as its 'predict' "
                        "signature, as a new version of this TF Serving model folder (for prottrans-predict)")
    parser.add_argument("--cache", default=None, metavar="FILE.h5",
                        help="embedding cache (default: OUTPUT/embeddings.h5); reruns read embeddings from it")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        references = []
        if args.model == PROFILE:
            if not args.profile_db:
                raise ValueError("--model profile needs --profile-db FASTA")
            embedder = ProfileEmbedder(args.profile_db)
        else:
            embedder = load_embedder(args.model, args.max_residues)
            references = [ProfileEmbedder(args.profile_db)] if args.profile_db else []
        if args.predictor_dir and not isinstance(embedder, SavedModelEmbedder):
            raise ValueError("--predictor-dir needs a SavedModel (or model folder) as --model")
        heads: dict = {}
        predictor = None
        metrics, files = probe.probe_model(embedder, args.data_dir, args.task, args.output,
                                           probe.ProbeSettings(seed=args.seed, seeds=args.seeds), args.limit, not args.no_baseline,
                                           args.cache, maps=not args.no_maps, references=references, heads=heads)
        if args.predictor_dir:
            predictor = write_predictor(embedder.name, heads, os.path.join(args.predictor_dir,
                                                                           str(next_version(args.predictor_dir))))
    except (DatasetError, ValueError, FileNotFoundError) as error:
        print(f"prottrans-probe: error: {error}", file=sys.stderr)
        return 2
    others = {ONEHOT: metrics.get("baseline", {}), **metrics.get("references", {})}
    for metric, family, set_name, key, result in probe.headline_results(metrics):
        line = f"{family} {set_name} {key.upper():4} {result[key]:.3f}"
        for name, other in others.items():
            if set_name in other.get(family, {}):
                difference = metrics["paired"][name][metric]
                low, high = difference["ci95"]
                line += (f"   {name} {other[family][set_name][key]:.3f}, difference "
                         f"{difference['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
                         f"{'  (better)' if low > 0 else '  (worse)' if high < 0 else ''}")
        print(line)
    print(f"metrics: {files[0]}; plots: {', '.join(files[1:])} ({time.perf_counter() - started:.0f} s)")
    if predictor:
        print(f"predictor (the model with its probes as the 'predict' signature): {predictor}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
