"""The TFX Trainer's `run_fn` (``run_fn="models.training.run_fn.run_fn"``): our training loop, driven by the
Trainer's FnArgs.

`custom_config` carries the training settings (:data:`SETTINGS`, the same names as `TrainConfig`'s fields, plus
`two_phase` and `checkpoint_root`); `train_args.num_steps` is the number of optimizer updates. TFX gives each
execution a fresh `model_run_dir`, so a rerun of a killed run could not resume from it: checkpoints live in
``<checkpoint_root>/<key>``, where the key hashes the training examples, steps and settings, and the final
checkpoint is copied into `model_run_dir` for the artifact's lineage. The SavedModel of DESIGN §5 goes to
`serving_model_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import tensorflow as tf

from models.training.trainer import BACKBONE_CONFIG, Phase, TrainConfig, Trainer, two_phase_schedule

# custom_config keys passed on to TrainConfig, with their defaults.
SETTINGS: dict[str, Any] = {
    "family": "protbert", "preset": "small", "sequence_length": 512, "global_batch": 32, "two_phase": False,
    "strategy": "default", "tpu": None, "optimizer": "lamb", "learning_rate": 2e-3, "warmup_steps": None,
    "weight_decay": 0.01, "accumulation_steps": 1, "steps_per_execution": 1, "mixed_precision": "none",
    "jit_compile": False, "checkpoint_every": 500, "log_every": 50, "seed": 0, "dropout": None,
}
CHECKPOINT_ROOT = "checkpoint_root"


def training_settings(custom_config: dict[str, Any] | None) -> dict[str, Any]:
    """`SETTINGS` updated from a Trainer's custom_config; unknown keys are refused (a typo must not train the
    defaults silently)."""
    # ai_platform_* keys are the Vertex Trainer's own (its job spec), not training settings.
    given = {key: value for key, value in (custom_config or {}).items()
             if key != CHECKPOINT_ROOT and not key.startswith("ai_platform_")}
    unknown = sorted(set(given) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {sorted(SETTINGS)}")
    return {**SETTINGS, **given}


def checkpoint_dir(train_patterns: list[str], steps: int, settings: dict[str, Any], root: str) -> str:
    """The checkpoint folder of one training job: the same examples, steps and settings resume in it."""
    key = json.dumps({"examples": sorted(train_patterns), "steps": steps, "settings": settings}, sort_keys=True)
    return os.path.join(root, hashlib.sha256(key.encode()).hexdigest()[:16])


def _train_files(patterns: list[str]) -> tuple[str, ...]:
    files = sorted(path for pattern in patterns for path in tf.io.gfile.glob(pattern))
    if not files:
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
    tf.io.gfile.copy(os.path.join(model_dir, BACKBONE_CONFIG), os.path.join(destination, BACKBONE_CONFIG),
                     overwrite=True)
    for folder, _, files in tf.io.gfile.walk(os.path.join(model_dir, "tensorboard")):
        target = os.path.join(destination, os.path.relpath(folder, model_dir))
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(folder, name), os.path.join(target, name), overwrite=True)


def run_fn(fn_args) -> None:
    """Train (or resume) per `fn_args`, write the SavedModel to `fn_args.serving_model_dir`."""
    from serving.signatures import write_saved_model

    if not fn_args.train_steps:
        raise ValueError("set the Trainer's train_args.num_steps: the number of optimizer updates")
    settings = training_settings(fn_args.custom_config)
    root = (fn_args.custom_config or {}).get(CHECKPOINT_ROOT) or fn_args.model_run_dir
    model_dir = checkpoint_dir(list(fn_args.train_files), fn_args.train_steps, settings, root)
    if settings["two_phase"]:
        phases = two_phase_schedule(fn_args.train_steps, settings["global_batch"])
    else:
        phases = (Phase(settings["sequence_length"], fn_args.train_steps, settings["global_batch"]),)
    passed = {key: value for key, value in settings.items()
              if key not in ("family", "preset", "sequence_length", "global_batch", "two_phase")}
    config = TrainConfig(train_files=_train_files(list(fn_args.train_files)), family=settings["family"],
                         preset=settings["preset"], phases=phases, model_dir=model_dir, **passed)
    trainer = Trainer(config)
    print(f"checkpoints: {model_dir}", flush=True)
    trainer.train()
    if trainer.chief:
        write_saved_model(trainer.backbone, fn_args.serving_model_dir)
        _copy_final_checkpoint(model_dir, trainer.manager.latest_checkpoint, fn_args.model_run_dir)
