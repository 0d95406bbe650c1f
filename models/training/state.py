"""The state of a training run, built in the strategy's scope: the distribution strategy, backbone and task model,
optimizer with its schedule, and the checkpoint with its manager (resuming from the latest checkpoint)."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Callable

import keras
import tensorflow as tf

from models.export.signatures import next_version
from models.family import Family
from models.input_pipeline import TOKEN_IDS
from models.networks.backbone import Backbone
from models.registry import get_family
from models.training.checkpoints import config_changes, is_saved_model, is_training_dir, load_exported_model, \
    load_trained_model, model_weights
from models.training.optimizers import build_optimizer
from models.training.settings import TrainingSettings
from models.training.strategy import is_chief, make_strategy


@dataclass
class TrainingState:
    """What a run trains and saves. `chief` writes the shared files; `manager` keeps the last 3 checkpoints."""

    family: Family
    strategy: tf.distribute.Strategy
    backbone: Backbone
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    chief: bool

    @property
    def step(self) -> int:
        """Optimizer updates done so far (restored from the checkpoint on resume)."""
        return int(self.optimizer.iterations.numpy())

    def restore(self, model_dir: str, log: Callable[[str], None] = print) -> str | None:
        """Load the latest readable checkpoint, if any, after checking it holds a model of this shape; returns its
        path. A damaged newest checkpoint (a truncated file, a lost shard) is passed over with a warning for the one
        before it; none readable is a ValueError naming them."""
        if not self.manager.checkpoints:
            return None
        changes = config_changes(self.backbone, self.family.name, model_dir)
        if changes:
            raise ValueError(
                f"{model_dir} holds checkpoints of another model shape ({'; '.join(changes)}; "
                "max_sequence_length follows --sequence-length): resume with that run's settings or use a new "
                "model dir")
        damaged = []
        for path in reversed(self.manager.checkpoints):
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError, IndexError) as error:  # IndexError: cut short
                reason = " ".join(str(error).split())[:200]
                log(f"warning: checkpoint {path} is not readable ({reason}); trying the one before it")
                damaged.append(path)
                continue
            return path
        raise ValueError(f"no checkpoint in {model_dir} is readable ({', '.join(damaged)}): move them away to "
                         "start again")


def build_training_state(settings: TrainingSettings, model_dir: str, phases, total_steps: int,
                         log: Callable[[str], None] = print) -> TrainingState:
    """The state of a run of `settings` over `phases`: sets the global dtype policy and seed, then builds the
    strategy, the family's backbone and its objective's task model (new, or from `settings.init_from`), the
    optimizer and the checkpoint."""
    family = get_family(settings.family)
    strategy = make_strategy(settings.strategy, settings.tpu)
    if settings.mixed_precision != "none":
        keras.config.set_dtype_policy(f"mixed_{settings.mixed_precision}")
    keras.utils.set_random_seed(settings.seed)
    with strategy.scope():
        if settings.init_from:
            model = initial_model(family, settings.init_from, log)
            backbone = model.backbone
            model = family.objective.with_lanes(model, _lanes(family, backbone, settings, phases, strategy))
            _check_position_table(family, backbone, phases, settings.init_from)
        else:
            backbone = family.build_backbone(settings.preset, **_backbone_overrides(family, settings, phases))
            model = family.objective.task_model(backbone, _lanes(family, backbone, settings, phases, strategy))
            model.build({TOKEN_IDS: (None, None)})
        # Keras clips before it sums the replicas' gradients: the trainer hands every replica the global
        # gradient over the replica count, so the norm of that share is clipped at the same share of the limit.
        clip_norm = settings.gradient_clip_norm / strategy.num_replicas_in_sync
        optimizer = build_optimizer(
            model.trainable_variables, name=settings.optimizer, learning_rate=settings.learning_rate,
            warmup_steps=_warmup_steps(settings, total_steps), total_steps=total_steps,
            weight_decay=settings.weight_decay, epsilon=settings.adam_epsilon, clip_norm=clip_norm,
            accumulation_steps=settings.accumulation_steps, loss_scaling=settings.mixed_precision == "float16")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, weights=model_weights(model))
    chief = is_chief(strategy)
    manager = tf.train.CheckpointManager(checkpoint, _checkpoint_dir(model_dir, strategy, chief), max_to_keep=3,
                                         step_counter=optimizer.iterations)
    return TrainingState(family, strategy, backbone, model, optimizer, checkpoint, manager, chief)


def initial_model(family: Family, directory: str, log: Callable[[str], None] = print,
                  with_head: bool = True) -> keras.Model:
    """The task model a run continues from, built in the current strategy's scope: a `prottrans-train` model folder's
    latest checkpoint, a SavedModel of ours (`with_head`: one written with its objective's head, as training
    needs), or a transformers checkpoint folder of `family` imported whole (its config, vocabulary and LM head)."""
    if is_training_dir(directory):
        name, model, latest = load_trained_model(directory)
        if name != family.name:
            raise ValueError(f"--init-from {directory} holds a {name} model, not {family.name}: set --family {name}")
        log(f"initialised from {latest}")
        return model
    latest = os.path.join(directory, str(next_version(directory) - 1))  # a TF Serving model folder: its latest
    if not is_saved_model(directory) and is_saved_model(latest):
        directory = latest
    if is_saved_model(directory):
        model = load_exported_model(family, directory, with_head)
        log(f"initialised from the SavedModel {directory}")
        return model
    if not os.path.isdir(directory):
        raise ValueError(f"--init-from {directory}: no such folder (a transformers checkpoint folder, a "
                         "prottrans-train model folder or a SavedModel of ours)")
    if family.import_checkpoint is None:
        raise ValueError(f"--init-from: {family.name} has no published checkpoint format to import")
    model = family.import_checkpoint(directory, log=log)
    log(f"initialised from the {family.name} checkpoint in {directory}")
    return model


def _check_position_table(family: Family, backbone: Backbone, phases, directory: str) -> None:
    longest = max(phase.sequence_length for phase in phases)
    if family.position_table and longest > backbone.max_sequence_length:
        raise ValueError(f"--init-from {directory}: its position table holds {backbone.max_sequence_length} positions, "
                         f"fewer than the {longest} tokens a training sequence holds: lower --sequence-length")


def _lanes(family: Family, backbone: Backbone, settings: TrainingSettings, phases, strategy) -> int:
    """Per-replica micro-batch: a model with memory keeps one memory row per lane, so it must not change."""
    sizes = {phase.global_batch // settings.accumulation_steps // strategy.num_replicas_in_sync for phase in phases}
    if len(sizes) > 1 and family.objective.keeps_memory(backbone):
        raise ValueError(f"{family.name} trains with memory on per-lane streams: it needs one per-replica batch for "
                         "all phases (no --two-phase)")
    return min(sizes)


def _backbone_overrides(family: Family, settings: TrainingSettings, phases) -> dict:
    """A learned position table stops at the longest length trained: positions no step ever saw keep their
    random initial values, and a model carrying them would embed longer inputs with noise instead of
    refusing them (the embedders then chunk such sequences). Relative-position families need no cut."""
    accepted = inspect.signature(family.backbone).parameters
    overrides = {}
    if family.position_table:
        longest = max(phase.sequence_length for phase in phases)
        overrides["max_sequence_length"] = min(longest, family.preset_config(settings.preset)["max_sequence_length"])
    if settings.dropout is not None:
        overrides.update({key: settings.dropout for key in ("dropout", "attention_dropout") if key in accepted})
    return overrides


def _warmup_steps(settings: TrainingSettings, total_steps: int) -> int:
    return settings.warmup_steps if settings.warmup_steps is not None else max(1, total_steps // 10)


def _checkpoint_dir(model_dir: str, strategy: tf.distribute.Strategy, chief: bool) -> str:
    directory = os.path.join(model_dir, "checkpoints")
    return directory if chief else os.path.join(directory, f"worker_temp_{strategy.cluster_resolver.task_id}")
