"""Fine-tuning for the probe tasks: the paper's per-residue (secondary structure) and per-protein (localization,
membrane) heads trained together with the backbone, fully or through LoRA, on the probes' splits; the result is
reported beside the frozen probes of the same starting model on the same proteins (paired), and exported as a
SavedModel with the fine-tuned embeddings and the heads as its ``predict`` signature."""

from __future__ import annotations

import dataclasses
import itertools
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from models.export.embedders import BackboneEmbedder
from models.export.predict import PROTEIN_HEAD, RESIDUE_HEAD, write_predictor
from models.export.signatures import next_version, write_saved_model
from models.networks.backbone import max_residues
from models.finetuning.model import METHODS, ProbeTaskModel, enable_lora, merged_backbone, trainable_parameters
from models.probes import probe
from models.probes.datasets import LocalizationRecord, StructureRecord
from models.probes.probe import GATE_SET, load_shared_layout, localization_results, paired_differences, \
    protein_labels, structure_labels, structure_results
from models.training.optimizers import build_optimizer

TASKS = (RESIDUE_HEAD, PROTEIN_HEAD)
FROZEN = "frozen"


@dataclass(frozen=True)
class FinetuneSettings:
    """How to fine-tune. `max_residues` crops training proteins (secondary structure: a random window each epoch;
    localization: both ends, where sorting signals sit); evaluation embeds every protein whole."""

    tasks: tuple[str, ...] = TASKS
    method: str = "lora"
    lora_rank: int = 8
    epochs: int = 3
    batch_size: int = 8
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    max_residues: int = 512
    seed: int = 0
    probe_seeds: int = 5  # the frozen probes (the heads' start): seeds averaged, as prottrans-probe --seeds

    def __post_init__(self):
        if not self.tasks or set(self.tasks) - set(TASKS):
            raise ValueError(f"tasks must be some of {TASKS}, not {self.tasks}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        if min(self.lora_rank, self.epochs, self.batch_size, self.max_residues, self.probe_seeds) < 1:
            raise ValueError("lora_rank, epochs, batch_size, max_residues and probe_seeds must be >= 1")
        if not 0.0 < self.learning_rate <= 1.0 or not 0.0 <= self.weight_decay < 1.0:
            raise ValueError("learning_rate must be in (0, 1] and weight_decay in [0, 1)")


# ---- batches --------------------------------------------------------------------------------------------------

def _window(length: int, limit: int, rng: np.random.Generator) -> slice:
    start = int(rng.integers(0, length - limit + 1)) if length > limit else 0
    return slice(start, start + limit)


def _ends(sequence: str, limit: int) -> str:
    return sequence if len(sequence) <= limit else sequence[: (limit + 1) // 2] + sequence[len(sequence) - limit // 2:]


def _by_length(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar lengths (little padding), in a random order."""
    order = np.argsort(lengths, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def structure_batches(records: Sequence[StructureRecord], settings: FinetuneSettings, rng: np.random.Generator
                      ) -> list[dict[str, np.ndarray]]:
    """One epoch of secondary-structure batches: ``sequences`` (cropped), ``ss3``/``ss8`` labels and ``weights``
    (the resolved residues), padded; the labels are the probes' (:func:`models.probes.probe.structure_labels`)."""
    ss3, ss8, masks = structure_labels(records)
    batches = []
    for rows in _by_length([min(len(r.sequence), settings.max_residues) for r in records], settings.batch_size, rng):
        windows = [_window(len(records[i].sequence), settings.max_residues, rng) for i in rows]
        width = max(len(ss3[i][window]) for i, window in zip(rows, windows))
        labels3, labels8 = np.zeros((len(rows), width), np.int32), np.zeros((len(rows), width), np.int32)
        weights = np.zeros((len(rows), width), np.float32)
        for row, (i, window) in enumerate(zip(rows, windows)):
            length = len(ss3[i][window])
            labels3[row, :length], labels8[row, :length], weights[row, :length] = \
                ss3[i][window], ss8[i][window], masks[i][window]
        batches.append({"sequences": np.array([records[i].sequence[window] for i, window in zip(rows, windows)],
                                              object), "ss3": labels3, "ss8": labels8, "weights": weights})
    return batches


def localization_batches(records: Sequence[LocalizationRecord], settings: FinetuneSettings,
                         rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """One epoch of localization batches: ``sequences`` (both ends kept when cropped), ``location``, ``membrane``
    and ``membrane_weights`` (0 where the membrane label is unknown); the labels are the probes'
    (:func:`models.probes.probe.protein_labels`)."""
    _, labels, label_weights = protein_labels(None, records)
    batches = []
    for rows in _by_length([min(len(r.sequence), settings.max_residues) for r in records], settings.batch_size, rng):
        batches.append({
            "sequences": np.array([_ends(records[i].sequence, settings.max_residues) for i in rows], object),
            "location": labels["location"][rows], "membrane": labels["membrane"][rows],
            "membrane_weights": label_weights["membrane"][rows]})
    return batches


def _weighted_mean(losses: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def batch_loss(model: ProbeTaskModel, batch: dict[str, tf.Tensor], training: bool) -> tf.Tensor:
    """The probes' losses on one batch: Q3 plus Q8 cross-entropy over resolved residues, or location plus membrane
    cross-entropy over labelled proteins."""
    outputs = model(batch["sequences"], training=training)
    entropy = keras.losses.sparse_categorical_crossentropy
    if "ss3" in batch:
        return sum(_weighted_mean(entropy(batch[key], tf.cast(outputs[key], tf.float32), from_logits=True),
                                  batch["weights"]) for key in ("ss3", "ss8"))
    location = tf.reduce_mean(entropy(batch["location"], tf.cast(outputs["location"], tf.float32), from_logits=True))
    membrane = _weighted_mean(entropy(batch["membrane"], tf.cast(outputs["membrane"], tf.float32), from_logits=True),
                              batch["membrane_weights"])
    return location + membrane


# ---- the run --------------------------------------------------------------------------------------------------

@dataclass
class Finetuned:
    """What a fine-tuning run leaves: the model (backbone with LoRA, if any, and heads), the backbone as served (LoRA
    merged), its report and the LoRA layers reached."""

    model: ProbeTaskModel
    served_backbone: object
    report: dict
    lora_layers: list[str]


def finetune(backbone, name: str, data_dir: str, settings: FinetuneSettings, limit: int | None = None,
             log: Callable[[str], None] = print) -> Finetuned:
    """Fine-tune `backbone` (changed in place) with the heads of `settings.tasks` on the splits in `data_dir` (the
    probes' layout; `limit` keeps the first rows of each split); report Q3/Q8 and Q10/Q2 on valid and test beside
    the frozen probes of the starting backbone on the same sets, paired.

    The heads start as those frozen probes, trained first on the starting embeddings (linear probing, then fine-tuning:
    heads trained from scratch together with the backbone spent the run catching up; measured in
    bench/finetune.md), and the state before the first epoch competes with every epoch for the lowest valid loss."""
    started = time.perf_counter()
    splits = {task: load_shared_layout(data_dir, task, limit) for task in settings.tasks}
    report: dict = {"embedder": name, "method": settings.method}
    frozen, heads = {"embedder": name}, {}
    embedder = BackboneEmbedder(backbone, name, name)
    for task in settings.tasks:  # before the backbone changes
        frozen.update(probe.run_probes(embedder, data_dir, task,
                                       probe.ProbeSettings(seed=settings.seed, seeds=settings.probe_seeds), limit,
                                       None, heads=heads)[0])
    report[FROZEN] = frozen
    log(f"frozen probes of {name}: " + _headline(frozen))
    model = ProbeTaskModel(backbone, heads)
    lora_layers = enable_lora(backbone, settings.lora_rank) if settings.method == "lora" else []
    if lora_layers:
        log(f"LoRA rank {settings.lora_rank} on {len(lora_layers)} projections; the backbone's other weights frozen")
    report["trainable_parameters"] = trainable_parameters(model)
    report["backbone_parameters"] = int(sum(np.prod(w.shape) for w in backbone.weights if "lora_kernel" not in w.path))
    limit_of_backbone = max_residues(backbone)
    if limit_of_backbone is not None and settings.max_residues > limit_of_backbone:
        settings = dataclasses.replace(settings, max_residues=limit_of_backbone)
        log(f"training crops of {limit_of_backbone} residues: the most {name} takes in one pass")
    rng = np.random.default_rng(settings.seed)
    epochs = [_epoch(splits, settings, rng) for _ in range(settings.epochs)]
    steps = sum(len(epoch) for epoch in epochs)
    optimizer = build_optimizer(model.trainable_weights, learning_rate=settings.learning_rate,
                                warmup_steps=max(1, steps // 10), total_steps=steps, weight_decay=settings.weight_decay)
    log(f"fine-tuning {name} ({settings.method}): {report['trainable_parameters']:,} trainable parameters, "
        f"{settings.epochs} epoch(s) of {len(epochs[0])} steps")

    @tf.function(reduce_retracing=True)
    def train_step(batches):
        with tf.GradientTape() as tape:
            loss = tf.add_n([batch_loss(model, batch, training=True) for batch in batches])
        variables = model.trainable_weights
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function(reduce_retracing=True)
    def valid_step(batch):
        return batch_loss(model, batch, training=False)

    valid_batches = {task: _task_batches(task, splits[task][1], settings, np.random.default_rng(0))
                     for task in settings.tasks}
    def valid_loss() -> float:
        return sum(float(np.mean([float(valid_step(_tensors(b))) for b in valid_batches[task]]))
                   for task in settings.tasks)

    best = valid_loss()
    best_weights, history = [w.numpy() for w in model.trainable_weights], [{"epoch": 0, "valid_loss": best}]
    log(f"before fine-tuning  valid loss {best:.4f}")
    for index, epoch in enumerate(epochs):
        losses = [float(train_step([_tensors(batch) for batch in step])) for step in epoch]
        valid = valid_loss()
        history.append({"epoch": index + 1, "train_loss": float(np.mean(losses)), "valid_loss": valid})
        log(f"epoch {index + 1}/{settings.epochs}  train loss {np.mean(losses):.4f}  valid loss {valid:.4f}")
        if valid < best:
            best, best_weights = valid, [w.numpy() for w in model.trainable_weights]
    for weight, value in zip(model.trainable_weights, best_weights):
        weight.assign(value)
    report["history"] = history
    report["best_epoch"] = int(np.argmin([h["valid_loss"] for h in history]))  # 0: fine-tuning did not help
    # Evaluated as served: LoRA merged into a new backbone (whose embedding function is traced afresh; one traced
    # before LoRA was enabled would not apply it).
    served = merged_backbone(backbone)
    report.update(evaluate(served, model.heads, splits, name))
    report["paired"] = {FROZEN: paired_differences(report, report[FROZEN])}
    report["wall_seconds"] = time.perf_counter() - started
    return Finetuned(model, served, report, lora_layers)


def _task_batches(task: str, records, settings: FinetuneSettings, rng: np.random.Generator) -> list[dict]:
    return (structure_batches if task == RESIDUE_HEAD else localization_batches)(records, settings, rng)


def _epoch(splits: dict, settings: FinetuneSettings, rng: np.random.Generator) -> list[tuple[dict, ...]]:
    """One epoch's steps: a batch of every task per step, the shorter tasks' batches cycled."""
    per_task = [_task_batches(task, splits[task][0], settings, rng) for task in settings.tasks]
    longest = max(len(batches) for batches in per_task)
    return list(zip(*(itertools.islice(itertools.cycle(batches), longest) for batches in per_task)))


def _tensors(batch: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
    return {key: tf.constant(value.astype(bytes) if value.dtype == object else value) for key, value in batch.items()}


def evaluate(backbone, heads: dict, splits: dict, name: str) -> dict:
    """The probes' metrics of a fine-tuned backbone and its heads on the valid and test sets: its embeddings (whole
    proteins) through its heads."""
    embedder = BackboneEmbedder(backbone, name, name)
    results = {}
    for task, (_, valid, tests) in splits.items():
        sets = {**tests, GATE_SET: valid}
        embedded = {set_name: embedder.embed([r.sequence for r in records]) for set_name, records in sets.items()}
        if task == RESIDUE_HEAD:
            results[task] = structure_results(heads[task], {
                set_name: ([e.residues for e in embedded[set_name]], records) for set_name, records in sets.items()})
        else:
            results[task] = localization_results(heads[task], {
                set_name: (np.stack([e.protein for e in embedded[set_name]]).astype(np.float32), records)
                for set_name, records in sets.items()})
    return results


def _headline(report: dict) -> str:
    return ", ".join(f"{metric} {result[key]:.3f}" for metric, _, _, key, result in probe.headline_results(report))


def export(finetuned: Finetuned, model_folder: str) -> str:
    """A new version of the TF Serving `model_folder` (see `export_to`). Returns its path."""
    tf.io.gfile.makedirs(model_folder)
    return export_to(finetuned, os.path.join(model_folder, str(next_version(model_folder))))


def export_to(finetuned: Finetuned, path: str) -> str:
    """The fine-tuned backbone (LoRA merged into its kernels) with the serving signature, and its heads as the
    ``predict`` signature, as a SavedModel at `path` (local or a bucket). Returns `path`."""
    with tempfile.TemporaryDirectory() as staging:
        embedding_model = os.path.join(staging, "embedding")
        write_saved_model(finetuned.served_backbone, embedding_model,
                          extra_assets={"finetune_report.json": _summary(finetuned.report)})
        return write_predictor(embedding_model, finetuned.model.heads, path)


def describe(report: dict) -> list[str]:
    """One line per headline metric of a fine-tuning report: the fine-tuned value, the frozen probe's, and their
    paired difference with its 95% interval and what it says."""
    lines = []
    for metric, family, set_name, key, value in probe.headline_results(report):
        line = f"{metric} {value[key]:.3f}"
        paired = report["paired"][FROZEN].get(metric)
        if paired:
            low, high = paired["ci95"]
            verdict = "better" if low > 0 else "worse" if high < 0 else "a tie: the interval holds 0"
            line += (f"   frozen probe {report[FROZEN][family][set_name][key]:.3f}, difference "
                     f"{paired['difference']:+.3f} [{low:+.3f}, {high:+.3f}] ({verdict})")
        lines.append(line)
    return lines


def _summary(report: dict) -> dict:
    keep = ("embedder", "method", "trainable_parameters", "backbone_parameters", "history", "best_epoch")
    return {key: report[key] for key in keep if key in report}
