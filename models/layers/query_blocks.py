"""Self-attention in blocks of queries: the scores of one layer are ``[batch, heads, queries, keys]``, so a protein
of L residues holds heads × L² of them (ProtT5-XL on 34,350 residues: 151 GB per layer). Past
:data:`SCORE_BYTES` the attention layers score :func:`query_block` queries at a time against all keys, with the
same numerics, so memory beyond the projections grows linearly with the length."""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

SCORE_BYTES = 256 << 20  # float32 scores of one layer held whole up to this
SMALLEST_QUERY_BLOCK = 64


def query_block(batch: tf.Tensor, heads: int, length: tf.Tensor) -> tf.Tensor:
    """Queries per block such that a block's float32 scores fit :data:`SCORE_BYTES` (at least
    :data:`SMALLEST_QUERY_BLOCK`); `length` or more means one block: the plain path."""
    per_query = 4 * tf.cast(batch, tf.int64) * heads * tf.cast(tf.maximum(length, 1), tf.int64)
    return tf.cast(tf.maximum(SCORE_BYTES // per_query, SMALLEST_QUERY_BLOCK), tf.int32)


def over_query_blocks(length: tf.Tensor, block: tf.Tensor, attend: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
                      dtype: tf.DType, trailing: tuple[int, ...]) -> tf.Tensor:
    """``attend(start, stop)`` — the attention output ``[batch, stop − start, *trailing]`` of queries start…stop − 1
    — for every block, one block at a time in the graph, concatenated to ``[batch, length, *trailing]``."""
    blocks = (length + block - 1) // block
    order = [1, 0, *range(2, 2 + len(trailing))]  # blocks stack along their first axis: queries first, then back

    def one_block(index, outputs):
        start = index * block
        return index + 1, outputs.write(index, tf.transpose(attend(start, tf.minimum(start + block, length)), order))

    outputs = tf.TensorArray(dtype, size=blocks, infer_shape=False, element_shape=[None, None, *trailing])
    _, outputs = tf.while_loop(lambda index, _: index < blocks, one_block, [tf.constant(0), outputs])
    return tf.transpose(outputs.concat(), order)
