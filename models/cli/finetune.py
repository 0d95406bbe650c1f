"""`prottrans-finetune`: the probe tasks' heads trained together with the backbone (full fine-tuning or LoRA),
reported beside the frozen probes of the same starting model, paired, and exported with a `predict` signature."""

from __future__ import annotations

from beam_jobs.console import VERBOSE_FLAG, VERBOSE_HELP, guarded, quiet_start, real_number, whole_number

quiet_start()  # before TensorFlow is imported

import argparse
import os
import sys
from typing import Sequence

from models.finetuning.model import METHODS
from models.finetuning.run import TASKS, FinetuneSettings, describe, export, finetune
from models.probes.report import write_metrics
from models.registry import FAMILIES
from models.training.state import initial_model


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("prottrans-finetune", lambda: _main(argv), argv)


def _main(argv: Sequence[str] | None = None) -> int:
    defaults = FinetuneSettings()
    parser = argparse.ArgumentParser(prog="prottrans-finetune", description=__doc__)
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--family", required=True, choices=sorted(FAMILIES))
    parser.add_argument("--init-from", required=True, metavar="DIR",
                        help="the starting model: a transformers folder of --family, a prottrans-train model folder, or a "
                        "SavedModel of ours (or its TF Serving model folder: the latest version)")
    parser.add_argument("--data-dir", required=True, help="ss/{train,valid,test}.tsv and "
                        "localization/{train,valid,test}.fasta, as in ../shared/data (the probes' splits)")
    parser.add_argument("--task", choices=(*TASKS, "all"), default="all")
    parser.add_argument("--method", choices=METHODS, default=defaults.method,
                        help="lora: low-rank updates of the projections, the backbone frozen; full: every weight")
    parser.add_argument("--lora-rank", type=whole_number(1), default=defaults.lora_rank)
    parser.add_argument("--epochs", type=whole_number(1), default=defaults.epochs,
                        help="the epoch with the lowest valid loss is kept")
    parser.add_argument("--batch-size", type=whole_number(1), default=defaults.batch_size,
                        help="proteins per task per step")
    parser.add_argument("--learning-rate", type=real_number(0.0, 1.0, above_minimum=True), default=defaults.learning_rate)
    parser.add_argument("--max-residues", type=whole_number(1), default=defaults.max_residues,
                        help="training crop per protein (evaluation embeds whole proteins)")
    parser.add_argument("--limit", type=whole_number(1), default=None, help="use only the first N rows of each split")
    parser.add_argument("--seed", type=whole_number(0), default=0)
    parser.add_argument("--probe-seeds", type=whole_number(1, 100), default=defaults.probe_seeds, metavar="N",
                        help="the frozen probes (the heads' starting point) from N seeds, averaged")
    parser.add_argument("--output", required=True, metavar="DIR", help="where metrics.json goes")
    parser.add_argument("--export-dir", default=None, metavar="MODEL_FOLDER",
                        help="add the fine-tuned model (LoRA merged) with its heads as the 'predict' signature as a "
                        "new version of this TF Serving model folder")
    args = parser.parse_args(argv)
    settings = FinetuneSettings(tasks=TASKS if args.task == "all" else (args.task,), method=args.method,
                                lora_rank=args.lora_rank, epochs=args.epochs, batch_size=args.batch_size,
                                learning_rate=args.learning_rate, max_residues=args.max_residues, seed=args.seed,
                                probe_seeds=args.probe_seeds)
    model = initial_model(FAMILIES[args.family], args.init_from, log=print, with_head=False)
    result = finetune(model.backbone, args.init_from, args.data_dir, settings, args.limit)
    os.makedirs(args.output, exist_ok=True)
    report = result.report
    for line in describe(report):
        print(line)
    print(f"metrics: {write_metrics(report, args.output)} ({report['trainable_parameters']:,} trainable parameters, "
          f"{report['wall_seconds']:.0f} s)")
    if args.export_dir:
        print(f"fine-tuned model with its 'predict' signature: {export(result, args.export_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
