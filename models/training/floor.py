"""The no-context floor: the loss of the best model that ignores context, from the training data's residue
composition and the objective. ``context gain = floor − loss`` (nats) is the first number that says a model
learned anything beyond residue identity.

- Masked LM (15% selected; 80% ``[MASK]``, 10% a uniformly random residue, 10% kept): at a masked position the
  input reveals nothing, so the best guess is the composition (entropy H(p)); at a visible position (kept or
  replaced, equally likely) the input residue r is the target with probability ``p_r (1 + 1/K) / (p_r + 1/K)``
  (kept, or a random draw that hit it), any other x with ``p_x (1/K) / (p_r + 1/K)``, K the residue count. The
  floor is the mixture of both expected losses.
- Permutation LM: the targets are residues predicted from other positions: the unigram entropy H(p).
- Causal LM on streams of ``[CLS] residues [SEP]``: the unigram entropy of that token stream, specials included.
- Denoising (ProtT5: 15% of the residues masked, the decoder reconstructing ``residues </s>``): a visible residue
  and ``</s>`` are copied at no loss; a masked residue costs H(p). The floor is 15% of H(p), spread over all
  targets (residues and one ``</s>`` per protein).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from beam_jobs import schema
from models import vocabulary
from models.input_pipeline import MaskingConfig, compression_type

RESIDUE_TOKENS = vocabulary.TOKENS[vocabulary.FIRST_RESIDUE_ID:]
SAMPLE_SEQUENCES = 20_000  # enough for the composition to three decimals; a scan of seconds


def _probabilities(counts: Mapping[str, float]) -> np.ndarray:
    """The composition over our residue tokens (a residue outside them counts as X)."""
    vector = np.zeros(len(RESIDUE_TOKENS))
    for residue, count in counts.items():
        index = RESIDUE_TOKENS.index(residue) if residue in RESIDUE_TOKENS else RESIDUE_TOKENS.index("X")
        vector[index] += count
    if vector.sum() <= 0:
        raise ValueError("an empty composition has no floor")
    return vector / vector.sum()


def _entropy(probabilities: np.ndarray) -> float:
    nonzero = probabilities[probabilities > 0]
    return float(-(nonzero * np.log(nonzero)).sum())


def masked_lm_floor(counts: Mapping[str, float], masking: MaskingConfig = MaskingConfig()) -> float:
    p = _probabilities(counts)
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
    return masking.mask_token_rate * _entropy(p) + visible * visible_loss


def permutation_lm_floor(counts: Mapping[str, float]) -> float:
    return _entropy(_probabilities(counts))


def causal_lm_floor(counts: Mapping[str, float], sequences: int) -> float:
    residues = _probabilities(counts) * sum(counts.values())
    tokens = np.concatenate([residues, [sequences, sequences]])  # one [CLS] and one [SEP] per protein
    return _entropy(tokens / tokens.sum())


def denoising_floor(counts: Mapping[str, float], sequences: int, rate: float = 0.15) -> float:
    residues = sum(counts.values())
    return rate * _entropy(_probabilities(counts)) * residues / (residues + sequences)


def no_context_floor(objective: str, counts: Mapping[str, float], sequences: int) -> float:
    """The floor of `objective` for residue `counts` over `sequences` proteins."""
    if objective == "masked_lm":
        return masked_lm_floor(counts)
    if objective == "permutation_lm":
        return permutation_lm_floor(counts)
    if objective == "causal_lm":
        return causal_lm_floor(counts, sequences)
    if objective == "denoising":
        return denoising_floor(counts, sequences)
    raise ValueError(f"no floor for objective {objective!r}")


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
