"""Residue composition and entropy: what every objective's no-context floor is built from."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from models import vocabulary

RESIDUE_TOKENS = vocabulary.TOKENS[vocabulary.FIRST_RESIDUE_ID:]


def probabilities(counts: Mapping[str, float]) -> np.ndarray:
    """The composition over our residue tokens (a residue outside them counts as X)."""
    vector = np.zeros(len(RESIDUE_TOKENS))
    for residue, count in counts.items():
        index = RESIDUE_TOKENS.index(residue) if residue in RESIDUE_TOKENS else RESIDUE_TOKENS.index("X")
        vector[index] += count
    if vector.sum() <= 0:
        raise ValueError("an empty composition has no floor")
    return vector / vector.sum()


def entropy(p: np.ndarray) -> float:
    nonzero = p[p > 0]
    return float(-(nonzero * np.log(nonzero)).sum())
