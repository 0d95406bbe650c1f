"""Denoising (ProtT5): 15% of the residues masked, the decoder reconstructing ``residues </s>``.

No-context floor: a visible residue and ``</s>`` are copied at no loss; a masked residue costs H(p). The floor is
15% of H(p), spread over all targets (residues and one ``</s>`` per protein).
"""

from __future__ import annotations

from typing import Mapping

from models.objectives.composition import entropy, probabilities
from models.objectives.objective import Objective


def denoising_floor(counts: Mapping[str, float], sequences: int, rate: float = 0.15) -> float:
    residues = sum(counts.values())
    return rate * entropy(probabilities(counts)) * residues / (residues + sequences)


DENOISING = Objective("denoising", "single-residue denoising (15%)", denoising_floor)
