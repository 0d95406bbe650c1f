"""The fine-tuning model: a backbone with the probes' heads on its embeddings, trained together; LoRA on the backbone's
projections, and the merge that folds the LoRA weights back into a plain backbone for export."""

from __future__ import annotations

import keras
import numpy as np

from models import vocabulary
from models.export.embedding import pool
from models.export.predict import PROTEIN_HEAD, RESIDUE_HEAD

METHODS = ("lora", "full")
PROJECTIONS = (keras.layers.Dense, keras.layers.EinsumDense)
# Dense layers of a backbone that project embeddings rather than attend or transform positions: LoRA leaves them.
NOT_LORA = ("embedding_projection",)


class ProbeTaskModel(keras.Model):
    """``sequences`` (tf.string ``[batch]``) → the probes' outputs: ``ss3``/``ss8`` logits per residue from the residue
    CNN, ``location``/``membrane`` logits per protein from the FNN on the mean embedding; the embeddings are the
    serving signature's (specials removed, zero past each length), so the trained heads serve as the ``predict``
    signature's heads unchanged."""

    def __init__(self, backbone, heads: dict[str, keras.Model], **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.heads = heads
        self.layout = vocabulary.layout_of(backbone)

    def call(self, sequences, training=None):
        token_ids, lengths = vocabulary.encode(sequences, layout=self.layout)
        embedded = pool(self.backbone(token_ids, training=training), lengths, self.layout)
        outputs = {"lengths": embedded["lengths"]}
        if RESIDUE_HEAD in self.heads:
            outputs.update(self.heads[RESIDUE_HEAD](embedded["residue_embeddings"], training=training))
        if PROTEIN_HEAD in self.heads:
            outputs.update(self.heads[PROTEIN_HEAD](embedded["protein_embeddings"], training=training))
        return outputs


def _projections(backbone) -> list[keras.layers.Layer]:
    return [layer for layer in backbone._flatten_layers(include_self=False)
            if isinstance(layer, PROJECTIONS) and layer.name not in NOT_LORA]


def enable_lora(backbone, rank: int) -> list[str]:
    """LoRA of `rank` (Keras' own `enable_lora`) on every attention and feed-forward projection of `backbone` that is
    a Dense or EinsumDense layer; every other backbone weight is frozen (the projections' kernels and biases
    included). Returns the paths of the layers reached. ProtXLNet's and ProtTXL's relative attention holds raw
    weights, not layers: there LoRA reaches the feed-forward projections only."""
    reached = []
    for layer in _projections(backbone):
        layer.enable_lora(rank)
        reached.append(layer.path)
    if not reached:
        raise ValueError(f"{backbone.name} has no Dense or EinsumDense projection for LoRA: use --method full")
    for weight in backbone.weights:
        if "lora_kernel" not in weight.path:
            weight.trainable = False
    return reached


def merged_backbone(backbone):
    """A plain copy of `backbone` (same config) whose projections hold their LoRA weights merged into the kernels
    (Keras' `save_own_variables` merges them); a backbone without LoRA is copied as it is."""
    copy = backbone.__class__.from_config(backbone.get_config())
    copy.build((None, None))
    for source, target in zip(backbone._flatten_layers(include_self=True), copy._flatten_layers(include_self=True)):
        store: dict = {}
        source.save_own_variables(store)
        target.load_own_variables(store)
    return copy


def trainable_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
