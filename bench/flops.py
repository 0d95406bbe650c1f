"""What the benches share for model FLOP utilisation: a dense matmul peak measured in the same run, and the
FLOPs a transformer spends per token."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf


def matmul_peak(dtype: str, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large dense matmul: the denominator of the utilisation."""
    a = tf.random.normal([size, size], dtype=dtype)
    b = tf.random.normal([size, size], dtype=dtype)
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        result = matmul(a, b)
    result.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def non_embedding_parameters(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights if "embedding" not in w.path)


def flops_per_token(model, num_layers: int, hidden_dim: int, length: int) -> float:
    """Training FLOPs per token: 6 × non-embedding parameters + 12 × layers × hidden × length (attention)."""
    return 6 * non_embedding_parameters(model) + 12 * num_layers * hidden_dim * length
