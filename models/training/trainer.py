"""Pretraining of any family on its own objective (masked LM, permutation LM, causal LM with memory, denoising):
the loop, with a custom `tf.distribute` step; it reports the loss against the objective's no-context floor.

:func:`build_trainer` puts a run together from its parts: the state (:mod:`models.training.state`), the floor of
the training split and the validation on the valid split (:mod:`models.training.validation`), which the loop is
given rather than computes.

Not `Model.fit`: Keras 3 `fit()` fails under MultiWorkerMirroredStrategy (keras#20585, keras#20329) and
Keras 3's `BackupAndRestore` no longer saves on preemption. The loop here runs the same on the default
strategy, mirrored GPUs, multi-worker clusters and TPUs: datasets come from
``distribute_datasets_from_function`` with the per-replica share of the global batch; each replica's loss
is its scored targets' cross-entropy divided by the *global* count of scored targets, so the summed gradients
are the global mean's; ``steps_per_execution`` steps run inside one `tf.function` call.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from models.input_pipeline import TOKEN_IDS
from models.objectives.objective import TARGET_WEIGHTS
from models.training.checkpoints import write_backbone_config
from models.training.data import distributed_batches, holds_records, training_floor, unreadable_data_error
from models.training.settings import Phase, TrainingSettings
from models.training.state import TrainingState, build_training_state
from models.training.summary import TrainingSummary
from models.training.validation import Validation, target_losses, target_rows

# After SIGTERM, the seconds a step may take to finish before the process exits without a checkpoint (a step
# that waits for input that never comes would otherwise hold it forever).
SIGTERM_GRACE_S = 60.0
MAX_NON_FINITE_UPDATES = 20  # consecutive updates with a NaN or infinite loss before a run stops as diverged


class TrainingDiverged(RuntimeError):
    """The loss stayed non-finite: the run stopped without a checkpoint or an export of non-finite weights."""


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

    @property
    def all_files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.valid_files)


def build_trainer(job: TrainJob, log: Callable[[str], None] = print) -> "Trainer":
    """A run of `job`, put together: its state, the no-context floor of its training split, and its validation
    (none when the job has no valid split, or one without records)."""
    state = build_training_state(job.settings, job.model_dir, job.phases, job.total_steps, log)
    floor = training_floor(state.family.objective, job.train_files, job.all_files)
    log(f"no-context floor of {state.family.objective.name}: {floor:.4f} nats (from the training split's residue "
        "composition)")
    validation = None
    if job.valid_files:
        if holds_records(job.valid_files, job.all_files):
            validation = Validation(state, job.settings, job.valid_files, floor)
        else:
            log("the valid split holds no record: no validation loss, no valid context gain")
            job = dataclasses.replace(job, valid_files=())
    return Trainer(job, state, floor, validation, log)


def global_gradient_shares(context: tf.distribute.ReplicaContext, gradients: list, replicas: int) -> list:
    """Each replica's gradients replaced by the global gradient over `replicas`: Keras clips the gradients it is
    given before it sums the replicas' (so a norm limit would see one replica's share); it then sums these shares
    back to the global gradient, clipped as a whole (the optimizer's limit is the same share of the setting's)."""
    present = [index for index, gradient in enumerate(gradients) if gradient is not None]
    summed = context.all_reduce("sum", [tf.convert_to_tensor(gradients[index]) for index in present])
    shares = list(gradients)
    for index, gradient in zip(present, summed):
        shares[index] = gradient / replicas
    return shares


class _Preempted(Exception):
    pass


class Trainer:
    """Runs (or resumes) the phases of `job` on `state`: steps, logs against `floor`, validates with `validation`
    every `eval_every` updates and at the end, checkpoints, and saves on preemption."""

    def __init__(self, job: TrainJob, state: TrainingState, floor: float, validation: Validation | None = None,
                 log: Callable[[str], None] = print):
        self.job, self.state, self.floor, self.validation, self.log = job, state, floor, validation, log
        self.settings = job.settings
        self.objective = state.family.objective
        self.summary = TrainingSummary.load_or_new(job.model_dir, state.family, floor)
        self._preempted = False
        self._non_finite_updates = 0
        self._sigterm_watchdog: threading.Timer | None = None
        # Clusters coordinate a preemption across workers (all save the same step, then exit); one process
        # handles SIGTERM itself (see train()).
        self._preemption_handler = None
        if self.settings.strategy in ("multi_worker", "tpu"):
            self._preemption_handler = tf.distribute.experimental.PreemptionCheckpointHandler(
                state.strategy.cluster_resolver, state.manager)

    @property
    def step(self) -> int:
        return self.state.step

    def train(self) -> dict[str, float]:
        """Run (or finish) every phase; returns the last logged metrics."""
        state = self.state
        restored = state.restore(self.job.model_dir, self.log)
        if restored:
            self.log(f"resumed from {restored} at step {self.step}")
        if state.chief:
            write_backbone_config(state.backbone, state.family.name, self.job.model_dir, state.model)
        previous_handler = signal.getsignal(signal.SIGTERM)
        if self._preemption_handler is None:
            signal.signal(signal.SIGTERM, self._on_sigterm)
        metrics: dict[str, float] = {}
        if self.validation and self.settings.init_from and self.step == 0 and self.summary.last_valid_step != 0:
            self._validate(self.job.phases[0])  # where the checkpoint starts, against the floor
        try:
            start_of_phase = 0
            for index, phase in enumerate(self.job.phases):
                end_of_phase = start_of_phase + phase.steps
                if self.step < end_of_phase:
                    metrics = self._train_phase(index, phase, end_of_phase) or metrics
                start_of_phase = end_of_phase
        except tf.errors.DataLossError as error:
            raise unreadable_data_error(error, self.job.all_files) from None
        except _Preempted:
            state.manager.save(checkpoint_number=self.step)
            self.log(f"preempted (SIGTERM): checkpoint saved at step {self.step}; rerun the same command to resume")
            raise SystemExit(143) from None
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
        if self._latest_step() != self.step:
            state.manager.save(checkpoint_number=self.step)
        if self.validation and self.summary.last_valid_step != self.step:
            self._validate(self.job.phases[-1])
        if state.chief:
            self.summary.write(self.job.model_dir)
        return metrics

    def _latest_step(self) -> int | None:
        latest = self.state.manager.latest_checkpoint
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

    def _train_phase(self, index: int, phase: Phase, end_of_phase: int) -> dict[str, float]:
        config, state = self.settings, self.state
        self.log(f"phase {index + 1}/{len(self.job.phases)}: length {phase.sequence_length}, global batch "
                 f"{phase.global_batch}, steps {self.step}→{end_of_phase} on {state.strategy.num_replicas_in_sync} "
                 f"replica(s)")
        # A resumed run does not replay the training data it has seen.
        iterator = iter(distributed_batches(state, config, self.job.train_files, phase, config.seed + self.step,
                                            shard=True))
        train_steps = self.train_function()
        writer = tf.summary.create_file_writer(os.path.join(self.job.model_dir, "tensorboard")) if state.chief \
            else tf.summary.create_noop_writer()
        totals = np.zeros(4)
        last_log, last_time, metrics = self.step, time.perf_counter(), {}
        while self.step < end_of_phase:
            updates = min(config.steps_per_execution, end_of_phase - self.step)
            micro_steps = tf.constant(updates * config.accumulation_steps)
            if self._preemption_handler is not None:
                call_totals = self._preemption_handler.run(train_steps, iterator, micro_steps).numpy()
            else:
                call_totals = train_steps(iterator, micro_steps).numpy()
            totals += call_totals
            finite = self._count_non_finite(call_totals[0], updates)
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
            if self.validation and config.eval_every and step % config.eval_every < updates:
                self._validate(phase, writer)
            if (step % config.checkpoint_every < updates or self._preempted) and finite:
                state.manager.save(checkpoint_number=step)
            if self._preempted:
                raise _Preempted
        return metrics

    def _count_non_finite(self, loss_sum: float, updates: int) -> bool:
        """Whether these `updates` had a finite loss; raises :class:`TrainingDiverged` once
        :data:`MAX_NON_FINITE_UPDATES` updates in a row had not. (Float16 steps that loss scaling skips have a finite
        loss: they do not count.)"""
        if np.isfinite(loss_sum):
            self._non_finite_updates = 0
            return True
        self._non_finite_updates += updates
        if self._non_finite_updates >= MAX_NON_FINITE_UPDATES:
            raise TrainingDiverged(
                f"the training loss was NaN or infinite for {self._non_finite_updates} updates in a row (to step "
                f"{self.step}): the model diverged; try a lower --learning-rate. Checkpoints were written only at "
                f"finite losses (latest: {self.state.manager.latest_checkpoint}); nothing was exported")
        return False

    def train_function(self) -> tf.types.experimental.GenericFunction:
        """The training step: ``train_steps(iterator, micro_steps)`` runs `micro_steps` micro-batches of a
        distributed iterator through the model and the optimizer, and returns the sums ``[loss, targets, correct,
        tokens]``."""
        model, optimizer, strategy = self.state.model, self.state.optimizer, self.state.strategy
        objective = self.objective

        def loss_and_gradients(batch, global_weight):
            with tf.GradientTape() as tape:
                logits, losses = target_losses(model, objective, batch, training=True)
                weights = batch[TARGET_WEIGHTS]
                loss = tf.reduce_sum(losses * weights) / tf.maximum(global_weight, 1.0)
                scaled = optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, model.trainable_variables)
            correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), target_rows(model, batch)),
                              tf.float32)
            stats = tf.stack([
                tf.reduce_sum(losses * weights), tf.reduce_sum(weights), tf.reduce_sum(correct * weights),
                tf.reduce_sum(tf.cast(batch[TOKEN_IDS] != 0, tf.float32)),
            ])
            return gradients, stats

        if self.settings.jit_compile:
            # Only the pure computation is compiled: it holds no cross-replica synchronisation.
            loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

        replicas = strategy.num_replicas_in_sync
        clip_global_gradient = replicas > 1 and self.settings.gradient_clip_norm > 0

        def replica_step(batch):
            context = tf.distribute.get_replica_context()
            global_weight = context.all_reduce("sum", tf.reduce_sum(batch[TARGET_WEIGHTS]))
            gradients, stats = loss_and_gradients(batch, global_weight)
            if clip_global_gradient:
                gradients = global_gradient_shares(context, gradients, replicas)
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
        learning_rate = self.state.optimizer.learning_rate
        return {
            "loss": float(loss),
            "context_gain": float(self.floor - loss),
            self.objective.accuracy_metric: float(correct / max(weight, 1.0)),
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
                 f"acc {metrics[self.objective.accuracy_metric]:.3f}  "
                 f"ppl {metrics['perplexity']:.2f}  lr {metrics['learning_rate']:.2e}  "
                 f"tokens/s {metrics['tokens_per_second']:,.0f}")

    def _validate(self, phase: Phase, writer=None) -> None:
        result = self.validation(phase)
        self.summary.record_valid(self.step, result)
        if writer is not None:
            with writer.as_default(step=self.step):
                tf.summary.scalar("valid/loss", result["loss"])
                tf.summary.scalar("valid/context_gain", result["context_gain"])
            writer.flush()
        low, high = result["context_gain_ci95"]
        self.log(f"valid   {self.step:>7}  loss {result['loss']:.4f}  gain {result['context_gain']:+.4f} "
                 f"[{low:+.4f}, {high:+.4f}]  ({int(result['targets']):,} targets)")
