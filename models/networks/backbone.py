"""What every family's backbone offers the rest of the stack (training, embedding, export, probes)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import tensorflow as tf


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
