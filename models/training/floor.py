"""The no-context floor of a training run: the loss of the best model that ignores context, from the training
data's residue composition and the objective (each objective's module in `models.objectives` says how).
``context gain = floor − loss`` (nats) is the first number that says a model learned anything beyond residue
identity.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from beam_jobs import schema
from models.input_pipeline import compression_type
from models.objectives import get_objective
from models.objectives.objective import Objective

SAMPLE_SEQUENCES = 20_000  # enough for the composition to three decimals; a scan of seconds


def no_context_floor(objective: Objective | str, counts: Mapping[str, float], sequences: int) -> float:
    """The floor of `objective` (a record or its name) for residue `counts` over `sequences` proteins."""
    objective = get_objective(objective) if isinstance(objective, str) else objective
    return objective.floor(counts, sequences)


def residue_counts(files: Sequence[str], limit: int = SAMPLE_SEQUENCES) -> tuple[dict[str, int], int]:
    """Residue counts and the number of proteins over the first `limit` records of `files` (in sorted order)."""
    files = sorted(files)
    records = tf.data.TFRecordDataset(files, compression_type=compression_type(files[0])).take(limit)
    totals = np.zeros(256, dtype=np.int64)
    proteins = 0
    for batch in records.batch(1024).map(lambda r: tf.io.parse_example(r, schema.feature_spec())[schema.SEQUENCE]):
        for sequence in batch.numpy():
            totals += np.bincount(np.frombuffer(sequence, np.uint8), minlength=256)
            proteins += 1
    return {chr(code): int(count) for code, count in enumerate(totals) if count}, proteins
