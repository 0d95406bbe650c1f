"""Causal LM with memory (ProtTXL): the next token of streams of ``[CLS] residues [SEP]``, segment after segment.

No-context floor: the unigram entropy of that token stream, specials included.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from models.objectives.composition import entropy, probabilities
from models.objectives.objective import Objective


def causal_lm_floor(counts: Mapping[str, float], sequences: int) -> float:
    residues = probabilities(counts) * sum(counts.values())
    tokens = np.concatenate([residues, [sequences, sequences]])  # one [CLS] and one [SEP] per protein
    return entropy(tokens / tokens.sum())


CAUSAL_LM = Objective("causal_lm", "causal LM on segment streams with memory", causal_lm_floor)
