"""The SavedModel contract of DESIGN §5, and the one function that writes a TF Serving model version.

``serving_default``: input ``sequences`` (tf.string ``[batch]``) → ``residue_embeddings`` (float32
``[batch, max_len, hidden]``, zero past each length), ``protein_embeddings`` (float32 ``[batch, hidden]``),
``lengths`` (int32 ``[batch]``). Tokenisation is in the graph (core ops only), so the model takes raw
strings. A version is written to ``<model_folder>/<version>/`` as TF Serving's model base path expects.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from models import embedding, vocabulary
from models.encoder_backbone import EncoderBackbone

SIGNATURE = "serving_default"
INPUT = "sequences"
OUTPUTS = ("residue_embeddings", "protein_embeddings", "lengths")


def next_version(model_folder: str) -> int:
    """One more than the largest numbered version in `model_folder` (1 for a new folder)."""
    if not tf.io.gfile.isdir(model_folder):
        return 1
    versions = [int(name.rstrip("/")) for name in tf.io.gfile.listdir(model_folder) if name.rstrip("/").isdigit()]
    return max(versions, default=0) + 1


def export_saved_model(backbone: EncoderBackbone, model_folder: str, version: int | None = None) -> str:
    """Write `backbone` as a new version of the TF Serving model in `model_folder`; returns its path.

    The version is written under a temporary name and renamed into place, so a server polling the folder
    never loads a half-written version.
    """
    version = version or next_version(model_folder)
    final_path = os.path.join(model_folder, str(version))
    if tf.io.gfile.exists(final_path):
        raise FileExistsError(f"{final_path} already exists")
    staging_path = os.path.join(model_folder, f".staging-{version}")
    if tf.io.gfile.exists(staging_path):
        tf.io.gfile.rmtree(staging_path)

    if not backbone.built:
        backbone(vocabulary.encode(tf.constant(["M"]))[0])
    archive = keras.export.ExportArchive()
    archive.track(backbone)
    archive.add_endpoint(
        SIGNATURE,
        lambda sequences: embedding.embed_strings(backbone, sequences),
        input_signature=[tf.TensorSpec([None], tf.string, name=INPUT)],
    )
    archive.write_out(staging_path, verbose=False)
    tf.io.gfile.rename(staging_path, final_path)
    return final_path
