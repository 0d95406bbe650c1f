"""The checks every family's backbone passes (as keras-hub's `run_backbone_test` does for its models): output
shapes, the config round trip, the `.keras` round trip and the serving SavedModel round trip."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models import vocabulary
from models.export import embedding
from models.export.signatures import WEIGHTS_COLLECTION, export_saved_model
from models.networks.backbone import Backbone

SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQ", "MKT", "ACDEFGHIKLMNPQRSTVWYX"]


def _token_ids(backbone: Backbone) -> tf.Tensor:
    token_ids, _ = vocabulary.encode(tf.constant(SEQUENCES), layout=vocabulary.layout_of(backbone))
    return token_ids


def run_backbone_test(backbone: Backbone, tmp_path: Path) -> None:
    """`backbone` (freshly built from a preset) satisfies the shared contract."""
    token_ids = _token_ids(backbone)
    hidden = backbone(token_ids, training=False)
    assert isinstance(backbone, Backbone)
    assert hidden.shape == (len(SEQUENCES), token_ids.shape[1], backbone.hidden_dim)
    assert np.isfinite(hidden.numpy()).all()

    # config round trip: the same architecture, and with the same weights the same outputs
    clone = type(backbone).from_config(backbone.get_config())
    clone(token_ids)
    assert clone.get_config() == backbone.get_config()
    clone.set_weights(backbone.get_weights())
    np.testing.assert_allclose(clone(token_ids, training=False), hidden, atol=1e-5)

    # .keras round trip
    path = str(tmp_path / "backbone.keras")
    keras.saving.save_model(backbone, path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored(token_ids, training=False), hidden, atol=1e-5)

    # serving SavedModel round trip: raw strings in, the backbone's residue states out
    version = export_saved_model(backbone, str(tmp_path / "serving" / backbone.name))
    loaded = tf.saved_model.load(version)
    served = loaded.signatures["serving_default"](sequences=tf.constant(SEQUENCES))
    expected = embedding.embed_strings(backbone, tf.constant(SEQUENCES))
    for name in ("residue_embeddings", "protein_embeddings", "lengths"):
        np.testing.assert_allclose(served[name].numpy(), expected[name].numpy(), atol=1e-5)
    assert served["lengths"].numpy().tolist() == [len(s) for s in SEQUENCES]
    # each weight is stored once, whether the signatures use it or only training does (listed for --init-from):
    # a server loads no copy
    stored = sum(int(np.prod(shape)) for name, shape in tf.train.list_variables(f"{version}/variables/variables")
                 if name.endswith("VARIABLE_VALUE"))
    used = {id(v): v for signature in loaded.signatures.values() for v in signature.variables}
    listed = {id(v): v for v in getattr(loaded, WEIGHTS_COLLECTION)}
    assert stored == sum(int(np.prod(v.shape)) for v in {**used, **listed}.values())
    assert stored == sum(int(np.prod(weight.shape)) for weight in backbone.weights)
