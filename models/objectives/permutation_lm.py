"""Permutation LM (ProtXLNet): residues predicted from other positions in a sampled factorisation order.

No-context floor: the targets are residues predicted without their context: the unigram entropy H(p).
"""

from __future__ import annotations

from typing import Mapping

from models.objectives.composition import entropy, probabilities
from models.objectives.objective import Objective


def permutation_lm_floor(counts: Mapping[str, float]) -> float:
    return entropy(probabilities(counts))


PERMUTATION_LM = Objective("permutation_lm", "permutation LM (two-stream attention)",
                           lambda counts, sequences: permutation_lm_floor(counts))
