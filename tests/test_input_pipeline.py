"""The masked-LM input pipeline: length buckets, random crops and BERT masking, deterministic for a seed."""

from __future__ import annotations

import random

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import schema
from models import vocabulary
from models.input_pipeline import InputConfig
from models.objectives.masked_lm import MaskingConfig, masked_lm_dataset

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Four gzip shards written with the record schema: 400 random proteins of 5 to 400 residues."""
    directory = tmp_path_factory.mktemp("records")
    rng = random.Random(0)
    sequences = ["".join(rng.choice(RESIDUES) for _ in range(rng.randint(5, 400))) for _ in range(400)]
    paths = [str(directory / f"data-0000{i}-of-00004.tfrecord.gz") for i in range(4)]
    writers = [tf.io.TFRecordWriter(p, tf.io.TFRecordOptions(compression_type="GZIP")) for p in paths]
    for i, sequence in enumerate(sequences):
        writers[i % 4].write(schema.encode_example(f"p{i}", sequence.encode(), "fasta", -1))
    for writer in writers:
        writer.close()
    return paths, sequences


NO_MASKING = MaskingConfig(selection_rate=0.0)


def batches(paths, config, n, **kwargs):
    return [{k: v.numpy() for k, v in b.items()} for b in masked_lm_dataset(paths, config, **kwargs).take(n)]


def unmasked(batch):
    """The token ids with each masked position restored to its original id."""
    ids = batch["token_ids"].copy()
    for row in range(ids.shape[0]):
        for position, original, weight in zip(batch["mask_positions"][row], batch["target_ids"][row],
                                              batch["target_weights"][row]):
            if weight:
                ids[row, position] = original
    return ids


def test_batches_come_in_bucket_shapes_with_cls_and_sep(shards):
    paths, _ = shards
    config = InputConfig(sequence_length=256, batch_size=8, seed=1)
    assert config.bucket_lengths == (64, 128, 256)
    for batch in batches(paths, config, 20):
        ids = batch["token_ids"]
        assert ids.shape[0] == 8 and ids.shape[1] in config.bucket_lengths
        assert (ids[:, 0] == vocabulary.CLS_ID).all()
        assert ((ids == vocabulary.SEP_ID).sum(axis=1) == 1).all()
        assert batch["mask_positions"].shape == (8, MaskingConfig().max_predictions(config.sequence_length))


def test_restoring_the_masks_gives_a_window_of_a_real_sequence(shards):
    paths, sequences = shards
    config = InputConfig(sequence_length=128, batch_size=4, seed=2)
    for batch in batches(paths, config, 10):
        for row in unmasked(batch):
            residues = vocabulary.decode(row)
            assert 1 <= len(residues) <= 126
            assert any(residues in sequence for sequence in sequences)


def test_masking_follows_bert_rates_and_never_touches_special_tokens(shards):
    paths, _ = shards
    config = InputConfig(sequence_length=256, batch_size=16, seed=3)
    replaced_by = {"mask": 0, "same": 0, "random": 0}
    selected = residues = 0
    for batch in batches(paths, config, 25):
        original = unmasked(batch)
        residues += int((original >= vocabulary.FIRST_RESIDUE_ID).sum())
        for row in range(original.shape[0]):
            for position, weight in zip(batch["mask_positions"][row], batch["target_weights"][row]):
                if not weight:
                    continue
                selected += 1
                assert original[row, position] >= vocabulary.FIRST_RESIDUE_ID  # never [CLS]/[SEP]/[PAD]
                now = batch["token_ids"][row, position]
                assert now == vocabulary.MASK_ID or now >= vocabulary.FIRST_RESIDUE_ID
                replaced_by["mask" if now == vocabulary.MASK_ID else
                            "same" if now == original[row, position] else "random"] += 1
    assert 0.13 < selected / residues < 0.16
    shares = {k: v / selected for k, v in replaced_by.items()}
    assert 0.77 < shares["mask"] < 0.83
    # A random residue equals the original 1 time in 21, so "same" is 10% + a little, "random" a little under.
    assert 0.08 < shares["same"] < 0.14 and 0.07 < shares["random"] < 0.12


def test_the_same_seed_gives_the_same_batches_and_another_seed_others(shards):
    paths, _ = shards
    first = batches(paths, InputConfig(sequence_length=128, batch_size=4, seed=7), 5)
    again = batches(paths, InputConfig(sequence_length=128, batch_size=4, seed=7), 5)
    other = batches(paths, InputConfig(sequence_length=128, batch_size=4, seed=8), 5)
    for a, b in zip(first, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert any(a["token_ids"].shape != c["token_ids"].shape or (a["token_ids"] != c["token_ids"]).any()
               for a, c in zip(first, other))


def test_one_pass_without_repeat_sees_every_record_once(shards):
    paths, sequences = shards
    config = InputConfig(sequence_length=512, batch_size=7, seed=0)
    seen = [vocabulary.decode(row) for batch in batches(paths, config, 1000, repeat=False, masking=NO_MASKING)
            for row in batch["token_ids"]]
    assert sorted(s for s in seen if s) == sorted(sequences)


def test_input_pipelines_of_a_strategy_read_disjoint_files(shards):
    paths, sequences = shards
    config = InputConfig(sequence_length=512, batch_size=5)
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id)
        seen.append({vocabulary.decode(row) for batch in batches(paths, config, 1000, input_context=context,
                                                                 repeat=False, masking=NO_MASKING) for row in batch["token_ids"]})
    assert not (seen[0] & seen[1]) and (seen[0] | seen[1]) - {""} == set(sequences)


def test_more_pipelines_than_files_is_a_clear_error(shards):
    paths, _ = shards
    context = tf.distribute.InputContext(num_input_pipelines=8, input_pipeline_id=0)
    with pytest.raises(ValueError, match="4 files cannot be shared by 8 input pipelines"):
        masked_lm_dataset(paths, InputConfig(sequence_length=128, batch_size=2), input_context=context)
