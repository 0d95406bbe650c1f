"""What every family's backbone offers the rest of the stack (training, embedding, export, probes)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import tensorflow as tf

from models import vocabulary


@runtime_checkable
class Backbone(Protocol):
    """A Keras layer or model: ``token_ids [batch, length]`` → hidden states ``[batch, length, hidden_dim]``.

    The special tokens sit as its `token_layout` says (an optional attribute; :data:`models.vocabulary.LAYOUTS`):
    ``[CLS] residues [SEP]`` by default, XLNet's own ``residues [SEP] [CLS]``, T5's ``residues </s>``.
    `max_sequence_length` counts the special tokens: the position table's size for families with one, the longest
    input the embedding API accepts for the others; None where nothing limits the length.
    """

    name: str
    hidden_dim: int
    vocabulary_size: int
    max_sequence_length: int | None
    built: bool

    def __call__(self, token_ids: tf.Tensor, training: bool | None = None) -> tf.Tensor: ...

    def get_config(self) -> dict[str, Any]: ...


def max_residues(backbone: Backbone) -> int | None:
    """The longest sequence the backbone takes in one pass (None: no limit, for a backbone whose
    `max_sequence_length` is None — relative positions only, nothing sized by length)."""
    if backbone.max_sequence_length is None:
        return None
    leading, trailing = vocabulary.LAYOUTS[vocabulary.layout_of(backbone)]
    return backbone.max_sequence_length - len(leading) - len(trailing)
