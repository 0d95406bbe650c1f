"""`prottrans-train`: pretraining on the Beam job's TFRecords; resumes from --model-dir; with --export-dir, adds
the trained model as a new TF Serving version."""

from __future__ import annotations

import os

from beam_jobs.console import VERBOSE_FLAG, VERBOSE_HELP, guarded, quiet_start

quiet_start()  # before TensorFlow is imported

import argparse
import sys
from typing import Sequence

import tensorflow as tf

from beam_jobs import schema
from models.export.signatures import export_saved_model, head_signatures, latest_version_holding
from models.training import settings as training_settings
from models.training.summary import SUMMARY_FILE
from models.training.trainer import TrainJob, TrainingDiverged, build_trainer


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prottrans-train", description=__doc__)
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--data", required=True, metavar="DIR", help="output folder of prottrans-preprocess")
    parser.add_argument("--model-dir", required=True, metavar="DIR", help="checkpoints and TensorBoard logs")
    parser.add_argument("--export-dir", default=None, metavar="DIR",
                        help="TF Serving model folder: a new numbered SavedModel version is added at the end")
    training_settings.add_arguments(parser)
    return parser.parse_args(argv)


def split_files(data_dir: str, split: str) -> tuple[str, ...]:
    pattern = os.path.join(data_dir, split, f"{schema.SHARD_PREFIX}-*")
    files = tuple(sorted(tf.io.gfile.glob(pattern)))
    if not files and split == schema.TRAIN:
        raise ValueError(f"no training shards match {pattern}: is --data the output folder of prottrans-preprocess?")
    return files


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("prottrans-train", lambda: _main(argv), argv)


def _main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        job = TrainJob(training_settings.from_arguments(args), split_files(args.data, schema.TRAIN), args.model_dir,
                       valid_files=split_files(args.data, schema.VALID))
        trainer = build_trainer(job)
        trainer.train()
    except ValueError as error:  # bad settings, unusable data, a model dir of another shape: named, no traceback
        print(f"prottrans-train: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"prottrans-train: error: {error}", file=sys.stderr)
        return 1
    if args.export_dir and trainer.state.chief:
        unchanged = latest_version_holding(trainer.state.backbone, args.export_dir)
        if unchanged:
            print(f"not exported: the latest version, {unchanged}, already holds this model")
        else:
            try:
                path = export_saved_model(trainer.state.backbone, args.export_dir,
                                          extra_assets={SUMMARY_FILE: trainer.summary.to_dict()},
                                          head=head_signatures(trainer.objective, trainer.state.model))
            except ValueError as error:  # non-finite weights are never exported
                print(f"prottrans-train: error: {error}", file=sys.stderr)
                return 1
            print(f"exported SavedModel to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
