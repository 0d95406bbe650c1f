"""Masked LM (ProtBert, ProtAlbert): 15% of the residues selected; 80% of those become ``[MASK]``, 10% a uniformly
random residue, 10% are kept; the model predicts the selected residues.

No-context floor: at a masked position the input reveals nothing, so the best guess is the composition (entropy
H(p)); at a visible position (kept or replaced, equally likely) the input residue r is the target with probability
``p_r (1 + 1/K) / (p_r + 1/K)`` (kept, or a random draw that hit it), any other x with ``p_x (1/K) / (p_r + 1/K)``,
K the residue count. The floor is the mixture of both expected losses.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from models.input_pipeline import MaskingConfig
from models.objectives.composition import entropy, probabilities
from models.objectives.objective import Objective


def masked_lm_floor(counts: Mapping[str, float], masking: MaskingConfig = MaskingConfig()) -> float:
    p = probabilities(counts)
    uniform = 1.0 / len(p)
    visible = masking.random_token_rate + (1.0 - masking.mask_token_rate - masking.random_token_rate)
    kept_share = (visible - masking.random_token_rate) / visible if visible else 0.0
    visible_loss = 0.0
    for r in range(len(p)):
        # joint of (target x, visible input r): kept with x = r, or replaced by r whatever x was
        joint = (1.0 - kept_share) * p * uniform
        joint[r] += kept_share * p[r]
        posterior = joint / joint.sum()
        visible_loss -= float((joint[joint > 0] * np.log(posterior[joint > 0])).sum())
    return masking.mask_token_rate * entropy(p) + visible * visible_loss


MASKED_LM = Objective("masked_lm", "masked LM (15%, 80/10/10)", lambda counts, sequences: masked_lm_floor(counts))
