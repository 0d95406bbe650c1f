"""How to stitch the windows of a protein longer than a model's limit: measured on the secondary-structure probe.

    .venv/bin/python bench/windows.py --model-dir RUN_DIR --data-dir ../shared/data [--limit 3000] [--overlap 0.25]

Loads a `prottrans-train --model-dir` (its position table stops at the longest length it was trained on, so a
model trained on short crops windows most proteins), and probes the same backbone three ways: windows overlapping
by `--overlap` of their length with each residue taken from the window where it is most central (``central``),
the same windows averaged over (``mean``), and windows that do not overlap (``none``, the last one ending at the
protein's end). Prints Q3/Q8 per variant and the paired differences (bootstrap over proteins) between them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beam_jobs.console import quiet_start  # noqa: E402

quiet_start()

import tensorflow as tf  # noqa: E402

from models.export import embedding  # noqa: E402
from models.probes import probe  # noqa: E402
from models.training.checkpoints import load_trained_backbone  # noqa: E402


class WindowedEmbedder:
    """The backbone in process, with the given windows."""

    def __init__(self, backbone, window: embedding.Window, name: str):
        self.name = self.identity = name
        run = tf.function(lambda batch: embedding.embed_strings(backbone, batch, window), reduce_retracing=True)
        self.embed = lambda sequences: embedding.embed_with_limit(run, sequences, None, 16384)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--limit", type=int, default=3000, help="rows of each split (train, valid, test)")
    parser.add_argument("--overlap", type=float, default=0.25, help="overlap as a fraction of the window")
    args = parser.parse_args(argv)
    backbone, checkpoint = load_trained_backbone(args.model_dir)
    size = embedding.max_residues(backbone)
    overlap = int(size * args.overlap)
    train, valid, tests = probe.load_shared_layout(args.data_dir, "ss", args.limit)
    records = [*train, *valid, *tests["test"]]
    longer = sum(len(r.sequence) > size for r in records)
    print(f"{checkpoint}: windows of {size} residues; {longer:,} of {len(records):,} proteins are longer "
          f"({sum(max(len(r.sequence) - size, 0) for r in records) / sum(len(r.sequence) for r in records):.0%} of "
          "residues lie past the first window)")
    variants = {"central": embedding.Window(size, overlap, "central"), "mean": embedding.Window(size, overlap, "mean"),
                "none": embedding.Window(size, 0, "central")}
    results = {}
    for name, window in variants.items():
        started = time.perf_counter()
        metrics = probe.structure_probe(WindowedEmbedder(backbone, window, name), train, valid, tests,
                                        probe.ProbeSettings(seed=0), cache=None)
        results[name] = {"ss": metrics}
        print(f"{name:8} overlap {window.overlap:3}: " + "; ".join(
            f"{split} Q3 {metrics[split]['q3']:.4f} Q8 {metrics[split]['q8']:.4f}" for split in ("valid", "test"))
            + f"  ({time.perf_counter() - started:.0f} s)")
    print_paired(results, (("central", "mean"), ("central", "none"), ("mean", "none")))
    return 0


def print_paired(reports: dict[str, dict], pairs) -> None:
    """Each pair's paired differences (first minus second) with their 95% intervals, one line per pair."""
    for first, second in pairs:
        differences = probe.paired_differences(reports[first], reports[second])
        print(f"{first} - {second}: " + "; ".join(
            f"{key} {d['difference']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
            for key, d in differences.items()))


if __name__ == "__main__":
    sys.exit(main())
