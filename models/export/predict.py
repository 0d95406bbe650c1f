"""The ``predict`` signature: a model's trained probes served with it, predictions instead of vectors.

:func:`write_predictor` writes a SavedModel holding an embedding SavedModel's signatures unchanged
(``serving_default``, ``serving_float16`` and those of the model's head, such as ``masked_marginals``) plus
``predict``: input ``sequences`` (tf.string ``[batch]``), outputs,
for the heads given,

- per residue (secondary-structure head): ``ss3``, ``ss8`` (tf.string ``[batch, max_len]``, one DSSP letter per
  residue, ``""`` past each length) and ``ss3_probabilities``, ``ss8_probabilities`` (float32
  ``[batch, max_len, 3 | 8]``, zero past each length);
- per protein (localization head): ``location`` and ``membrane`` (tf.string ``[batch]``) with
  ``location_probabilities`` (float32 ``[batch, 10]``) and ``membrane_probabilities`` (``[batch, 2]``);
- ``lengths`` (int32 ``[batch]``).

The label alphabets, in the probabilities' order, are in ``assets.extra/prottrans_heads.json``. The embedding
SavedModel's graph refuses bad sequences for ``predict`` too (it is the same graph).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from models.export.signatures import INPUT, SIGNATURE, WEIGHTS_COLLECTION
from models.probes.datasets import DSSP3, DSSP8, LOCATIONS
from models.probes.probe import MEMBRANE_LABELS

PREDICT_SIGNATURE = "predict"
HEADS_FILE = "prottrans_heads.json"
RESIDUE_HEAD, PROTEIN_HEAD = "ss", "localization"  # the probe tasks whose models are the heads
LABELS = {"ss3": list(DSSP3), "ss8": list(DSSP8), "location": list(LOCATIONS), "membrane": list(MEMBRANE_LABELS)}


class _Predictor(tf.Module):
    def __init__(self, embedding_model, heads: dict[str, keras.Model]):
        super().__init__()
        self.embedding_model = embedding_model
        self.residue_head = heads.get(RESIDUE_HEAD)
        self.protein_head = heads.get(PROTEIN_HEAD)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT)])
    def predict(self, sequences: tf.Tensor) -> dict[str, tf.Tensor]:
        embedded = self.embedding_model.signatures[SIGNATURE](sequences=sequences)
        lengths = embedded["lengths"]
        outputs = {"lengths": lengths}
        if self.residue_head is not None:
            residues = tf.cast(embedded["residue_embeddings"], tf.float32)
            width = tf.shape(residues)[1]
            mask = tf.sequence_mask(lengths, width)

            def one_protein(row: tuple[tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
                # Alone, as the probes were evaluated: the CNN's first bias makes padding differ from its own
                # zero padding at the ends, so a protein's predictions would otherwise depend on its batch.
                own, length = row
                logits = self.residue_head(own[None, :length], training=False)
                return {name: tf.pad(logits[name][0], [[0, width - length], [0, 0]]) for name in ("ss3", "ss8")}

            logits = tf.map_fn(one_protein, (residues, lengths), fn_output_signature={
                name: tf.TensorSpec([None, len(LABELS[name])], tf.float32) for name in ("ss3", "ss8")})
            for name in ("ss3", "ss8"):
                probabilities = tf.nn.softmax(logits[name], axis=-1) * tf.cast(mask, tf.float32)[:, :, None]
                labels = tf.gather(tf.constant(LABELS[name]), tf.argmax(probabilities, axis=-1))
                outputs[name] = tf.where(mask, labels, "")
                outputs[f"{name}_probabilities"] = probabilities
        if self.protein_head is not None:
            logits = self.protein_head(tf.cast(embedded["protein_embeddings"], tf.float32), training=False)
            for name in ("location", "membrane"):
                probabilities = tf.nn.softmax(logits[name], axis=-1)
                outputs[name] = tf.gather(tf.constant(LABELS[name]), tf.argmax(probabilities, axis=-1))
                outputs[f"{name}_probabilities"] = probabilities
        return outputs


def write_predictor(saved_model: str, heads: dict[str, keras.Model], path: str) -> str:
    """Write, at `path`, `saved_model`'s signatures plus ``predict`` over `heads` (probe task → the trained probe
    model: ``ss`` and/or ``localization``); its ``assets.extra`` are kept and ``prottrans_heads.json`` added.
    Staged beside `path` and renamed into place. Returns `path`."""
    if not heads or set(heads) - {RESIDUE_HEAD, PROTEIN_HEAD}:
        raise ValueError(f"heads must be some of {RESIDUE_HEAD!r}, {PROTEIN_HEAD!r}; got {sorted(heads)}")
    loaded = tf.saved_model.load(saved_model)
    predictor = _Predictor(loaded, heads)
    if hasattr(loaded, WEIGHTS_COLLECTION):  # kept where readers look for it (the same variables: saved once)
        setattr(predictor, WEIGHTS_COLLECTION, list(getattr(loaded, WEIGHTS_COLLECTION)))
    signatures = dict(loaded.signatures)  # the embeddings and whatever the model's head serves
    signatures[PREDICT_SIGNATURE] = predictor.predict.get_concrete_function()
    parent, name = os.path.split(path.rstrip("/"))
    staging = os.path.join(parent, f".staging-{name}")
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
    tf.saved_model.save(predictor, staging, signatures=signatures)
    extra = os.path.join(saved_model, "assets.extra")
    tf.io.gfile.makedirs(os.path.join(staging, "assets.extra"))
    if tf.io.gfile.isdir(extra):
        for file in tf.io.gfile.listdir(extra):
            tf.io.gfile.copy(os.path.join(extra, file), os.path.join(staging, "assets.extra", file))
    outputs = {"per_residue": ["ss3", "ss8"] if RESIDUE_HEAD in heads else [],
               "per_protein": ["location", "membrane"] if PROTEIN_HEAD in heads else []}
    with tf.io.gfile.GFile(os.path.join(staging, "assets.extra", HEADS_FILE), "w") as handle:
        json.dump({"signature": PREDICT_SIGNATURE, "outputs": outputs,
                   "labels": {key: LABELS[key] for kind in outputs.values() for key in kind}}, handle, indent=2)
    tf.io.gfile.rename(staging, path)
    return path


def read_heads(saved_model: str) -> dict | None:
    """``prottrans_heads.json`` of a SavedModel with the ``predict`` signature; None without one."""
    file = os.path.join(saved_model, "assets.extra", HEADS_FILE)
    if not tf.io.gfile.exists(file):
        return None
    with tf.io.gfile.GFile(file) as handle:
        return json.load(handle)
