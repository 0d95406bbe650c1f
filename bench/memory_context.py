"""Does it matter for the probes that ProtTXL/ProtXLNet train with a memory that crosses proteins while their
embeddings are computed from a zero memory?

    .venv/bin/python bench/memory_context.py --model-dir RUN_DIR --data-dir ../shared/data [--limit 2000]

Probes the same trained backbone two ways: each protein from a zero memory (what the serving signature, `embed` and
the probes do), and each protein read after the memory of the protein before it in the probe file — an unrelated
protein, as in training, where a lane's stream is one protein after another. Prints the probes' metrics of both and
their paired differences (bootstrap over proteins), beside one-hot.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beam_jobs.console import quiet_start  # noqa: E402

quiet_start()

import tensorflow as tf  # noqa: E402

from models import vocabulary  # noqa: E402
from models.export.embedders import BackboneEmbedder, OneHotEmbedder  # noqa: E402
from models.export.embedding import ProteinEmbedding  # noqa: E402
from models.probes import probe  # noqa: E402
from models.training.checkpoints import load_trained_backbone  # noqa: E402
from bench.windows import print_paired  # noqa: E402


class AfterAnotherProtein:
    """Each protein read with the memory its predecessor in the list left (the first: after the last)."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.name = self.identity = "memory of the previous protein"
        self.layout = vocabulary.layout_of(backbone)
        self._forward = tf.function(lambda ids, memory: backbone.forward(ids, memory, training=False),
                                    reduce_retracing=True)

    def embed(self, sequences):
        leading, _ = vocabulary.LAYOUTS[self.layout]
        results = []
        for index, sequence in enumerate(sequences):
            previous = sequences[index - 1]
            ids = [vocabulary.encode(tf.constant([s]), layout=self.layout)[0] for s in (previous, sequence)]
            memory = self._forward(ids[0], self.backbone.initial_memory(1)).memory
            hidden = tf.cast(self._forward(ids[1], memory).hidden, tf.float32).numpy()[0]
            residues = hidden[len(leading) : len(leading) + len(sequence)]
            results.append(ProteinEmbedding(residues, residues.mean(axis=0)))
        return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--limit", type=int, default=2000, help="rows of each split")
    parser.add_argument("--task", default="all", choices=("ss", "localization", "all"))
    args = parser.parse_args(argv)
    backbone, checkpoint = load_trained_backbone(args.model_dir)
    if not getattr(backbone, "memory_length", 0):
        raise SystemExit(f"{args.model_dir}: the backbone has no memory")
    print(f"{checkpoint}: memory of {backbone.memory_length} positions")
    variants = {"zero memory (served)": BackboneEmbedder(backbone, "zero memory", "zero"),
                "memory of the previous protein": AfterAnotherProtein(backbone), "one-hot": OneHotEmbedder()}
    reports = {}
    for name, embedder in variants.items():
        reports[name], _, _ = probe.run_probes(embedder, args.data_dir, args.task, probe.ProbeSettings(seed=0),
                                               args.limit, cache=None)
        line = "; ".join(f"{set_name} {key.upper()} {result[key]:.4f}"
                         for _, _, set_name, key, result in probe.headline_results(reports[name]))
        print(f"{name:32} {line}")
    print_paired(reports, (("zero memory (served)", "memory of the previous protein"),
                           ("zero memory (served)", "one-hot"), ("memory of the previous protein", "one-hot")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
