"""Inference on long proteins in blocks of positions, so that memory beyond the weights grows linearly with length.

Self-attention: the scores of one layer are ``[batch, heads, queries, keys]``, so a protein of L residues holds
heads × L² of them (ProtT5-XL on 34,350 residues: 151 GB per layer). Past :data:`SCORE_BYTES` the attention layers
score :func:`query_block` queries at a time against all keys. A position-wise feed-forward network is run on
:func:`position_block` positions at a time (ProtT5-XL's 16,384-wide inner activations of 5,000 residues are 328 MB
each). Both give the numerics of the whole computation: each block's rows are computed exactly as before.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

# Float32 scores of one layer held at once (each block's scores, bias and softmax are live together). 128 MiB: one
# block up to about 1,000 residues in ProtT5-XL, since a second block cost 3% at 1,000 (bench/prott5_xl.md).
SCORE_BYTES = 128 << 20
FEED_FORWARD_BYTES = 64 << 20  # float32 inner activations of a feed-forward network held at once
SMALLEST_BLOCK = 64


def _rows_within(budget: int, bytes_per_row: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.maximum(budget // bytes_per_row, SMALLEST_BLOCK), tf.int32)


def query_block(batch: tf.Tensor, heads: int, length: tf.Tensor) -> tf.Tensor:
    """Queries per block such that a block's float32 scores fit :data:`SCORE_BYTES` (at least
    :data:`SMALLEST_BLOCK`, which bounds position blocks too); `length` or more means one block."""
    return _rows_within(SCORE_BYTES, 4 * tf.cast(batch, tf.int64) * heads * tf.cast(tf.maximum(length, 1), tf.int64))


def position_block(batch: tf.Tensor, width: int) -> tf.Tensor:
    """Positions per block such that a block's float32 activations `width` wide fit :data:`FEED_FORWARD_BYTES` (at
    least :data:`SMALLEST_BLOCK`)."""
    return _rows_within(FEED_FORWARD_BYTES, 4 * tf.cast(tf.maximum(batch, 1), tf.int64) * width)


def over_blocks(length: tf.Tensor, block: tf.Tensor, compute: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
                dtype: tf.DType, trailing: tuple[int, ...]) -> tf.Tensor:
    """``compute(start, stop)`` — the output ``[batch, stop − start, *trailing]`` of positions start…stop − 1 — for
    every block, one block at a time in the graph, concatenated to ``[batch, length, *trailing]``."""
    blocks = (length + block - 1) // block
    order = [1, 0, *range(2, 2 + len(trailing))]  # blocks stack along their first axis: positions first, then back

    def one_block(index, outputs):
        start = index * block
        return index + 1, outputs.write(index, tf.transpose(compute(start, tf.minimum(start + block, length)), order))

    outputs = tf.TensorArray(dtype, size=blocks, infer_shape=False, element_shape=[None, None, *trailing])
    _, outputs = tf.while_loop(lambda index, _: index < blocks, one_block, [tf.constant(0), outputs],
                               parallel_iterations=1)  # one block's activations live at a time
    return tf.transpose(outputs.concat(), order)
