"""Pretraining of any family on its own objective (masked LM, permutation LM, causal LM with memory, denoising)
with a custom `tf.distribute` loop; it reports the loss against the objective's no-context floor.

Not `Model.fit`: Keras 3 `fit()` fails under MultiWorkerMirroredStrategy (keras#20585, keras#20329) and
Keras 3's `BackupAndRestore` no longer saves on preemption. The loop here runs the same on the default
strategy, mirrored GPUs, multi-worker clusters and TPUs: datasets come from
``distribute_datasets_from_function`` with the per-replica share of the global batch; each replica's loss
is its scored targets' cross-entropy divided by the *global* count of scored targets, so the summed gradients
are the global mean's; ``steps_per_execution`` steps run inside one `tf.function` call.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from models.input_pipeline import TOKEN_IDS, InputConfig, first_unreadable_file
from models.objectives.objective import TARGET_IDS, TARGET_WEIGHTS, Objective
from models.registry import get_family
from models.training.checkpoints import config_changes, model_weights, write_backbone_config
from models.training.floor import no_context_floor, residue_counts
from models.training.schedule import WarmupLinearDecay
from models.training.settings import OPTIMIZERS, Phase, TrainingSettings
from models.training.summary import TrainingSummary, validation_result
from models.training.strategy import is_chief, make_strategy

# Neither LayerNorm parameters nor biases are decayed (as in BERT/LAMB).
NO_WEIGHT_DECAY = ["gamma", "beta", "bias"]
# After SIGTERM, the seconds a step may take to finish before the process exits without a checkpoint (a step
# that waits for input that never comes would otherwise hold it forever).
SIGTERM_GRACE_S = 60.0


class TrainingDataError(ValueError):
    """The training data cannot be used; the message names the file or the split."""


def unreadable_data_error(error: tf.errors.DataLossError, files: tuple[str, ...]) -> TrainingDataError:
    """`error` (TensorFlow's, which names no file) as one naming the shard that cannot be read."""
    damaged = first_unreadable_file(files)
    where = f"{damaged[0]}: {damaged[1]}" if damaged else f"a training or valid shard: {error.message}"
    return TrainingDataError(f"cannot read {where}; regenerate it (prottrans-preprocess) or leave it out (a "
                             "resumed run keeps its last checkpoint)")


@dataclass(frozen=True)
class TrainJob:
    """One training run: its settings, the TFRecord shards it reads, the folder of its checkpoints and logs, and
    its phases (default: the settings')."""

    settings: TrainingSettings
    train_files: tuple[str, ...]
    model_dir: str
    phases: tuple[Phase, ...] = ()
    valid_files: tuple[str, ...] = ()  # none: no validation loss (and no valid context gain in the summary)

    def __post_init__(self):
        if not self.train_files:
            raise ValueError("no training files")
        object.__setattr__(self, "phases", self.phases or self.settings.phases())
        if any(p.steps < 1 or p.global_batch < 1 or p.sequence_length < 3 for p in self.phases):
            raise ValueError(f"every phase needs steps >= 1, global_batch >= 1, sequence_length >= 3: {self.phases}")
        for phase in self.phases:
            if phase.global_batch % self.settings.accumulation_steps:
                raise ValueError(f"global batch {phase.global_batch} is not divisible by accumulation_steps "
                                 f"{self.settings.accumulation_steps}")

    @property
    def total_steps(self) -> int:
        return sum(phase.steps for phase in self.phases)


class _Preempted(Exception):
    pass


class Trainer:
    """Builds the model, optimizer and checkpoints in the strategy's scope and runs the phases."""

    def __init__(self, job: TrainJob, log: Callable[[str], None] = print):
        self.job = job
        self.settings = config = job.settings
        self.family = get_family(config.family)
        self.log = log
        self.strategy = make_strategy(config.strategy, config.tpu)
        self.chief = is_chief(self.strategy)
        if config.mixed_precision != "none":
            keras.config.set_dtype_policy(f"mixed_{config.mixed_precision}")
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.backbone = self.family.build_backbone(config.preset, **self._backbone_overrides())
            self.model = self.family.objective.task_model(self.backbone, self._lanes())
            self.model.build({TOKEN_IDS: (None, None)})
            optimizer = OPTIMIZERS[config.optimizer](
                learning_rate=WarmupLinearDecay(
                    config.learning_rate, self._warmup_steps(), job.total_steps, config.accumulation_steps),
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
        try:
            counts, proteins = residue_counts(job.train_files)
            valid_records = residue_counts(job.valid_files, limit=1)[1] if job.valid_files else 0
        except tf.errors.DataLossError as error:
            raise unreadable_data_error(error, (*job.train_files, *job.valid_files)) from None
        if not proteins:
            raise TrainingDataError(f"the training split holds no record ({len(job.train_files)} file(s), e.g. "
                                    f"{sorted(job.train_files)[0]}): nothing to train on")
        self.floor = no_context_floor(self.family.objective, counts, proteins)
        self.log(f"no-context floor of {self.family.objective.name}: {self.floor:.4f} nats (from the training "
                 "split's residue composition)")
        self.summary = TrainingSummary.load_or_new(job.model_dir, self.family, self.floor)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._checkpoint_dir(), max_to_keep=3, step_counter=self.optimizer.iterations)
        self._preempted = False
        self._sigterm_watchdog: threading.Timer | None = None
        self._eval = None
        if job.valid_files and not valid_records:
            self.log("the valid split holds no record: no validation loss, no valid context gain")
            self.job = job = dataclasses.replace(job, valid_files=())
        # Clusters coordinate a preemption across workers (all save the same step, then exit); one process
        # handles SIGTERM itself (see train()).
        self._preemption_handler = None
        if config.strategy in ("multi_worker", "tpu"):
            self._preemption_handler = tf.distribute.experimental.PreemptionCheckpointHandler(
                self.strategy.cluster_resolver, self.manager)

    def _lanes(self) -> int:
        """Per-replica micro-batch: a model with memory keeps one memory row per lane, so it must not change."""
        sizes = {phase.global_batch // self.settings.accumulation_steps // self.strategy.num_replicas_in_sync
                 for phase in self.job.phases}
        if len(sizes) > 1 and self.family.objective.keeps_memory(self.backbone):
            raise ValueError(f"{self.family.name} trains with memory on per-lane streams: it needs one per-replica "
                             "batch for all phases (no --two-phase)")
        return min(sizes)

    def _backbone_overrides(self) -> dict:
        """A learned position table stops at the longest length trained: positions no step ever saw keep their
        random initial values, and a model carrying them would embed longer inputs with noise instead of
        refusing them (the embedders then chunk such sequences). Relative-position families need no cut."""
        accepted = inspect.signature(self.family.backbone).parameters
        overrides = {}
        if self.family.position_table:
            longest = max(phase.sequence_length for phase in self.job.phases)
            overrides["max_sequence_length"] = min(
                longest, self.family.preset_config(self.settings.preset)["max_sequence_length"])
        if self.settings.dropout is not None:
            overrides.update({key: self.settings.dropout for key in ("dropout", "attention_dropout") if key in accepted})
        return overrides

    def _warmup_steps(self) -> int:
        if self.settings.warmup_steps is not None:
            return self.settings.warmup_steps
        return max(1, self.job.total_steps // 10)

    def _checkpoint_dir(self) -> str:
        directory = os.path.join(self.job.model_dir, "checkpoints")
        if self.chief:
            return directory
        return os.path.join(directory, f"worker_temp_{self.strategy.cluster_resolver.task_id}")

    @property
    def step(self) -> int:
        """Optimizer updates done so far (restored from the checkpoint on resume)."""
        return int(self.optimizer.iterations.numpy())

    def restore(self) -> int:
        if self.manager.latest_checkpoint:
            changes = config_changes(self.backbone, self.family.name, self.job.model_dir)
            if changes:
                raise ValueError(
                    f"{self.job.model_dir} holds checkpoints of another model shape ({'; '.join(changes)}; "
                    "max_sequence_length follows --sequence-length): resume with that run's settings or use a new "
                    "model dir")
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            self.log(f"resumed from {self.manager.latest_checkpoint} at step {self.step}")
        return self.step

    def train(self) -> dict[str, float]:
        """Run (or finish) every phase; returns the last logged metrics."""
        self.restore()
        if self.chief:
            write_backbone_config(self.backbone, self.family.name, self.job.model_dir)
        previous_handler = signal.getsignal(signal.SIGTERM)
        if self._preemption_handler is None:
            signal.signal(signal.SIGTERM, self._on_sigterm)
        metrics: dict[str, float] = {}
        try:
            start_of_phase = 0
            for index, phase in enumerate(self.job.phases):
                end_of_phase = start_of_phase + phase.steps
                if self.step < end_of_phase:
                    metrics = self._train_phase(index, phase, end_of_phase) or metrics
                start_of_phase = end_of_phase
        except tf.errors.DataLossError as error:
            raise unreadable_data_error(error, (*self.job.train_files, *self.job.valid_files)) from None
        except _Preempted:
            self.manager.save(checkpoint_number=self.step)
            self.log(f"preempted (SIGTERM): checkpoint saved at step {self.step}; rerun the same command to resume")
            raise SystemExit(143) from None
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
        if self._latest_step() != self.step:
            self.manager.save(checkpoint_number=self.step)
        if self.job.valid_files and self.summary.last_valid_step != self.step:
            self._validate(self.job.phases[-1])
        if self.chief:
            self.summary.write(self.job.model_dir)
        return metrics

    def _latest_step(self) -> int | None:
        latest = self.manager.latest_checkpoint
        return int(latest.rsplit("-", 1)[1]) if latest else None

    def _on_sigterm(self, signum, frame):
        self._preempted = True
        if self._sigterm_watchdog is None:
            self._sigterm_watchdog = threading.Timer(SIGTERM_GRACE_S, self._exit_unresponsive)
            self._sigterm_watchdog.daemon = True
            self._sigterm_watchdog.start()

    def _exit_unresponsive(self) -> None:
        self.log(f"SIGTERM: no step finished within {SIGTERM_GRACE_S:.0f} s (waiting for input?); exiting without a "
                 f"new checkpoint (the last one is kept)")
        os._exit(143)

    def _dataset(self, phase: Phase, validation: bool = False):
        """The distributed batches of `phase`: the train split sharded across input pipelines, or the valid
        split's fixed batches, which every replica reads whole (a valid split may have fewer files than there
        are input pipelines; the summed sums and counts keep the mean and its interval unchanged)."""
        micro_batch = phase.global_batch // self.settings.accumulation_steps
        files = self.job.valid_files if validation else self.job.train_files
        # A resumed run does not replay the training data it has seen; validation reads the same batches always.
        seed = self.settings.seed + (0 if validation else self.step)

        def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
            input_config = InputConfig(sequence_length=phase.sequence_length, seed=seed,
                                       batch_size=context.get_per_replica_batch_size(micro_batch))
            return self.family.objective.dataset(files, input_config, None if validation else context, self.backbone)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _train_phase(self, index: int, phase: Phase, end_of_phase: int) -> dict[str, float]:
        config = self.settings
        self.log(f"phase {index + 1}/{len(self.job.phases)}: length {phase.sequence_length}, global batch "
                 f"{phase.global_batch}, steps {self.step}→{end_of_phase} on {self.strategy.num_replicas_in_sync} "
                 f"replica(s)")
        iterator = iter(self._dataset(phase))
        train_steps = self._train_function()
        writer = tf.summary.create_file_writer(os.path.join(self.job.model_dir, "tensorboard")) if self.chief \
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
            if self._sigterm_watchdog is not None:
                self._sigterm_watchdog.cancel()  # the step finished: the checkpoint below ends the run
            step = self.step
            if step - last_log >= config.log_every or step == end_of_phase:
                now = time.perf_counter()
                metrics = self._summarise(totals, now - last_time, phase)
                self._report(step, end_of_phase, metrics, writer)
                self.summary.record_train(step, metrics)
                totals[:] = 0
                last_log, last_time = step, now
            if self.job.valid_files and config.eval_every and step % config.eval_every < updates:
                self._validate(phase, writer)
            if step % config.checkpoint_every < updates or self._preempted:
                self.manager.save(checkpoint_number=step)
            if self._preempted:
                raise _Preempted
        return metrics

    def _train_function(self):
        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        objective = self.family.objective

        def loss_and_gradients(batch, global_weight):
            with tf.GradientTape() as tape:
                logits, losses = _target_losses(model, objective, batch, training=True)
                weights = batch[TARGET_WEIGHTS]
                loss = tf.reduce_sum(losses * weights) / tf.maximum(global_weight, 1.0)
                scaled = optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, model.trainable_variables)
            correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), batch[TARGET_IDS]), tf.float32)
            stats = tf.stack([
                tf.reduce_sum(losses * weights), tf.reduce_sum(weights), tf.reduce_sum(correct * weights),
                tf.reduce_sum(tf.cast(batch[TOKEN_IDS] != 0, tf.float32)),
            ])
            return gradients, stats

        if self.settings.jit_compile:
            # Only the pure computation is compiled: it holds no cross-replica synchronisation.
            loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

        def replica_step(batch):
            context = tf.distribute.get_replica_context()
            global_weight = context.all_reduce("sum", tf.reduce_sum(batch[TARGET_WEIGHTS]))
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
            "context_gain": float(self.floor - loss),
            self.family.objective.accuracy_metric: float(correct / max(weight, 1.0)),
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
        self.log(f"step {step:>7}/{end}  loss {metrics['loss']:.4f}  gain {metrics['context_gain']:+.4f}  "
                 f"acc {metrics[self.family.objective.accuracy_metric]:.3f}  "
                 f"ppl {metrics['perplexity']:.2f}  lr {metrics['learning_rate']:.2e}  "
                 f"tokens/s {metrics['tokens_per_second']:,.0f}")

    def _validate(self, phase: Phase, writer=None) -> dict[str, float]:
        """The loss on `eval_batches` fixed batches of the valid split (models with memory read each segment from
        a zero memory), its context gain and the gain's 95% interval over batches."""
        iterator = iter(self._dataset(phase, validation=True))
        evaluate = self._eval_function()
        per_batch = np.array([evaluate(iterator).numpy() for _ in range(self.settings.eval_batches)])
        result = validation_result(per_batch, self.floor)
        self.summary.record_valid(self.step, result)
        if writer is not None:
            with writer.as_default(step=self.step):
                tf.summary.scalar("valid/loss", result["loss"])
                tf.summary.scalar("valid/context_gain", result["context_gain"])
            writer.flush()
        low, high = result["context_gain_ci95"]
        self.log(f"valid   {self.step:>7}  loss {result['loss']:.4f}  gain {result['context_gain']:+.4f} "
                 f"[{low:+.4f}, {high:+.4f}]  ({int(result['targets']):,} targets)")
        return result

    def _eval_function(self):
        if self._eval is None:
            model, strategy, objective = self.model, self.strategy, self.family.objective

            def replica_step(batch):
                _, losses = _target_losses(model, objective, batch, training=False)
                weights = batch[TARGET_WEIGHTS]
                return tf.stack([tf.reduce_sum(losses * weights), tf.reduce_sum(weights)])

            @tf.function
            def evaluate(iterator):
                return strategy.reduce("sum", strategy.run(replica_step, args=(next(iterator),)), axis=None)

            self._eval = evaluate
        return self._eval


def _target_losses(model: keras.Model, objective: Objective, batch: dict,
                   training: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """The float32 logits and the cross-entropy of every target slot."""
    logits = tf.cast(model(objective.model_inputs(batch, training), training=training), tf.float32)
    return logits, keras.losses.sparse_categorical_crossentropy(batch[TARGET_IDS], logits, from_logits=True)
