"""Causal LM with memory (ProtTXL): the next token of streams of ``[CLS] residues [SEP]``, segment after segment,
each batch lane's memory carried from one training batch to the next.

No-context floor: the unigram entropy of that token stream, specials included.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from models import vocabulary
from models.input_pipeline import RESET, SEGMENTS, TOKEN_IDS, InputConfig, stream_segments
from models.objectives import scoring
from models.objectives.composition import entropy, probabilities
from models.objectives.objective import TARGET_IDS, TARGET_WEIGHTS
from models.objectives.stream_lm import StreamLM, StreamObjective


@keras.saving.register_keras_serializable(package="prottrans")
class CausalLM(StreamLM):
    """``{"token_ids": [lanes, length], "reset": [lanes]}`` → logits ``[lanes, length, vocabulary]``.

    Row b of every batch continues lane b's stream of proteins, so the memory the previous batch left is the
    context of this one; ``reset`` is 1 where a lane starts over (the first batch of a run), and zeroes its
    memory (:class:`models.objectives.stream_lm.LaneMemory`).
    """

    def __init__(self, backbone, lanes: int = 1, **kwargs):
        if not backbone.memory_length:
            raise ValueError("a causal LM trained on segment streams needs a memory_length > 0")
        super().__init__(backbone, lanes, **kwargs)

    def call(self, inputs, training=None):
        if RESET not in inputs:  # one segment read on its own (validation): from a zero memory, no lane touched
            return self.head(self.backbone.forward(inputs[TOKEN_IDS], training=training).hidden)
        state = self.backbone.forward(inputs[TOKEN_IDS], memory=self.lane_memory.read(inputs[RESET]),
                                      training=training)
        self.lane_memory.write(state.memory)
        return self.head(state.hidden)


def causal_lm_dataset(files: Sequence[str], config: InputConfig,
                      input_context: tf.distribute.InputContext | None = None,
                      repeat: bool = True) -> tf.data.Dataset:
    """Segment batches ``[lanes, sequence_length]`` of per-lane streams
    (:func:`models.input_pipeline.stream_segments`); the targets are the next tokens."""
    lanes, length = config.batch_size, config.sequence_length
    segments = stream_segments(files, config, input_context, repeat)
    return segments.map(lambda batch: {
        TOKEN_IDS: batch[SEGMENTS][:, :-1],
        TARGET_IDS: batch[SEGMENTS][:, 1:],
        TARGET_WEIGHTS: tf.ones([lanes, length], tf.float32),
        RESET: batch[RESET],
    }).prefetch(tf.data.AUTOTUNE)


def causal_lm_floor(counts: Mapping[str, float], sequences: int) -> float:
    residues = probabilities(counts) * sum(counts.values())
    tokens = np.concatenate([residues, [sequences, sequences]])  # one [CLS] and one [SEP] per protein
    return entropy(tokens / tokens.sum())


class CausalLanguageModeling(StreamObjective):
    name = "causal_lm"
    description = "causal LM on segment streams with memory"
    accuracy_metric = "next_token_accuracy"

    def floor(self, counts, sequences):
        return causal_lm_floor(counts, sequences)

    def task_model(self, backbone, lanes=1):
        return CausalLM(backbone, lanes)

    def dataset(self, files, config, input_context=None, backbone=None, repeat=True):
        return causal_lm_dataset(files, config, input_context, repeat)

    def serving_signatures(self, task_model):
        """``log_likelihood`` (:mod:`models.objectives.scoring`): each token after ``[CLS]`` — the residues and
        ``[SEP]`` — given those before it, from a zero memory."""

        def token_log_likelihoods(token_ids):
            logits = tf.cast(task_model({TOKEN_IDS: token_ids[:, :-1]}, training=False), tf.float32)
            targets = token_ids[:, 1:]
            log_probs = tf.gather(tf.nn.log_softmax(logits, axis=-1),
                                  vocabulary.checkpoint_rows(targets, task_model.backbone.token_rows), batch_dims=2)
            return log_probs * tf.cast(targets != vocabulary.PAD_ID, tf.float32)

        return scoring.likelihood_signature(task_model.backbone, token_log_likelihoods)


CAUSAL_LM = CausalLanguageModeling()
