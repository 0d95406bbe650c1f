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
from models.networks.backbone import Backbone, max_residues

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


def embed_strings(backbone: Backbone, sequences: tf.Tensor, window: "Window | None" = None) -> dict[str, tf.Tensor]:
    """Raw sequence strings ``[batch]`` → the signature outputs, tokenised in the graph.

    A backbone with a residue limit embeds longer sequences in overlapping windows (`window`, by default
    :func:`default_window`) stitched here in the graph, so every caller — TF Serving included — gets one embedding
    per residue at any length; a batch within the limit takes the plain path, untouched by windows.
    """
    layout = vocabulary.layout_of(backbone)
    residues = vocabulary.checked_residues(sequences)
    lengths = tf.cast(residues.row_lengths(), tf.int32)

    def whole() -> dict[str, tf.Tensor]:
        token_ids = vocabulary.add_special_tokens(residues, layout).to_tensor(default_value=vocabulary.PAD_ID)
        return pool(backbone(token_ids, training=False), lengths, layout)

    window = window or default_window(backbone)
    if window is None:
        return finite(whole())
    longest = tf.reduce_max(tf.concat([lengths, [0]], 0))
    return finite(tf.cond(longest <= window.residues, whole, lambda: _in_windows(backbone, residues, layout, window)))


def finite(outputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """`outputs`, refused in the graph (an InvalidArgumentError naming the first sequence) where an embedding is
    not finite — an overflow in half precision is an error, never an answer."""
    bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(outputs["residue_embeddings"]), axis=[1, 2]))
    first = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [
        "the model's embedding of a sequence is not finite (an overflow: try a float32 or bfloat16 export): "
        "sequence", first])
    with tf.control_dependencies([check]):
        return {name: tf.identity(value) for name, value in outputs.items()}


class Window(NamedTuple):
    """How a backbone with a residue limit embeds longer sequences: windows of `residues`, neighbours sharing
    `overlap` residues, the last window ending at the sequence's end; a residue in several windows is taken from
    the one where it is most central (``central``) or averaged over them (``mean``)."""

    residues: int
    overlap: int
    stitch: str = "central"


STITCHES = ("central", "mean")


def default_window(backbone: Backbone) -> Window | None:
    """Windows as long as the backbone takes, overlapping by a quarter; None for a backbone without a limit."""
    limit = max_residues(backbone)
    return None if limit is None else Window(limit, limit // 4)


def _in_windows(backbone: Backbone, residues: tf.RaggedTensor, layout: str, window: Window) -> dict[str, tf.Tensor]:
    """The signature outputs of ragged residue ids ``[batch, (length)]``, each sequence embedded in windows."""
    if window.stitch not in STITCHES or not 0 <= window.overlap < window.residues:
        raise ValueError(f"{window}: stitch must be one of {STITCHES}, and 0 <= overlap < residues")
    size, stride = window.residues, window.residues - window.overlap
    lengths = tf.cast(residues.row_lengths(), tf.int32)
    counts = tf.where(lengths <= size, 1, (lengths - size + stride - 1) // stride + 1)  # windows per sequence
    owner = tf.repeat(tf.range(tf.size(lengths)), counts)  # the sequence of each window
    place = tf.ragged.range(counts).flat_values  # the window's place in its sequence
    owner_length = tf.gather(lengths, owner)
    start = tf.minimum(place * stride, tf.maximum(owner_length - size, 0))
    width = tf.minimum(owner_length, size)
    offsets = tf.ragged.range(width)  # [windows, (width)]: each window's positions
    window_of = offsets.value_rowids()
    # Every window residue's index among the batch's residues (flat, sequence after sequence).
    first = tf.gather(tf.cast(residues.row_starts(), tf.int32), owner) + start  # each window's first residue
    targets = offsets.flat_values + tf.gather(first, window_of)
    window_ids = tf.RaggedTensor.from_value_rowids(tf.gather(residues.flat_values, targets), window_of,
                                                   nrows=tf.size(width, out_type=tf.int64))
    token_ids = vocabulary.add_special_tokens(window_ids, layout).to_tensor(default_value=vocabulary.PAD_ID)
    hidden = pool(backbone(token_ids, training=False), width, layout)["residue_embeddings"]
    values = tf.gather_nd(hidden, tf.stack([tf.cast(window_of, tf.int32), offsets.flat_values], axis=1))
    total = tf.size(residues.flat_values)
    if window.stitch == "mean":
        stitched = tf.math.unsorted_segment_mean(values, targets, total)
    else:  # the window where the residue is nearest the centre (ties: the earlier window)
        distance = tf.abs(2 * offsets.flat_values - tf.gather(width - 1, window_of))
        key = tf.cast(distance, tf.int64) * (1 << 32) + tf.cast(tf.gather(place, window_of), tf.int64)
        chosen = tf.equal(key, tf.gather(tf.math.unsorted_segment_min(key, targets, total), targets))
        stitched = tf.math.unsorted_segment_sum(tf.boolean_mask(values, chosen), tf.boolean_mask(targets, chosen),
                                                total)
    per_sequence = tf.RaggedTensor.from_row_lengths(stitched, tf.cast(lengths, tf.int64))
    return {
        "residue_embeddings": per_sequence.to_tensor(0.0),
        "protein_embeddings": tf.reduce_sum(per_sequence, axis=1) / tf.cast(tf.maximum(lengths, 1), tf.float32)[:, None],
        "lengths": lengths,
    }


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
    residues: a model this project did not write need not count characters as we do). Without
    ``residue_embeddings`` (not asked for) each row's residues are a ``[length, 0]`` array."""
    proteins, lengths = np.asarray(outputs["protein_embeddings"]), np.asarray(outputs["lengths"])
    residues = np.asarray(outputs["residue_embeddings"]) if "residue_embeddings" in outputs else \
        np.zeros((len(lengths), int(lengths.max(initial=0)), 0), proteins.dtype)
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


def embed(backbone: Backbone, sequences: Sequence[str], max_tokens_per_batch: int = 16384) -> list[ProteinEmbedding]:
    """Embeddings of each sequence (any length: see :func:`embed_strings`), in input order."""
    return embed_with_limit(_embed_function(backbone), sequences, None, max_tokens_per_batch)


_EMBED_FUNCTIONS: "weakref.WeakKeyDictionary[Backbone, Callable]" = weakref.WeakKeyDictionary()


def _embed_function(backbone: Backbone) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """One traced function per backbone, so repeated `embed` calls (a probe set in chunks) reuse its traces."""
    if backbone not in _EMBED_FUNCTIONS:
        _EMBED_FUNCTIONS[backbone] = tf.function(lambda batch: embed_strings(backbone, batch), reduce_retracing=True)
    return _EMBED_FUNCTIONS[backbone]


def embed_with_limit(run: Callable[[tf.Tensor], dict[str, tf.Tensor]], sequences: Sequence[str], limit: int | None,
                     max_tokens_per_batch: int) -> list[ProteinEmbedding]:
    """:func:`embed_in_batches` for a model that takes at most `limit` residues (None: any length), longer
    sequences embedded in pieces (see :func:`split_long`)."""
    pieces, pieces_of = split_long(sequences, limit)
    return join_pieces(embed_in_batches(run, pieces, max_tokens_per_batch), pieces_of)


def split_long(sequences: Sequence[str], limit: int | None) -> tuple[list[str], list[list[int]]]:
    """Sequences longer than `limit` cut into even consecutive pieces (for a model that does not window them
    itself): the pieces, and for each sequence the indices of its pieces."""
    pieces: list[str] = []
    pieces_of: list[list[int]] = []
    for index, sequence in enumerate(sequences):
        if not isinstance(sequence, str):
            raise TypeError(f"sequence {index} is {type(sequence).__name__}, not str")
        too_long = limit is not None and len(sequence) > limit
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
