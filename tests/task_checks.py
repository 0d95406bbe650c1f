"""The checks every family's objective passes with its backbone (as `backbone_checks` does for backbones): its
batches keep the batch contract, one training step gives a finite loss above zero and a floor, the trained model
folder reads back and exports to a SavedModel that serves what the backbone embeds, padding changes no sequence's
embedding, and training in bfloat16 keeps float32 weights and embeds in float32."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models import vocabulary
from models.export import embedding
from models.export.signatures import export_saved_model, head_signatures
from models.family import Family
from models.input_pipeline import TOKEN_IDS, InputConfig
from models.objectives import scoring
from models.objectives.objective import TARGET_IDS, TARGET_WEIGHTS
from models.training.checkpoints import load_trained_backbone
from models.training.settings import Phase
from tests.conftest import shards, train_and_log, train_job

SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQ", "MKT", "ACDEFGHIKLMNPQRSTVWYX"]


def check_batches(family: Family, train_files: tuple[str, ...]) -> None:
    """A batch of the objective's dataset has the contract's keys, and the task model gives a logit row per
    target slot."""
    objective = family.objective
    keras.utils.set_random_seed(0)
    backbone = family.build_backbone("tiny")
    batch = next(iter(objective.dataset(train_files, InputConfig(sequence_length=32, batch_size=3), None, backbone)))
    assert {TOKEN_IDS, TARGET_IDS, TARGET_WEIGHTS} <= set(batch)
    assert batch[TARGET_IDS].dtype == tf.int32 and batch[TARGET_WEIGHTS].dtype == tf.float32
    assert batch[TARGET_IDS].shape == batch[TARGET_WEIGHTS].shape and float(tf.reduce_sum(batch[TARGET_WEIGHTS])) > 0
    model = objective.task_model(backbone, lanes=3)
    model.build({TOKEN_IDS: (None, None)})
    for training in (True, False):
        logits = model(objective.model_inputs(batch, training), training=training)
        assert logits.shape == (*batch[TARGET_IDS].shape, backbone.vocabulary_size)
        assert np.isfinite(logits.numpy()).all()


def check_training(family: Family, dataset: Path, tmp_path: Path) -> None:
    """Two steps with validation: the loss is finite, the floor positive, the objective's accuracy reported; the
    model folder reads back, embeds without padding leaking, and exports a SavedModel that serves the same."""
    job = train_job(shards(dataset, "train"), tmp_path / "model", Phase(32, 2, 4), family=family.name,
                    log_every=1, eval_batches=1, warmup_steps=1, valid_files=shards(dataset, "valid"))
    trainer, metrics, _ = train_and_log(job)
    assert np.isfinite(metrics["loss"]) and 0.0 < trainer.floor < np.log(vocabulary.VOCABULARY_SIZE)
    assert 0.0 <= metrics[family.objective.accuracy_metric] <= 1.0
    assert np.isfinite(trainer.summary.valid["loss"])

    backbone, _ = load_trained_backbone(str(tmp_path / "model"))
    assert type(backbone) is family.backbone
    expected = embedding.embed_strings(backbone, tf.constant(SEQUENCES))
    alone = embedding.embed_strings(backbone, tf.constant(SEQUENCES[1:2]))
    np.testing.assert_allclose(expected["residue_embeddings"][1, :3], alone["residue_embeddings"][0], atol=1e-5)

    head = head_signatures(family.objective, trainer.state.model)
    version = export_saved_model(trainer.state.backbone, str(tmp_path / "serving" / family.name), head=head)
    signatures = tf.saved_model.load(version).signatures
    served = signatures["serving_default"](sequences=tf.constant(SEQUENCES))
    for name in ("residue_embeddings", "protein_embeddings", "lengths"):
        np.testing.assert_allclose(served[name].numpy(), expected[name].numpy(), atol=1e-5)
    # what the objective's head serves travels with the embeddings, and scores every residue
    assert set(signatures) == {"serving_default", "serving_float16", *(head.signatures if head else ())}
    if scoring.WILDTYPE_MARGINALS in signatures:
        marginals = signatures[scoring.WILDTYPE_MARGINALS](sequences=tf.constant(SEQUENCES))
        assert marginals[scoring.LOG_PROBS].shape == (len(SEQUENCES), len(SEQUENCES[0]), 20)
        probabilities = np.exp(marginals[scoring.LOG_PROBS].numpy()[0])
        assert np.isfinite(probabilities).all() and (probabilities.sum(axis=-1) <= 1.0 + 1e-5).all()


def check_mixed_precision(family: Family, train_files: tuple[str, ...], tmp_path: Path) -> None:
    """A step in bfloat16 keeps float32 weights; the folder it writes embeds in float32."""
    try:
        job = train_job(train_files, tmp_path / "bfloat16", Phase(32, 1, 4), family=family.name,
                        mixed_precision="bfloat16", log_every=1, warmup_steps=1)
        trainer, metrics, _ = train_and_log(job)
        assert np.isfinite(metrics["loss"]) and trainer.state.model.backbone.compute_dtype == "bfloat16"
        assert all(weight.dtype == "float32" for weight in trainer.state.model.trainable_weights)
    finally:
        keras.config.set_dtype_policy("float32")
    backbone, _ = load_trained_backbone(str(tmp_path / "bfloat16"))
    (embedded,) = embedding.embed(backbone, SEQUENCES[:1])
    assert backbone.compute_dtype == "float32" and embedded.residues.dtype == np.float32
    assert np.isfinite(embedded.residues).all()


def run_task_checks(family: Family, dataset: Path, tmp_path: Path) -> None:
    """`family`'s objective and backbone satisfy the shared contract, on the tiny preset and `dataset` (the
    Beam job's output folder)."""
    check_batches(family, shards(dataset, "train"))
    check_training(family, dataset, tmp_path)
    check_mixed_precision(family, shards(dataset, "train"), tmp_path)
