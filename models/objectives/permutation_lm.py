"""Permutation LM (ProtXLNet): residues predicted from other positions in a sampled factorisation order, through
XLNet's two-stream attention.

Batches come from the same cropped, length-bucketed proteins as the masked LM's, or, for a backbone with memory,
from segments of per-lane streams (each lane's memory of the previous segment is context for every position,
targets included).

No-context floor: the targets are residues predicted without their context: the unigram entropy H(p).
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import tensorflow as tf

from models import vocabulary
from models.input_pipeline import RESET, SEGMENTS, TOKEN_IDS, InputConfig, length_batches, seeds, stream_segments
from models.objectives import scoring
from models.objectives.composition import entropy, probabilities
from models.objectives.objective import TARGET_IDS, TARGET_WEIGHTS
from models.objectives.stream_lm import StreamLM, StreamObjective

PERMUTATION_MASK = "permutation_mask"
TARGET_MAPPING = "target_mapping"
PREDICT_ONE_IN = 6  # XLNet's partial prediction: the last 1/K of each permutation is predicted, K = 6


@keras.saving.register_keras_serializable(package="prottrans")
class PermutationLM(StreamLM):
    """``{"token_ids", "permutation_mask", "target_mapping"[, "reset"]}`` → logits ``[batch, targets, vocabulary]``:
    XLNet's query stream at the targets, scored by the tied LM head.

    With a backbone memory (`memory_length` > 0), batches are segments of per-lane streams (as Transformer-XL's)
    and each lane's memory of the previous segment is context for every position, targets included.
    """

    def call(self, inputs, training=None):
        memory = self.lane_memory.read(inputs[RESET]) if self.lane_memory and RESET in inputs else None
        state = self.backbone.forward(inputs[TOKEN_IDS], memory=memory, permutation_mask=inputs[PERMUTATION_MASK],
                                      target_mapping=inputs[TARGET_MAPPING], training=training)
        if memory is not None:
            self.lane_memory.write(state.memory)
        return self.head(state.query)


def permutation_batch(token_ids: tf.Tensor, seed: tf.Tensor, max_predictions: int,
                      predict_one_in: int = PREDICT_ONE_IN) -> dict[str, tf.Tensor]:
    """XLNet's inputs for a padded batch of ``[CLS] residues [SEP]`` ids.

    A random factorisation order per sequence: specials first (context only, never predicted), then residues;
    the last 1/`predict_one_in` of the residues in that order are the targets. ``permutation_mask[b, i, j]`` is 1
    where position i may not see j: j is a target that comes at or after i in the order (so no position sees a
    target after it, and a target's query stream never sees itself). ``target_mapping`` ``[b, m, length]`` is
    one-hot from the m target slots (in position order, zero rows past the targets) to their positions.
    """
    shape = tf.shape(token_ids)
    length = shape[1]
    is_residue = token_ids >= vocabulary.FIRST_RESIDUE_ID
    keys = tf.where(is_residue, tf.random.stateless_uniform(shape, seed), -1.0)
    residues = tf.reduce_sum(tf.cast(is_residue, tf.int32), axis=1)
    # never more targets than slots: a target hidden from the context must also be scored
    targets_per_row = tf.minimum(tf.where(residues > 0, (residues + predict_one_in - 1) // predict_one_in, 0),
                                 max_predictions)
    # order_rank 0 = the largest key; the targets are the largest keys, predicted in order of their rank
    order_rank = tf.argsort(tf.argsort(keys, axis=1, direction="DESCENDING"), axis=1)
    is_target = order_rank < targets_per_row[:, None]
    rank = tf.where(is_target, order_rank, -1)
    # i may not see target j unless j comes strictly before i (a non-target i, rank -1, sees no target)
    permutation_mask = is_target[:, None, :] & (rank[:, None, :] >= rank[:, :, None])
    positions = tf.range(length)[None, :]
    slots = tf.sort(tf.where(is_target, positions, length + positions), axis=1)[:, :max_predictions]
    slots = tf.pad(slots, [[0, 0], [0, max_predictions - tf.shape(slots)[1]]], constant_values=2 * length)
    valid = slots < length
    safe = tf.where(valid, slots, 0)
    return {
        TOKEN_IDS: token_ids,
        PERMUTATION_MASK: tf.cast(permutation_mask, tf.float32),
        TARGET_MAPPING: tf.one_hot(safe, length) * tf.cast(valid, tf.float32)[..., None],
        TARGET_IDS: tf.where(valid, tf.gather(token_ids, safe, batch_dims=1), vocabulary.PAD_ID),
        TARGET_WEIGHTS: tf.cast(valid, tf.float32),
    }


def permutation_lm_dataset(files: Sequence[str], config: InputConfig,
                           input_context: tf.distribute.InputContext | None = None,
                           repeat: bool = True, streams: bool = False) -> tf.data.Dataset:
    """Permutation-LM batches (see :func:`permutation_batch`), built on the fly from cropped, bucketed batches,
    or with `streams` from segments of per-lane streams (with their ``reset``) for a model with memory."""
    # a segment of a stream can be all residues; a cropped protein has its two specials
    max_predictions = math.ceil((config.sequence_length - (0 if streams else 2)) / PREDICT_ONE_IN)
    if streams:
        segments = tf.data.Dataset.zip(stream_segments(files, config, input_context, repeat), seeds(config.seed, 3))
        return segments.map(
            lambda batch, seed: {**permutation_batch(batch[SEGMENTS][:, :-1], seed, max_predictions),
                                 RESET: batch[RESET]},
            num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    batches = tf.data.Dataset.zip(length_batches(files, config, input_context, repeat), seeds(config.seed, 3))
    return batches.map(lambda ids, seed: permutation_batch(ids, seed, max_predictions),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class PermutationLanguageModeling(StreamObjective):
    name = "permutation_lm"
    description = "permutation LM (two-stream attention)"
    accuracy_metric = "target_accuracy"

    def floor(self, counts, sequences):
        return entropy(probabilities(counts))

    def task_model(self, backbone, lanes=1):
        return PermutationLM(backbone, lanes)

    def dataset(self, files, config, input_context=None, backbone=None, repeat=True):
        return permutation_lm_dataset(files, config, input_context, repeat,
                                      streams=backbone is not None and self.keeps_memory(backbone))

    def serving_signatures(self, task_model):
        """``log_likelihood`` (:mod:`models.objectives.scoring`) in the left-to-right order: each residue through
        the query stream, seeing the residues before it and the special tokens (context, as in training)."""

        def token_log_likelihoods(token_ids):
            is_residue = token_ids >= vocabulary.FIRST_RESIDUE_ID
            positions = tf.range(tf.shape(token_ids)[1])
            # i may not see residue j at or after it; everything else (the specials) is context
            later = positions[None, :] >= positions[:, None]
            permutation_mask = tf.cast(is_residue[:, None, :] & later[None], tf.float32)
            target_mapping = tf.linalg.diag(tf.cast(is_residue, tf.float32))  # one query per token, scored at residues
            logits = tf.cast(task_model({TOKEN_IDS: token_ids, PERMUTATION_MASK: permutation_mask,
                                         TARGET_MAPPING: target_mapping}, training=False), tf.float32)
            log_probs = tf.gather(tf.nn.log_softmax(logits, axis=-1),
                                  vocabulary.checkpoint_rows(token_ids, task_model.backbone.token_rows), batch_dims=2)
            return log_probs * tf.cast(is_residue, tf.float32)

        return scoring.likelihood_signature(task_model.backbone, token_log_likelihoods)


PERMUTATION_LM = PermutationLanguageModeling()
