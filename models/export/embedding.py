"""Embeddings as the serving signature defines them: per residue (specials and padding removed) and per protein (mean).

:func:`embed_strings` is the graph function behind the SavedModel signature; :func:`embed` is the Python
API for lists of sequences, batched by length under a residue budget.
"""

from __future__ import annotations

import weakref

from typing import Callable, NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from models import vocabulary
from models.networks.backbone import Backbone

SPECIAL_TOKENS_PER_SEQUENCE = 2  # at most, in any layout: what a batch's padding budget allows for


class ProteinEmbedding(NamedTuple):
    residues: np.ndarray  # [length, hidden]
    protein: np.ndarray  # [hidden]


def pool(hidden: tf.Tensor, lengths: tf.Tensor, layout: str = "cls_sep") -> dict[str, tf.Tensor]:
    """Backbone outputs ``[batch, specials + max_len, hidden]`` (tokens placed per `layout`) → the signature outputs.

    `residue_embeddings` ``[batch, max_len, hidden]`` (zero past each length), `protein_embeddings`
    ``[batch, hidden]`` (mean over residues; zero for an empty sequence), `lengths` ``[batch]`` int32.
    """
    leading, trailing = vocabulary.LAYOUTS[layout]
    hidden = tf.cast(hidden, tf.float32)
    max_len = tf.maximum(tf.shape(hidden)[1] - len(leading) - len(trailing), 0)  # 0 for an empty batch
    mask = tf.sequence_mask(lengths, max_len, dtype=tf.float32)[:, :, None]
    residues = hidden[:, len(leading) : len(leading) + max_len] * mask
    counts = tf.maximum(tf.cast(lengths, tf.float32), 1.0)[:, None]
    return {
        "residue_embeddings": residues,
        "protein_embeddings": tf.reduce_sum(residues, axis=1) / counts,
        "lengths": tf.cast(lengths, tf.int32),
    }


def embed_strings(backbone: Backbone, sequences: tf.Tensor) -> dict[str, tf.Tensor]:
    """Raw sequence strings ``[batch]`` → the signature outputs, tokenised in the graph."""
    layout = vocabulary.layout_of(backbone)
    token_ids, lengths = vocabulary.encode(sequences, layout=layout)
    limit = max_residues(backbone)
    # A clear InvalidArgumentError (gRPC INVALID_ARGUMENT in TF Serving) instead of a shape error deep inside.
    checks = [
        tf.debugging.assert_positive(tf.size(sequences), message="empty batch: send at least one sequence"),
        tf.debugging.Assert(tf.reduce_all(tf.not_equal(token_ids, vocabulary.UNK_ID)), [
            "a sequence holds characters that are not residues (allowed: the 20 amino acids, X, U, Z, O, B; "
            "upper or lower case)"]),
    ]
    if limit is not None:
        checks.append(tf.debugging.assert_less_equal(
            tf.reduce_max(tf.concat([lengths, [0]], 0)), tf.cast(limit, lengths.dtype),
            message=f"a sequence is longer than the model limit of {limit} residues; split it"))
    with tf.control_dependencies(checks):
        token_ids = tf.identity(token_ids)
    return pool(backbone(token_ids, training=False), lengths, layout)


def max_residues(backbone: Backbone) -> int | None:
    """The longest sequence the backbone can embed (None: no limit, for a backbone whose `max_sequence_length` is
    None — relative positions only, nothing sized by length)."""
    if backbone.max_sequence_length is None:
        return None
    leading, trailing = vocabulary.LAYOUTS[vocabulary.layout_of(backbone)]
    return backbone.max_sequence_length - len(leading) - len(trailing)


def length_batches(lengths: Sequence[int], max_tokens_per_batch: int) -> list[list[int]]:
    """Indices grouped longest first, each batch padded to its first (longest) member within the token
    budget; a sequence longer than the budget is a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches:
            padded_length = lengths[batches[-1][0]] + SPECIAL_TOKENS_PER_SEQUENCE
            if (len(batches[-1]) + 1) * padded_length <= max_tokens_per_batch:
                batches[-1].append(index)
                continue
        batches.append([index])
    return batches


def unpad(outputs: dict) -> list[ProteinEmbedding]:
    """One embedding per row of the signature's outputs, cut to the row's `lengths` (the model's own count of
    residues: a model this project did not write need not count characters as we do)."""
    residues, proteins = np.asarray(outputs["residue_embeddings"]), np.asarray(outputs["protein_embeddings"])
    lengths = np.asarray(outputs["lengths"])
    return [ProteinEmbedding(residues[row, : int(lengths[row])], proteins[row]) for row in range(len(lengths))]


def embed_in_batches(run: Callable[[tf.Tensor], dict[str, tf.Tensor]], sequences: Sequence[str],
                     max_tokens_per_batch: int) -> list[ProteinEmbedding]:
    """Call `run` (sequence strings → the signature outputs) on length batches; unpad the results, in input order."""
    results: list[ProteinEmbedding | None] = [None] * len(sequences)
    for batch in length_batches([len(s) for s in sequences], max_tokens_per_batch):
        outputs = run(tf.constant([sequences[i] for i in batch]))
        for index, embedded in zip(batch, unpad(outputs)):
            results[index] = embedded
    return results


def _chunks(sequence: str, limit: int) -> list[str]:
    """Even, consecutive pieces of at most `limit` residues."""
    count = -(-len(sequence) // limit)
    size = -(-len(sequence) // count)
    return [sequence[start : start + size] for start in range(0, len(sequence), size)]


def embed(backbone: Backbone, sequences: Sequence[str], max_tokens_per_batch: int = 16384,
          chunk_long: bool = False) -> list[ProteinEmbedding]:
    """Embeddings of each sequence, in input order.

    A sequence longer than the model takes raises ValueError, or with `chunk_long` is embedded in even
    consecutive pieces whose residue embeddings are concatenated (the protein vector is their mean).
    """
    return embed_with_limit(_embed_function(backbone), sequences, max_residues(backbone), max_tokens_per_batch,
                            chunk_long)


_EMBED_FUNCTIONS: "weakref.WeakKeyDictionary[Backbone, Callable]" = weakref.WeakKeyDictionary()


def _embed_function(backbone: Backbone) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """One traced function per backbone, so repeated `embed` calls (a probe set in chunks) reuse its traces."""
    if backbone not in _EMBED_FUNCTIONS:
        _EMBED_FUNCTIONS[backbone] = tf.function(lambda batch: embed_strings(backbone, batch), reduce_retracing=True)
    return _EMBED_FUNCTIONS[backbone]


def embed_with_limit(run: Callable[[tf.Tensor], dict[str, tf.Tensor]], sequences: Sequence[str], limit: int | None,
                     max_tokens_per_batch: int, chunk_long: bool) -> list[ProteinEmbedding]:
    """:func:`embed_in_batches` for a model that takes at most `limit` residues (None: no limit known)."""
    pieces, pieces_of = split_long(sequences, limit, chunk_long)
    return join_pieces(embed_in_batches(run, pieces, max_tokens_per_batch), pieces_of)


def split_long(sequences: Sequence[str], limit: int | None, chunk_long: bool = True) -> tuple[list[str], list[list[int]]]:
    """Sequences longer than `limit` cut into even consecutive pieces (or ValueError without `chunk_long`):
    the pieces, and for each sequence the indices of its pieces."""
    pieces: list[str] = []
    pieces_of: list[list[int]] = []
    for index, sequence in enumerate(sequences):
        if not isinstance(sequence, str):
            raise TypeError(f"sequence {index} is {type(sequence).__name__}, not str")
        too_long = limit is not None and len(sequence) > limit
        if too_long and not chunk_long:
            raise ValueError(f"sequence {index} has {len(sequence)} residues; this model takes at most {limit}")
        own = _chunks(sequence, limit) if too_long else [sequence]
        pieces_of.append(list(range(len(pieces), len(pieces) + len(own))))
        pieces.extend(own)
    return pieces, pieces_of


def join_pieces(embedded: Sequence[ProteinEmbedding], pieces_of: list[list[int]]) -> list[ProteinEmbedding]:
    """Per sequence: its pieces' residue embeddings concatenated; the protein vector is always the model's own,
    for a sequence in pieces the mean of its pieces' protein vectors weighted by their residues (for a model that
    pools by the mean, as ours do, exactly the mean of all its residue vectors)."""
    results = []
    for mine in pieces_of:
        if len(mine) == 1:
            results.append(embedded[mine[0]])
        else:
            sizes = np.array([len(embedded[i].residues) for i in mine], np.float64)
            protein = np.average(np.stack([embedded[i].protein for i in mine]), axis=0, weights=sizes)
            results.append(ProteinEmbedding(np.concatenate([embedded[i].residues for i in mine]),
                                            protein.astype(embedded[mine[0]].protein.dtype)))
    return results
