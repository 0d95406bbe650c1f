"""What a training run's folder holds beside TF checkpoints, and reading a trained backbone back from it (or from
a SavedModel of ours).

``<model_dir>/backbone_config.json`` names the family and the backbone config; ``<model_dir>/checkpoints/`` holds
TF checkpoints whose ``weights`` entry keys every model weight by its stable Keras path.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from models.export.signatures import WEIGHTS_COLLECTION, exported_weights, read_model_info, task_model_options
from models.family import Family
from models.input_pipeline import TOKEN_IDS
from models.networks.backbone import Backbone
from models.registry import get_family

def model_weights(model: keras.Model) -> dict[str, keras.Variable]:
    """The model's weights keyed by their Keras paths below the model (``protbert_backbone/…/kernel``).

    Saved in every checkpoint beside the object graph: Keras 3 layers do not expose all their sublayers'
    variables to TF's object-based checkpointing (a MultiHeadAttention's projections are reached only
    through the optimizer), so a model restored without its optimizer needs these stable names.
    """
    return {weight.path.split("/", 1)[-1]: weight for weight in model.weights}


BACKBONE_CONFIG = "backbone_config.json"


def write_backbone_config(backbone, family: str, model_dir: str, task_model: keras.Model | None = None) -> None:
    """``<model_dir>/backbone_config.json``: what a reader of the checkpoints needs to rebuild the model (the
    family, which names the backbone class and task model, the backbone's config, and the task model's own
    options: `task_model_options`)."""
    tf.io.gfile.makedirs(model_dir)
    options = task_model_options(task_model) if task_model is not None else {}
    with tf.io.gfile.GFile(os.path.join(model_dir, BACKBONE_CONFIG), "w") as handle:
        handle.write(json.dumps({"family": family, "config": backbone.get_config(), "task_model": options},
                                indent=2))


def build_task_model(family: Family, backbone_config: dict, options: dict | None = None) -> keras.Model:
    """The family's task model around a backbone of `backbone_config`, with the task model's `options` (an untied
    LM head, T5's decoder depth), built. Mixed precision is how a run trained, not how it embeds: the backbone is
    rebuilt without its dtype policy (a mixed one outside the run's global policy mixes dtypes in sublayers)."""
    backbone = family.backbone.from_config({key: value for key, value in backbone_config.items() if key != "dtype"})
    model = family.objective.task_model(backbone)
    if options:
        model = type(model).from_config({**model.get_config(), **options})
    model.build({TOKEN_IDS: (None, None)})
    return model


# Settings that change no weight's shape: a run may resume with other values.
_SHAPELESS = ("name", "dropout", "attention_dropout")


def config_changes(backbone, family: str, model_dir: str) -> list[str]:
    """How `backbone` (of `family`) differs from the model whose checkpoints `model_dir` holds, in the settings that
    shape weights (``"max_sequence_length: 128 there, 64 now"``); empty when it matches or nothing is saved."""
    path = os.path.join(model_dir, BACKBONE_CONFIG)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as handle:
        saved = json.load(handle)
    saved_family, saved_config = (saved["family"], saved["config"]) if "family" in saved else ("protbert", saved)
    if saved_family != family:
        return [f"family: {saved_family} there, {family} now"]
    config = backbone.get_config()
    return [f"{key}: {saved_config.get(key)!r} there, {config.get(key)!r} now"
            for key in sorted(set(config) | set(saved_config))
            if key not in _SHAPELESS and saved_config.get(key) != config.get(key)]


def load_trained_backbone(model_dir: str) -> tuple[Backbone, str]:
    """The backbone of a training run's latest checkpoint (``--model-dir`` of ``prottrans-train``), and that
    checkpoint's path."""
    _, model, latest = load_trained_model(model_dir)
    return model.backbone, latest


def is_training_dir(directory: str) -> bool:
    return tf.io.gfile.exists(os.path.join(directory, BACKBONE_CONFIG))


def load_trained_model(model_dir: str) -> tuple[str, keras.Model, str]:
    """The family name, the task model (backbone and head) of a training run's latest checkpoint, and that
    checkpoint's path."""
    config_path = os.path.join(model_dir, BACKBONE_CONFIG)
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if not tf.io.gfile.exists(config_path) or latest is None:
        raise FileNotFoundError(f"{model_dir} is not a training directory (no {BACKBONE_CONFIG} or no checkpoint)")
    with tf.io.gfile.GFile(config_path) as handle:
        saved = json.load(handle)
    if "family" not in saved:  # written before other families existed: a ProtBert/ProtAlbert config
        saved = {"family": "protbert", "config": saved}
    family = get_family(saved["family"])
    model = build_task_model(family, saved["config"], saved.get("task_model"))
    restore_model_weights(model, latest)
    return family.name, model, latest


def restore_model_weights(model: keras.Model, checkpoint_path: str) -> None:
    """Load the weights of a training checkpoint into a built model of the same config (no optimizer)."""
    tf.train.Checkpoint(weights=model_weights(model)).restore(checkpoint_path).expect_partial().assert_existing_objects_matched()


def is_saved_model(directory: str) -> bool:
    return tf.io.gfile.exists(os.path.join(directory, "saved_model.pb"))


def load_exported_model(family: Family, path: str, with_head: bool = True) -> keras.Model:
    """The task model (backbone and head) of a SavedModel we exported, with its weights as exported (cast to
    float32). The SavedModel lists its variables by their `exported_weights` keys (exports since this reader;
    older ones are refused, saying what to use instead). `with_head`: the head's weights must be there too
    (training continues the objective); without, a backbone-only export loads and the head keeps its initial
    weights."""
    info = read_model_info(path) or {}
    saved = info.get("weights")
    if not saved:
        raise ValueError(f"{path}: this SavedModel does not list its weights by name (exported before that was "
                         "written): start from the training folder or the transformers checkpoint it came from")
    if info.get("backbone_class") != family.backbone.__name__:
        raise ValueError(f"{path} holds a {info.get('backbone_class')} model, which {family.name} is not: "
                         "set --family to the model's family")
    if with_head and saved["holder"] != "task_model":
        raise ValueError(f"{path} holds the backbone without its {family.objective.name} head (an encoder-only "
                         "or fine-tuned export): start from a SavedModel written with its head, such as the "
                         "pipeline's Trainer or prottrans-train --export-dir writes")
    model = build_task_model(family, info["backbone_config"], info.get("task_model_options"))
    backbone = model.backbone
    exported = dict(zip(saved["paths"], getattr(tf.saved_model.load(path), WEIGHTS_COLLECTION)))
    targets = exported_weights(model if saved["holder"] == "task_model" else backbone, backbone)
    missing, unplaced = [key for key in targets if key not in exported], [key for key in exported if key not in targets]
    for keys, problem in ((missing, "lacks {} of the model's weights"),
                          (unplaced, "holds {} weights that the model its config builds has no place for")):
        if keys:
            raise ValueError(f"{path}: the SavedModel {problem.format(len(keys))} "
                             f"({', '.join(keys[:3])}{', …' if len(keys) > 3 else ''})")
    for key, weight in targets.items():
        if tuple(exported[key].shape) != tuple(weight.shape):
            raise ValueError(f"{path}: {key} is {tuple(exported[key].shape)} in the SavedModel, "
                             f"{tuple(weight.shape)} in the model its config builds")
        weight.assign(tf.cast(exported[key], weight.dtype))
    return model
