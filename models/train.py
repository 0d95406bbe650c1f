"""`prottrans-train` (DESIGN §7): masked-LM pretraining on the Beam job's TFRecords; resumes from --model-dir."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import sys
from typing import Sequence

import tensorflow as tf

from beam_jobs import schema
from models.presets import FAMILIES
from models.training.strategy import STRATEGIES
from models.training.trainer import MIXED_PRECISION, OPTIMIZERS, Phase, TrainConfig, Trainer, two_phase_schedule


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prottrans-train", description=__doc__)
    parser.add_argument("--data", required=True, metavar="DIR", help="output folder of prottrans-preprocess")
    parser.add_argument("--family", required=True, choices=sorted(FAMILIES))
    parser.add_argument("--preset", required=True, help="tiny, small or paper (or the family's name)")
    parser.add_argument("--steps", type=int, required=True, help="optimizer updates in all")
    parser.add_argument("--global-batch", type=int, required=True, help="sequences per optimizer update")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default")
    parser.add_argument("--tpu", default=None, help="TPU name or address for --strategy tpu")
    parser.add_argument("--model-dir", required=True, metavar="DIR", help="checkpoints and TensorBoard logs")
    parser.add_argument("--export-dir", default=None, metavar="DIR",
                        help="TF Serving model folder: a new numbered SavedModel version is added at the end")
    parser.add_argument("--sequence-length", type=int, default=512, help="tokens per sequence, with [CLS]/[SEP]")
    parser.add_argument("--two-phase", action="store_true",
                        help="the paper's schedule: 3/4 of the steps at 512, the last 1/4 at 2048 with 1/4 of the batch")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="lamb",
                        help="lamb (the paper's, for large batches) or adamw (small batches)")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak, after warm-up")
    parser.add_argument("--dropout", type=float, default=None,
                        help="hidden and attention dropout instead of the preset's (0 for short runs)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="default: 10%% of --steps")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--accumulation-steps", type=int, default=1)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION, default="none",
                        help="bfloat16 for TPUs, float16 (with loss scaling) for GPUs")
    parser.add_argument("--jit-compile", action="store_true", help="XLA-compile the forward and backward pass")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    pattern = os.path.join(args.data, schema.TRAIN, f"{schema.SHARD_PREFIX}-*")
    files = tuple(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise ValueError(f"no training shards match {pattern}: is --data the output folder of prottrans-preprocess?")
    if args.two_phase:
        phases = two_phase_schedule(args.steps, args.global_batch)
    else:
        phases = (Phase(args.sequence_length, args.steps, args.global_batch),)
    return TrainConfig(
        train_files=files, family=args.family, preset=args.preset, phases=phases, model_dir=args.model_dir,
        strategy=args.strategy, tpu=args.tpu, optimizer=args.optimizer, learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, accumulation_steps=args.accumulation_steps,
        steps_per_execution=args.steps_per_execution, mixed_precision=args.mixed_precision,
        jit_compile=args.jit_compile, checkpoint_every=args.checkpoint_every, log_every=args.log_every,
        seed=args.seed, export_dir=args.export_dir, dropout=args.dropout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
        trainer = Trainer(config)
    except ValueError as error:
        print(f"prottrans-train: error: {error}", file=sys.stderr)
        return 2
    trainer.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
