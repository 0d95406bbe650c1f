"""Masked-LM pretraining with a custom `tf.distribute` loop.

Not `Model.fit`: Keras 3 `fit()` fails under MultiWorkerMirroredStrategy (keras#20585, keras#20329) and
Keras 3's `BackupAndRestore` no longer saves on preemption. The loop here runs the same on the default
strategy, mirrored GPUs, multi-worker clusters and TPUs: datasets come from
``distribute_datasets_from_function`` with the per-replica share of the global batch; each replica's loss
is its masked tokens' cross-entropy divided by the *global* count of masked tokens, so the summed gradients
are the global mean's; ``steps_per_execution`` steps run inside one `tf.function` call.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from models.input_pipeline import MASK_IDS, MASK_WEIGHTS, TOKEN_IDS, InputConfig
from models.encoder_backbone import EncoderBackbone
from models.objectives import task_dataset, task_model
from models.presets import build_backbone, preset_config
from models.training.schedule import WarmupLinearDecay
from models.training.strategy import is_chief, make_strategy

MIXED_PRECISION = ("none", "bfloat16", "float16")
# LAMB is the paper's (huge batches); AdamW takes larger steps per update, which suits small batches.
OPTIMIZERS = {"lamb": keras.optimizers.Lamb, "adamw": keras.optimizers.AdamW}
# Neither LayerNorm parameters nor biases are decayed (as in BERT/LAMB).
NO_WEIGHT_DECAY = ["gamma", "beta", "bias"]


@dataclass(frozen=True)
class Phase:
    """A stretch of training at one sequence length (tokens, with [CLS]/[SEP]) and global batch."""

    sequence_length: int
    steps: int
    global_batch: int


@dataclass(frozen=True)
class TrainConfig:
    train_files: tuple[str, ...]
    family: str
    preset: str
    phases: tuple[Phase, ...]
    model_dir: str
    strategy: str = "default"
    tpu: str | None = None
    optimizer: str = "lamb"
    learning_rate: float = 2e-3  # the peak
    warmup_steps: int | None = None  # None: 10% of all steps
    weight_decay: float = 0.01
    accumulation_steps: int = 1
    steps_per_execution: int = 1
    mixed_precision: str = "none"
    jit_compile: bool = False
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    export_dir: str | None = None
    dropout: float | None = None  # None: the preset's; else for both hidden and attention dropout

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if not self.phases or any(p.steps < 1 or p.global_batch < 1 or p.sequence_length < 3 for p in self.phases):
            raise ValueError(f"every phase needs steps >= 1, global_batch >= 1, sequence_length >= 3: {self.phases}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, not {self.mixed_precision!r}")
        if self.accumulation_steps < 1 or self.steps_per_execution < 1:
            raise ValueError("accumulation_steps and steps_per_execution must be >= 1")
        for phase in self.phases:
            if phase.global_batch % self.accumulation_steps:
                raise ValueError(f"global batch {phase.global_batch} is not divisible by accumulation_steps "
                                 f"{self.accumulation_steps}")

    @property
    def total_steps(self) -> int:
        return sum(phase.steps for phase in self.phases)


def two_phase_schedule(steps: int, global_batch: int, lengths: tuple[int, int] = (512, 2048)) -> tuple[Phase, ...]:
    """The paper's schedule: most steps at length 512, the last quarter at 2048 with a quarter of the batch
    (so a batch holds about as many tokens)."""
    second = max(steps // 4, 1)
    return (Phase(lengths[0], steps - second, global_batch), Phase(lengths[1], second, max(global_batch // 4, 1)))


class _Preempted(Exception):
    pass


def model_weights(model: keras.Model) -> dict[str, keras.Variable]:
    """The model's weights keyed by their Keras paths below the model (``protbert_backbone/…/kernel``).

    Saved in every checkpoint beside the object graph: Keras 3 layers do not expose all their sublayers'
    variables to TF's object-based checkpointing (a MultiHeadAttention's projections are reached only
    through the optimizer), so a model restored without its optimizer needs these stable names.
    """
    return {weight.path.split("/", 1)[-1]: weight for weight in model.weights}


BACKBONE_CONFIG = "backbone_config.json"


def write_backbone_config(backbone, family: str, model_dir: str) -> None:
    """``<model_dir>/backbone_config.json``: what a reader of the checkpoints needs to rebuild the model (the
    family, which names the backbone class and task model, and the backbone's config)."""
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(os.path.join(model_dir, BACKBONE_CONFIG), "w") as handle:
        handle.write(json.dumps({"family": family, "config": backbone.get_config()}, indent=2))


def load_trained_backbone(model_dir: str):
    """The backbone of a training run's latest checkpoint (``--model-dir`` of ``prottrans-train``), and that
    checkpoint's path."""
    from models.presets import BACKBONES

    config_path = os.path.join(model_dir, BACKBONE_CONFIG)
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if not tf.io.gfile.exists(config_path) or latest is None:
        raise FileNotFoundError(f"{model_dir} is not a training directory (no {BACKBONE_CONFIG} or no checkpoint)")
    with tf.io.gfile.GFile(config_path) as handle:
        saved = json.load(handle)
    if "family" not in saved:  # written before other families existed: a ProtBert/ProtAlbert config
        saved = {"family": "protbert", "config": saved}
    backbone = BACKBONES[saved["family"]].from_config(saved["config"])
    model = task_model(saved["family"], backbone)
    model.build({TOKEN_IDS: (None, None)})
    restore_model_weights(model, latest)
    return backbone, latest


def restore_model_weights(model: keras.Model, checkpoint_path: str) -> None:
    """Load the weights of a training checkpoint into a built model of the same config (no optimizer)."""
    tf.train.Checkpoint(weights=model_weights(model)).restore(checkpoint_path).expect_partial().assert_existing_objects_matched()


class Trainer:
    """Builds the model, optimizer and checkpoints in the strategy's scope and runs the phases."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None] = print):
        self.config = config
        self.log = log
        self.strategy = make_strategy(config.strategy, config.tpu)
        self.chief = is_chief(self.strategy)
        if config.mixed_precision != "none":
            keras.config.set_dtype_policy(f"mixed_{config.mixed_precision}")
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.backbone = build_backbone(config.family, config.preset, **self._backbone_overrides())
            self.model = task_model(config.family, self.backbone, self._lanes())
            self.model.build({TOKEN_IDS: (None, None)})
            optimizer = OPTIMIZERS[config.optimizer](
                learning_rate=WarmupLinearDecay(
                    config.learning_rate, self._warmup_steps(), config.total_steps, config.accumulation_steps),
                weight_decay=config.weight_decay,
                gradient_accumulation_steps=config.accumulation_steps if config.accumulation_steps > 1 else None,
            )
            optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
            if config.mixed_precision == "float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(self.model.trainable_variables)
            self.optimizer = optimizer
            self.checkpoint = tf.train.Checkpoint(
                model=self.model, optimizer=self.optimizer, weights=model_weights(self.model))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._checkpoint_dir(), max_to_keep=3, step_counter=self.optimizer.iterations)
        self._preempted = False
        # Clusters coordinate a preemption across workers (all save the same step, then exit); one process
        # handles SIGTERM itself (see train()).
        self._preemption_handler = None
        if config.strategy in ("multi_worker", "tpu"):
            self._preemption_handler = tf.distribute.experimental.PreemptionCheckpointHandler(
                self.strategy.cluster_resolver, self.manager)

    def _lanes(self) -> int:
        """Per-replica micro-batch: a model with memory keeps one memory row per lane, so it must not change."""
        sizes = {phase.global_batch // self.config.accumulation_steps // self.strategy.num_replicas_in_sync
                 for phase in self.config.phases}
        if len(sizes) > 1 and getattr(self.backbone, "memory_length", 0):
            raise ValueError(f"{self.config.family} trains with memory on per-lane streams: it needs one per-replica "
                             "batch for all phases (no --two-phase)")
        return min(sizes)

    def _backbone_overrides(self) -> dict:
        """A learned position table stops at the longest length trained: positions no step ever saw keep their
        random initial values, and a model carrying them would embed longer inputs with noise instead of
        refusing them (the embedders then chunk such sequences). Relative-position families need no cut."""
        from models.presets import BACKBONES

        family = self.config.family
        accepted = inspect.signature(BACKBONES[family]).parameters
        overrides = {}
        if BACKBONES[family] is EncoderBackbone:
            longest = max(phase.sequence_length for phase in self.config.phases)
            overrides["max_sequence_length"] = min(longest, preset_config(family, self.config.preset)[
                "max_sequence_length"])
        if self.config.dropout is not None:
            overrides.update({key: self.config.dropout for key in ("dropout", "attention_dropout") if key in accepted})
        return overrides

    def _warmup_steps(self) -> int:
        if self.config.warmup_steps is not None:
            return self.config.warmup_steps
        return max(1, self.config.total_steps // 10)

    def _checkpoint_dir(self) -> str:
        directory = os.path.join(self.config.model_dir, "checkpoints")
        if self.chief:
            return directory
        return os.path.join(directory, f"worker_temp_{self.strategy.cluster_resolver.task_id}")

    @property
    def step(self) -> int:
        """Optimizer updates done so far (restored from the checkpoint on resume)."""
        return int(self.optimizer.iterations.numpy())

    def restore(self) -> int:
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            self.log(f"resumed from {self.manager.latest_checkpoint} at step {self.step}")
        return self.step

    def train(self) -> dict[str, float]:
        """Run (or finish) every phase; returns the last logged metrics."""
        self.restore()
        if self.chief:
            write_backbone_config(self.backbone, self.config.family, self.config.model_dir)
        previous_handler = signal.getsignal(signal.SIGTERM)
        if self._preemption_handler is None:
            signal.signal(signal.SIGTERM, self._on_sigterm)
        metrics: dict[str, float] = {}
        try:
            start_of_phase = 0
            for index, phase in enumerate(self.config.phases):
                end_of_phase = start_of_phase + phase.steps
                if self.step < end_of_phase:
                    metrics = self._train_phase(index, phase, end_of_phase) or metrics
                start_of_phase = end_of_phase
        except _Preempted:
            self.manager.save(checkpoint_number=self.step)
            self.log(f"preempted (SIGTERM): checkpoint saved at step {self.step}; rerun the same command to resume")
            raise SystemExit(143) from None
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
        if self._latest_step() != self.step:
            self.manager.save(checkpoint_number=self.step)
        if self.config.export_dir and self.chief:
            from serving.signatures import export_saved_model

            path = export_saved_model(self.backbone, self.config.export_dir)
            self.log(f"exported SavedModel to {path}")
        return metrics

    def _latest_step(self) -> int | None:
        latest = self.manager.latest_checkpoint
        return int(latest.rsplit("-", 1)[1]) if latest else None

    def _on_sigterm(self, signum, frame):
        self._preempted = True

    def _dataset(self, phase: Phase):
        micro_batch = phase.global_batch // self.config.accumulation_steps

        def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
            input_config = InputConfig(
                sequence_length=phase.sequence_length,
                batch_size=context.get_per_replica_batch_size(micro_batch),
                seed=self.config.seed + self.step,  # a resumed run does not replay the data it has seen
            )
            return task_dataset(self.config.family, self.backbone)(self.config.train_files, input_config, context)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _train_phase(self, index: int, phase: Phase, end_of_phase: int) -> dict[str, float]:
        config = self.config
        self.log(f"phase {index + 1}/{len(config.phases)}: length {phase.sequence_length}, global batch "
                 f"{phase.global_batch}, steps {self.step}→{end_of_phase} on {self.strategy.num_replicas_in_sync} "
                 f"replica(s)")
        iterator = iter(self._dataset(phase))
        train_steps = self._train_function()
        writer = tf.summary.create_file_writer(os.path.join(config.model_dir, "tensorboard")) if self.chief \
            else tf.summary.create_noop_writer()
        totals = np.zeros(4)
        last_log, last_time, metrics = self.step, time.perf_counter(), {}
        while self.step < end_of_phase:
            updates = min(config.steps_per_execution, end_of_phase - self.step)
            micro_steps = tf.constant(updates * config.accumulation_steps)
            if self._preemption_handler is not None:
                totals += self._preemption_handler.run(train_steps, iterator, micro_steps).numpy()
            else:
                totals += train_steps(iterator, micro_steps).numpy()
            step = self.step
            if step - last_log >= config.log_every or step == end_of_phase:
                now = time.perf_counter()
                metrics = self._summarise(totals, now - last_time, phase)
                self._report(step, end_of_phase, metrics, writer)
                totals[:] = 0
                last_log, last_time = step, now
            if step % config.checkpoint_every < updates or self._preempted:
                self.manager.save(checkpoint_number=step)
            if self._preempted:
                raise _Preempted
        return metrics

    def _train_function(self):
        model, optimizer, strategy = self.model, self.optimizer, self.strategy

        def loss_and_gradients(batch, global_weight):
            with tf.GradientTape() as tape:
                inputs = {key: value for key, value in batch.items() if key not in (MASK_IDS, MASK_WEIGHTS)}
                logits = model(inputs, training=True)
                logits = tf.cast(logits, tf.float32)
                losses = keras.losses.sparse_categorical_crossentropy(batch[MASK_IDS], logits, from_logits=True)
                weights = batch[MASK_WEIGHTS]
                loss = tf.reduce_sum(losses * weights) / tf.maximum(global_weight, 1.0)
                scaled = optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, model.trainable_variables)
            correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), batch[MASK_IDS]), tf.float32)
            stats = tf.stack([
                tf.reduce_sum(losses * weights), tf.reduce_sum(weights), tf.reduce_sum(correct * weights),
                tf.reduce_sum(tf.cast(batch[TOKEN_IDS] != 0, tf.float32)),
            ])
            return gradients, stats

        if self.config.jit_compile:
            # Only the pure computation is compiled: it holds no cross-replica synchronisation.
            loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

        def replica_step(batch):
            context = tf.distribute.get_replica_context()
            global_weight = context.all_reduce("sum", tf.reduce_sum(batch[MASK_WEIGHTS]))
            gradients, stats = loss_and_gradients(batch, global_weight)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return stats

        @tf.function
        def train_steps(iterator, micro_steps):
            totals = tf.zeros([4])
            for _ in tf.range(micro_steps):
                stats = strategy.run(replica_step, args=(next(iterator),))
                totals += strategy.reduce("sum", stats, axis=None)
            return totals

        return train_steps

    def _summarise(self, totals: np.ndarray, seconds: float, phase: Phase) -> dict[str, float]:
        loss_sum, weight, correct, tokens = totals
        loss = loss_sum / max(weight, 1.0)
        learning_rate = self.optimizer.learning_rate
        return {
            "loss": float(loss),
            "masked_accuracy": float(correct / max(weight, 1.0)),
            "perplexity": float(math.exp(min(loss, 50.0))),
            "learning_rate": float(learning_rate.numpy() if hasattr(learning_rate, "numpy") else learning_rate),
            "tokens_per_second": float(tokens / max(seconds, 1e-9)),
            "sequence_length": float(phase.sequence_length),
        }

    def _report(self, step: int, end: int, metrics: dict[str, float], writer) -> None:
        with writer.as_default(step=step):
            for name, value in metrics.items():
                tf.summary.scalar(name, value)
        writer.flush()
        self.log(f"step {step:>7}/{end}  loss {metrics['loss']:.4f}  acc {metrics['masked_accuracy']:.3f}  "
                 f"ppl {metrics['perplexity']:.2f}  lr {metrics['learning_rate']:.2e}  "
                 f"tokens/s {metrics['tokens_per_second']:,.0f}")

