"""The no-context floor equals the best context-free loss measured on the objectives' own batches."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import schema
from models import vocabulary
from models.input_pipeline import TOKEN_IDS, InputConfig
from models.objectives.causal_lm import causal_lm_dataset
from models.objectives.denoising import denoising_batch
from models.objectives.masked_lm import MASK_POSITIONS, MaskingConfig, mask_batch
from models.objectives.objective import TARGET_IDS, TARGET_WEIGHTS
from models.objectives.permutation_lm import permutation_batch
from models.training.floor import no_context_floor, residue_counts

# A skewed composition over four residues, so a floor that ignored it would be visibly off.
COMPOSITION = {"A": 0.5, "L": 0.3, "W": 0.15, "C": 0.05}


def synthetic_sequences(count: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters, weights = zip(*COMPOSITION.items())
    return ["".join(rng.choice(letters, size=length, p=weights)) for _ in range(count)]


def conditional_entropy(pairs: collections.Counter) -> float:
    """H(target | seen), in nats, of the empirical joint: the loss of the best predictor that sees only `seen`."""
    total = sum(pairs.values())
    seen_totals = collections.Counter()
    for (seen, _), count in pairs.items():
        seen_totals[seen] += count
    return -sum(count / total * np.log(count / seen_totals[seen]) for (seen, _), count in pairs.items())


def test_the_masked_lm_floor_is_the_best_guess_from_the_input_token_alone():
    sequences = synthetic_sequences(400, 62)
    ids, _ = vocabulary.encode(tf.constant(sequences))
    pairs = collections.Counter()
    for index in range(30):
        batch = mask_batch(ids, tf.constant([index, 7], tf.int64), MaskingConfig().max_predictions(64))
        seen = tf.gather(batch[TOKEN_IDS], batch[MASK_POSITIONS], batch_dims=1).numpy()
        valid = batch[TARGET_WEIGHTS].numpy() > 0
        pairs.update(zip(seen[valid].tolist(), batch[TARGET_IDS].numpy()[valid].tolist()))
    measured = conditional_entropy(pairs)
    assert no_context_floor("masked_lm", COMPOSITION, 400) == pytest.approx(measured, abs=0.01)
    # what the 10% kept / 10% random inputs reveal lowers the floor below the composition's entropy
    assert no_context_floor("masked_lm", COMPOSITION, 400) < no_context_floor("permutation_lm", COMPOSITION, 400)


def test_the_permutation_lm_floor_is_the_entropy_of_its_targets():
    sequences = synthetic_sequences(300, 62, seed=1)
    ids, _ = vocabulary.encode(tf.constant(sequences))
    targets = collections.Counter()
    for index in range(10):
        batch = permutation_batch(ids, tf.constant([index, 3], tf.int64), max_predictions=11)
        valid = batch[TARGET_WEIGHTS].numpy() > 0
        targets.update(("any", target) for target in batch[TARGET_IDS].numpy()[valid].tolist())
    assert no_context_floor("permutation_lm", COMPOSITION, 300) == pytest.approx(conditional_entropy(targets),
                                                                                   abs=0.01)


def test_the_causal_lm_floor_counts_the_special_tokens_of_the_stream(tmp_path):
    sequences = synthetic_sequences(200, 30, seed=2)
    path = str(tmp_path / "data-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for index, sequence in enumerate(sequences):
            writer.write(schema.encode_example(f"p{index}", sequence.encode(), "fasta", -1))
    targets = collections.Counter()
    for batch in causal_lm_dataset([path], InputConfig(sequence_length=32, batch_size=2), repeat=False):
        targets.update(("any", target) for target in batch[TARGET_IDS].numpy().ravel().tolist())
    counts, proteins = residue_counts([path])
    assert proteins == 200 and sum(counts.values()) == 200 * 30
    assert no_context_floor("causal_lm", counts, proteins) == pytest.approx(conditional_entropy(targets), abs=0.02)


def test_the_denoising_floor_is_the_best_guess_from_the_aligned_input_token():
    sequences = synthetic_sequences(300, 40, seed=3)
    ids, _ = vocabulary.encode(tf.constant(sequences))
    pairs = collections.Counter()
    for index in range(10):
        batch = denoising_batch(ids, tf.constant([index, 5], tf.int64))
        valid = batch[TARGET_WEIGHTS].numpy() > 0
        # a context-free decoder knows which input token sits at its position: itself, [MASK] or </s>
        pairs.update(zip(batch[TOKEN_IDS].numpy()[valid].tolist(), batch[TARGET_IDS].numpy()[valid].tolist()))
    counts = {residue: share * 300 * 40 for residue, share in COMPOSITION.items()}
    assert no_context_floor("denoising", counts, 300) == pytest.approx(conditional_entropy(pairs), abs=0.01)
