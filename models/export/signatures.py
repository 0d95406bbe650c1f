"""The SavedModel contract, and the one function that writes a TF Serving model version.

``serving_default``: input ``sequences`` (tf.string ``[batch]``) → ``residue_embeddings`` (float32
``[batch, max_len, hidden]``, zero past each length), ``protein_embeddings`` (float32 ``[batch, hidden]``),
``lengths`` (int32 ``[batch]``); ``serving_float16`` returns the same with float16 residue embeddings. Tokenisation
is in the graph (core ops only), so the model takes raw strings; a backbone with a residue limit embeds longer
sequences in windows stitched in the graph (recorded in the model info). A version is written to ``<model_folder>/<version>/`` as TF Serving's model base path expects.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import NamedTuple

import keras
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from models import vocabulary
from models.export import embedding
from models.networks.backbone import Backbone

SIGNATURE = "serving_default"
# The same outputs with residue embeddings in float16: half the bytes on the wire for per-residue requests.
SIGNATURE_FLOAT16 = "serving_float16"
INPUT = "sequences"
OUTPUTS = ("residue_embeddings", "protein_embeddings", "lengths")
# Beside TF Serving's warm-up file in assets.extra (which the server copies and otherwise ignores).
MODEL_INFO = "prottrans_model.json"
# The SavedModel's attribute listing the exported model's variables in the order of its model info's "weights".
WEIGHTS_COLLECTION = "prottrans_weights"
WARMUP_FILE = "tf_serving_warmup_requests"


def exported_weights(holder: keras.Model, backbone: Backbone) -> dict[str, keras.Variable]:
    """The weights of `holder` (`backbone`, or a task model around it) by keys that do not depend on how the model
    was built or numbered: ``backbone/<path inside the backbone>`` and, for the task model's own weights,
    ``head/<path inside the task model>`` (Keras paths start wherever a variable was first built)."""
    inside_backbone = {id(weight) for weight in backbone.weights}

    def below(path: str, name: str) -> str:
        parts = path.split("/")
        return "/".join(parts[parts.index(name) + 1:] if name in parts else parts[1:])

    keyed = {f"backbone/{below(weight.path, backbone.name)}" if id(weight) in inside_backbone
             else f"head/{below(weight.path, holder.name)}": weight for weight in holder.weights}
    if len(keyed) != len(holder.weights):
        raise ValueError(f"{holder.name}: two weights share a path; it cannot be exported readably")
    return keyed


def task_model_options(task_model: keras.Model) -> dict:
    """What a task model's config holds beyond its backbone (T5's decoder depth, an untied LM head): with the
    backbone's config, what rebuilds the same model. Empty for task models that take the backbone alone."""
    try:
        config = task_model.get_config()
    except NotImplementedError:
        return {}
    return {key: value for key, value in config.items() if key not in ("backbone", "name", "trainable", "dtype")}


def next_version(model_folder: str) -> int:
    """One more than the largest numbered version in `model_folder` (1 for a new folder)."""
    if not tf.io.gfile.isdir(model_folder):
        return 1
    versions = [int(name.rstrip("/")) for name in tf.io.gfile.listdir(model_folder) if name.rstrip("/").isdigit()]
    return max(versions, default=0) + 1


PRECISIONS = ("float32", "float16", "bfloat16")


def export_saved_model(backbone: Backbone, model_folder: str, version: int | None = None,
                       extra_assets: dict[str, dict] | None = None, dtype: str = "float32",
                       output_dtype: str = "float32", window: embedding.Window | None = None,
                       head: HeadSignatures | None = None) -> str:
    """Write `backbone` as a new version of the TF Serving model in `model_folder`; returns its path. With `dtype`
    float16 or bfloat16 the SavedModel holds and computes in that precision (where a family keeps layer norms or
    softmax in float32, they stay there); `output_dtype` float16 halves the embeddings it returns. `window`: how
    sequences longer than the backbone's limit are embedded (default: :func:`embedding.default_window`). `head`:
    the task model and the signatures its head serves (:func:`head_signatures`), written beside the embeddings in
    a float32 export. Weights holding NaN or infinite values are never exported (a ValueError naming them)."""
    if head is not None and dtype != "float32":
        raise ValueError(f"the head's signatures {sorted(head.signatures)} are exported in float32 only, not {dtype}")
    broken = [weight.path for weight in backbone.weights if not bool(tf.reduce_all(tf.math.is_finite(weight.value)))]
    if broken:
        raise ValueError(f"not exported: {len(broken)} weights hold NaN or infinite values ({', '.join(broken[:3])}"
                         f"{', …' if len(broken) > 3 else ''}); the model diverged or its checkpoint is damaged")
    version = version or next_version(model_folder)
    final_path = os.path.join(model_folder, str(version))
    write_saved_model(in_precision(backbone, dtype), final_path, extra_assets, output_dtype, window, head)
    return final_path


class HeadSignatures(NamedTuple):
    """A task model and the signatures its objective's head serves (name → tf.function with its input spec)."""

    task_model: keras.Model
    signatures: dict


def head_signatures(objective, task_model: keras.Model) -> HeadSignatures | None:
    """What `objective`'s head of `task_model` serves, or None where it serves nothing."""
    signatures = objective.serving_signatures(task_model)
    return HeadSignatures(task_model, signatures) if signatures else None


def in_precision(backbone: Backbone, dtype: str) -> Backbone:
    """`backbone` rebuilt to hold and compute in `dtype` (itself for float32), with its weights cast."""
    if dtype not in PRECISIONS:
        raise ValueError(f"dtype must be one of {PRECISIONS}, not {dtype!r}")
    if dtype == "float32":
        return backbone
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)  # every sublayer without an explicit dtype takes it
    try:
        half = type(backbone).from_config({**backbone.get_config(), "dtype": dtype})
        half(vocabulary.encode(tf.constant(["M"]), layout=vocabulary.layout_of(half))[0])
    finally:
        keras.config.set_dtype_policy(previous)
    for target, source in zip(half.weights, backbone.weights):
        target.assign(tf.cast(source, target.dtype))
    return half


def write_saved_model(backbone: Backbone, path: str, extra_assets: dict[str, dict] | None = None,
                      output_dtype: str = "float32", window: embedding.Window | None = None,
                      head: HeadSignatures | None = None) -> None:
    """Write `backbone` as a SavedModel with the serving signature at `path` (absent, or an empty folder).

    It is written under a temporary name beside `path` and renamed into place, so a server polling the folder
    never loads a half-written version. `extra_assets` are JSON files for ``assets.extra`` (e.g. the training
    summary), by file name.
    """
    if tf.io.gfile.exists(path):
        if tf.io.gfile.listdir(path):
            raise FileExistsError(f"{path} already exists")
        tf.io.gfile.rmtree(path)
    parent, name = os.path.split(path.rstrip("/"))
    staging_path = os.path.join(parent, f".staging-{name}")
    if tf.io.gfile.exists(staging_path):
        tf.io.gfile.rmtree(staging_path)

    if not backbone.built:
        backbone(vocabulary.encode(tf.constant(["M"]), layout=vocabulary.layout_of(backbone))[0])
    window = window or embedding.default_window(backbone)
    # Nothing is track()ed: the endpoints capture every variable they use, and a tracked layer's Keras variable
    # wrappers would be saved a second time beside them (keras#23553: a SavedModel twice the weights' size, and
    # twice their memory in every process that loads it — measured on ProtT5-XL, bench/prott5_xl.md).
    archive = keras.export.ExportArchive()
    sequences_spec = [tf.TensorSpec([None], tf.string, name=INPUT)]
    # Traced once and called by both endpoints: the SavedModel holds the backbone's graph once, not per endpoint
    # (ProtT5-XL: 7.7 MB of graph, 0.36 GiB in every process that loads it, before this).
    embed = tf.function(lambda sequences: embedding.embed_strings(backbone, sequences, window),
                        input_signature=sequences_spec)
    for name, residue_dtype in ((SIGNATURE, output_dtype), (SIGNATURE_FLOAT16, "float16")):
        archive.add_endpoint(
            name, lambda sequences, residue_dtype=residue_dtype: _outputs_in(embed(sequences), output_dtype,
                                                                             residue_dtype),
            input_signature=sequences_spec)
    for name, function in (head.signatures if head else {}).items():
        archive.add_endpoint(name, function)
    # The model's variables, listed once more by their `exported_weights` keys, so that training can start from
    # this SavedModel (`prottrans-train --init-from`). The same tf.Variables the endpoints capture: saved once.
    holder = head.task_model if head else backbone
    weights = exported_weights(holder, backbone)
    archive.add_variable_collection(WEIGHTS_COLLECTION, [weight.value for weight in weights.values()])
    archive.write_out(staging_path, verbose=False)
    tf.io.gfile.makedirs(os.path.join(staging_path, "assets.extra"))
    with tf.io.gfile.GFile(os.path.join(staging_path, "assets.extra", MODEL_INFO), "w") as handle:
        json.dump({**model_info(backbone, window), "head_signatures": sorted(head.signatures) if head else [],
                   "backbone_class": type(backbone).__name__,
                   "task_model_options": task_model_options(head.task_model) if head else {},
                   "weights": {"holder": "task_model" if head else "backbone", "paths": list(weights)}},
                  handle, indent=2)
    for name, content in (extra_assets or {}).items():
        with tf.io.gfile.GFile(os.path.join(staging_path, "assets.extra", name), "w") as handle:
            json.dump(content, handle, indent=2)
    write_warmup_requests(os.path.join(staging_path, "assets.extra", WARMUP_FILE), embedding.max_residues(backbone))
    tf.io.gfile.rename(staging_path, path)


WARMUP_LONGEST = 1024  # the longest warm-up protein of a model without a residue limit


def warmup_sequences(max_residues: int | None) -> list[list[str]]:
    """Batches TF Serving replays when it loads a version, so first requests do not pay for graph warm-up:
    a short, a typical and the longest protein (1,024 residues for a model without a limit), alone and in a batch
    of 8."""
    residues = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKAL"
    max_residues = max_residues or WARMUP_LONGEST
    lengths = sorted({min(length, max_residues) for length in (16, 300, max_residues)})
    sequences = [(residues * (length // len(residues) + 1))[:length] for length in lengths]
    return [[sequence] for sequence in sequences] + [[sequences[min(1, len(sequences) - 1)]] * 8]


def write_warmup_requests(path: str, max_residues: int | None) -> None:
    """``assets.extra/tf_serving_warmup_requests``: PredictionLogs of :func:`warmup_sequences` (TFRecord)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for batch in warmup_sequences(max_residues):
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=SIGNATURE))
            request.inputs[INPUT].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _outputs_in(outputs: dict[str, tf.Tensor], dtype: str, residue_dtype: str) -> dict[str, tf.Tensor]:
    return {name: tf.cast(value, residue_dtype if name == "residue_embeddings" else dtype)
            if value.dtype.is_floating else value for name, value in outputs.items()}


def model_info(backbone: Backbone, window: embedding.Window | None = None) -> dict:
    """What clients need beside the signature: the residue limit of the signature (None: any length — the
    backbone has none, or `window` embeds longer sequences), the windows, the width and the precision."""
    return {"max_residues": None if window else embedding.max_residues(backbone),
            "window": window._asdict() if window else None, "hidden_dim": backbone.hidden_dim,
            "backbone_config": backbone.get_config(), "weights_digest": weights_digest(backbone),
            "dtype": backbone.dtype_policy.name}


def weights_digest(backbone: Backbone) -> str:
    """A hash of the backbone's class, config and every weight's bytes: equal exactly when two exports would
    compute the same embeddings (SavedModel files themselves differ between two exports of one model)."""
    # Names are left out: Keras numbers the layers it names itself per process, so they differ between runs.
    config = {key: value for key, value in backbone.get_config().items() if key != "name"}
    digest = hashlib.sha256(json.dumps([type(backbone).__name__, config], sort_keys=True, default=str).encode())
    for weight in backbone.weights:
        digest.update(str(weight.shape).encode())
        digest.update(keras.ops.convert_to_numpy(weight.value).tobytes())
    return digest.hexdigest()


def latest_version_holding(backbone: Backbone, model_folder: str) -> str | None:
    """The path of `model_folder`'s latest version if it holds exactly `backbone` (same weights digest), else None:
    a rerun that changed nothing need not add a version."""
    latest = next_version(model_folder) - 1
    if latest < 1:
        return None
    path = os.path.join(model_folder, str(latest))
    info = read_model_info(path) or {}
    return path if info.get("weights_digest") == weights_digest(backbone) else None


def saved_model_digest(path: str) -> str | None:
    """Changes whenever a SavedModel's graph or weights do: a hash of ``saved_model.pb`` and the variables index
    (which holds a checksum of every tensor's bytes, so the data files need not be read). None where `path`
    holds no SavedModel."""
    digest = hashlib.sha256()
    for name in ("saved_model.pb", os.path.join("variables", "variables.index")):
        file = os.path.join(path, name)
        if not tf.io.gfile.exists(file):
            return None
        with tf.io.gfile.GFile(file, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def signature_defs(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The signatures of the SavedModel at `path` as declared in its ``saved_model.pb``, without loading it."""
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as handle:
        return dict(saved_model_pb2.SavedModel.FromString(handle.read()).meta_graphs[0].signature_def)


def check_serving_signature(path: str) -> None:
    """ValueError naming `path` unless its ``serving_default`` takes ``sequences`` strings and returns the
    embedding outputs; read from ``saved_model.pb`` alone, so a caller may check before (or instead of) loading."""
    definition = signature_defs(path).get(SIGNATURE)
    if definition is None or INPUT not in definition.inputs or definition.inputs[INPUT].dtype != tf.string:
        raise ValueError(f"{path}: no {SIGNATURE!r} signature taking {INPUT!r} strings (see docs/contracts.md)")
    missing = set(OUTPUTS) - set(definition.outputs)
    if missing:
        raise ValueError(f"{path}: its {SIGNATURE!r} signature lacks the outputs {sorted(missing)}")


def read_model_info(saved_model_dir: str, name: str = MODEL_INFO) -> dict | None:
    """:func:`model_info` (or the extra asset `name`) of an exported version; None where it was exported without."""
    path = os.path.join(saved_model_dir, "assets.extra", name)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)
