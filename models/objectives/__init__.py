"""The training objectives, one module each (an :class:`~models.objectives.objective.Objective` record), by name."""

from __future__ import annotations

from models.objectives.causal_lm import CAUSAL_LM
from models.objectives.denoising import DENOISING
from models.objectives.masked_lm import MASKED_LM
from models.objectives.objective import Objective
from models.objectives.permutation_lm import PERMUTATION_LM

OBJECTIVES: dict[str, Objective] = {o.name: o for o in (MASKED_LM, PERMUTATION_LM, CAUSAL_LM, DENOISING)}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]
