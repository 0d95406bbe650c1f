"""The TFX Trainer's `run_fn` (``run_fn="models.training.run_fn.run_fn"``): our training loop, driven by the
Trainer's FnArgs.

`custom_config` carries the training settings as a dict under ``training`` (:class:`TrainingSettings`), and
``checkpoint_root``; `train_args.num_steps` is the number of optimizer updates (it replaces the settings' steps). TFX gives each
execution a fresh `model_run_dir`, so a rerun of a killed run could not resume from it: checkpoints live in
``<checkpoint_root>/<key>``, where the key hashes the training examples, steps and settings, and the final
checkpoint is copied into `model_run_dir` for the artifact's lineage. The serving SavedModel
(:mod:`models.export.signatures`) goes to `serving_model_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import tensorflow as tf

from models.export.signatures import head_signatures, write_saved_model
from models.training.checkpoints import BACKBONE_CONFIG
from models.training.settings import TrainingSettings
from models.training.summary import SUMMARY_FILE
from models.training.trainer import TrainJob, build_trainer

TRAINING = "training"
CHECKPOINT_ROOT = "checkpoint_root"
# The digest of the files of `init_from`: in the Trainer's exec properties, so that TFX's cache and the checkpoint
# folder's key follow the starting checkpoint's contents, not its path.
INIT_FROM_DIGEST = "init_from_digest"


def custom_config(settings: TrainingSettings, checkpoint_root: str) -> dict[str, Any]:
    """The Trainer's custom_config for `settings`."""
    config = {TRAINING: settings.to_dict(), CHECKPOINT_ROOT: checkpoint_root}
    if settings.init_from:
        config[INIT_FROM_DIGEST] = folder_digest(settings.init_from)
    return config


def folder_digest(directory: str) -> str:
    """SHA-256 over the relative names and contents of every file below `directory`."""
    if not tf.io.gfile.isdir(directory):
        raise ValueError(f"training.init_from {directory}: no such folder")
    digest = hashlib.sha256()
    for folder, _, names in sorted(tf.io.gfile.walk(directory)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, directory).encode() + b"\0")
            with tf.io.gfile.GFile(path, "rb") as handle:
                while chunk := handle.read(1 << 24):
                    digest.update(chunk)
    return digest.hexdigest()


def training_settings(custom: dict[str, Any] | None, steps: int | None = None) -> TrainingSettings:
    """The settings a Trainer's custom_config carries (keys of the Vertex Trainer's own, ``ai_platform_*``, and
    the checkpoint root aside); unknown keys are refused. `steps`: the Trainer's train_args.num_steps."""
    unknown = sorted(key for key in (custom or {}) if key not in (TRAINING, CHECKPOINT_ROOT, INIT_FROM_DIGEST)
                     and not key.startswith("ai_platform_"))
    if unknown:
        raise ValueError(f"unknown Trainer custom_config keys {unknown}: training settings go under {TRAINING!r}")
    values = dict((custom or {}).get(TRAINING, {}))
    if steps:
        values["steps"] = steps
    return TrainingSettings.from_dict(values)


def checkpoint_dir(train_patterns: list[str], settings: TrainingSettings, root: str, init_digest: str = "") -> str:
    """The checkpoint folder of one training job: the same examples, settings (steps included) and starting
    checkpoint contents resume in it."""
    key = json.dumps({"examples": sorted(train_patterns), "settings": settings.to_dict(),
                      **({"init_from": init_digest} if init_digest else {})}, sort_keys=True)
    return os.path.join(root, hashlib.sha256(key.encode()).hexdigest()[:16])


def _files(patterns: list[str], required: bool = True) -> tuple[str, ...]:
    files = sorted(path for pattern in patterns for path in tf.io.gfile.glob(pattern))
    if not files and required:
        raise ValueError(f"no training examples match {patterns}")
    return tuple(files)


def _copy_final_checkpoint(model_dir: str, checkpoint_path: str, destination: str) -> None:
    """The run's last checkpoint, backbone config and TensorBoard logs, as a `prottrans-train --model-dir`."""
    tf.io.gfile.makedirs(os.path.join(destination, "checkpoints"))
    prefix = os.path.basename(checkpoint_path)
    for path in tf.io.gfile.glob(checkpoint_path + ".*"):
        tf.io.gfile.copy(path, os.path.join(destination, "checkpoints", os.path.basename(path)), overwrite=True)
    with tf.io.gfile.GFile(os.path.join(destination, "checkpoints", "checkpoint"), "w") as handle:
        handle.write(f'model_checkpoint_path: "{prefix}"\nall_model_checkpoint_paths: "{prefix}"\n')
    for name in (BACKBONE_CONFIG, SUMMARY_FILE):
        tf.io.gfile.copy(os.path.join(model_dir, name), os.path.join(destination, name), overwrite=True)
    for folder, _, files in tf.io.gfile.walk(os.path.join(model_dir, "tensorboard")):
        target = os.path.join(destination, os.path.relpath(folder, model_dir))
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(folder, name), os.path.join(target, name), overwrite=True)


def run_fn(fn_args) -> None:
    """Train (or resume) per `fn_args`, write the SavedModel to `fn_args.serving_model_dir`."""
    if not fn_args.train_steps:
        raise ValueError("set the Trainer's train_args.num_steps: the number of optimizer updates")
    settings = training_settings(fn_args.custom_config, fn_args.train_steps)
    root = (fn_args.custom_config or {}).get(CHECKPOINT_ROOT) or fn_args.model_run_dir
    model_dir = checkpoint_dir(list(fn_args.train_files), settings, root,
                               (fn_args.custom_config or {}).get(INIT_FROM_DIGEST, ""))
    valid_files = _files(list(fn_args.eval_files or []), required=False)
    trainer = build_trainer(TrainJob(settings, _files(list(fn_args.train_files)), model_dir, valid_files=valid_files))
    print(f"checkpoints: {model_dir}", flush=True)
    trainer.train()
    if trainer.state.chief:
        write_saved_model(trainer.state.backbone, fn_args.serving_model_dir,
                          extra_assets={SUMMARY_FILE: trainer.summary.to_dict()},
                          head=head_signatures(trainer.objective, trainer.state.model))
        _copy_final_checkpoint(model_dir, trainer.state.manager.latest_checkpoint, fn_args.model_run_dir)
