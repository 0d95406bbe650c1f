"""The record of one training objective: what a family's model learns to predict, and the no-context floor (the
loss of the best model that ignores context, from the training data's residue composition)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping


@dataclass(frozen=True)
class Objective:
    """`floor(counts, sequences)`: the no-context floor in nats, from residue counts over `sequences` proteins."""

    name: str
    description: str
    floor: Callable[[Mapping[str, float], int], float]
