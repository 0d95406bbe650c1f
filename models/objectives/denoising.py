"""Denoising (ProtT5): single-residue denoising reconstructed by the decoder.

Elnaggar et al. (2021), "ProtTrans: Toward Understanding the Language of Life Through Self-Supervised Learning",
IEEE TPAMI 44(10), ProtT5 section: unlike the original T5, which masks spans and predicts only them, ProtT5 uses a
BART-like objective: 15% of the residues are masked one by one (1-gram masking), and the decoder reconstructs the
whole sequence. Here a masked residue's input token is ``[MASK]``; the decoder reads the sequence shifted right
after a ``[PAD]`` start token (T5's decoder start) and is trained on every position, ``</s>`` included.

No-context floor: a visible residue and ``</s>`` are copied at no loss; a masked residue costs H(p). The floor is
15% of H(p), spread over all targets (residues and one ``</s>`` per protein).

The backbone is an encoder that can make its decoder (``decoder_stack(num_layers)``) and owns the token embedding
the decoder shares (:class:`models.prott5.backbone.T5EncoderBackbone`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import tensorflow as tf

from models import vocabulary
from models.input_pipeline import TOKEN_IDS, InputConfig, length_batches, seeds
from models.objectives import scoring
from models.objectives.composition import entropy, probabilities
from models.objectives.objective import TARGET_IDS, TARGET_WEIGHTS, Objective

DECODER_IDS = "decoder_ids"
MASK_RATE = 0.15


@keras.saving.register_keras_serializable(package="prottrans")
class T5Denoising(keras.Model):
    """``{token_ids, decoder_ids}`` → logits ``[batch, target length, vocabulary]`` (float32). The LM head is the
    shared token embedding scaled by d_model^-0.5 (T5 v1.0, ProtT5), or a separate matrix
    (``tie_word_embeddings=False``, T5 v1.1). Without a decoder (`has_decoder` False: an encoder-only checkpoint
    such as the published half-precision ProtT5 encoder) only the backbone is built and used."""

    def __init__(self, backbone, num_decoder_layers: int | None = None,
                 tie_word_embeddings: bool = True, has_decoder: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_decoder_layers = num_decoder_layers or backbone.num_layers
        self.tie_word_embeddings = tie_word_embeddings
        self.has_decoder = has_decoder
        self.decoder = backbone.decoder_stack(self.num_decoder_layers) if has_decoder else None
        self.lm_head = None if tie_word_embeddings or not has_decoder else keras.layers.Dense(
            backbone.vocabulary_size, use_bias=False, name="lm_head")

    def build(self, input_shape):
        if not self.backbone.built:
            self.backbone.build((None, None))
        if self.decoder is not None:
            self.decoder.build((None, None, self.backbone.hidden_dim))
        if self.lm_head is not None:
            self.lm_head.build((None, None, self.backbone.hidden_dim))
        super().build(input_shape)

    def decode(self, encoded: tf.Tensor, encoder_padding: tf.Tensor, decoder_ids: tf.Tensor,
               training=None) -> tf.Tensor:
        if self.decoder is None:
            raise ValueError("this ProtT5 model has no decoder (an encoder-only checkpoint): it embeds, it does not "
                             "decode")
        embedding = self.backbone.token_embedding
        hidden = self.decoder(self.backbone.embed_tokens(decoder_ids), tf.zeros_like(decoder_ids, tf.bool), encoded,
                              encoder_padding, training=training)
        if self.lm_head is not None:
            return tf.cast(self.lm_head(hidden), tf.float32)
        # the tied head in float32: under a mixed policy the decoder's last norm gives bfloat16 or float16
        hidden = tf.cast(hidden, tf.float32) * self.backbone.hidden_dim ** -0.5
        return tf.matmul(hidden, tf.cast(embedding.embeddings, tf.float32), transpose_b=True)

    def call(self, inputs, training=None):
        token_ids = inputs[TOKEN_IDS]
        encoded = self.backbone(token_ids, training=training)
        return self.decode(encoded, tf.equal(token_ids, vocabulary.PAD_ID), inputs[DECODER_IDS], training=training)

    def get_config(self):
        return {**super().get_config(), "backbone": keras.saving.serialize_keras_object(self.backbone),
                "num_decoder_layers": self.num_decoder_layers, "tie_word_embeddings": self.tie_word_embeddings,
                **({} if self.has_decoder else {"has_decoder": False})}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def denoising_batch(token_ids: tf.Tensor, seed: tf.Tensor, rate: float = MASK_RATE) -> dict[str, tf.Tensor]:
    """``[CLS] residues [SEP]`` batches (padded) → the encoder's corrupted ``residues </s>``, the decoder's input
    (the targets shifted right after ``[PAD]``), the targets and their weights (0 at padding)."""
    targets = token_ids[:, 1:]
    residue = targets >= vocabulary.FIRST_RESIDUE_ID
    masked = residue & (tf.random.stateless_uniform(tf.shape(targets), seed) < rate)
    return {
        TOKEN_IDS: tf.where(masked, vocabulary.MASK_ID, targets),
        DECODER_IDS: tf.pad(targets[:, :-1], [[0, 0], [1, 0]], constant_values=vocabulary.PAD_ID),
        TARGET_IDS: targets,
        TARGET_WEIGHTS: tf.cast(targets != vocabulary.PAD_ID, tf.float32),
    }


def denoising_dataset(files: Sequence[str], config: InputConfig,
                      input_context: tf.distribute.InputContext | None = None, repeat: bool = True) -> tf.data.Dataset:
    """ProtT5's training batches: crops of ``sequence_length`` − 2 residues plus ``</s>``, corrupted per
    :func:`denoising_batch`, deterministic for the seed."""
    batches = tf.data.Dataset.zip(length_batches(files, config, input_context, repeat), seeds(config.seed, 3))
    return batches.map(lambda ids, seed: denoising_batch(ids, seed), num_parallel_calls=tf.data.AUTOTUNE) \
        .prefetch(tf.data.AUTOTUNE)


def denoising_floor(counts: Mapping[str, float], sequences: int, rate: float = MASK_RATE) -> float:
    residues = sum(counts.values())
    return rate * entropy(probabilities(counts)) * residues / (residues + sequences)


class Denoising(Objective):
    name = "denoising"
    description = "single-residue denoising (15%)"
    accuracy_metric = "reconstruction_accuracy"

    def floor(self, counts, sequences):
        return denoising_floor(counts, sequences)

    def task_model(self, backbone, lanes=1):
        return T5Denoising(backbone)

    def dataset(self, files, config, input_context=None, backbone=None, repeat=True):
        return denoising_dataset(files, config, input_context, repeat)

    def serving_signatures(self, task_model):
        """``wildtype_marginals`` and ``masked_marginals`` (:mod:`models.objectives.scoring`) from the decoder:
        the encoder reads the sequence (with the residue masked, for a masked marginal), the decoder reads the
        wild type shifted right, as in training, and its logits at a position are that residue's marginal. None
        without a decoder."""
        if not task_model.has_decoder:
            return {}
        columns = scoring.residue_columns(task_model.backbone)

        def log_probs(encoder_ids, wildtype_ids):
            decoder_ids = tf.pad(wildtype_ids[:, :-1], [[0, 0], [1, 0]], constant_values=vocabulary.PAD_ID)
            logits = task_model({TOKEN_IDS: encoder_ids, DECODER_IDS: decoder_ids}, training=False)
            return scoring.residue_log_probs(logits, columns)

        def score(masked, position, wildtype_ids):
            return tf.gather(log_probs(masked, wildtype_ids), position, batch_dims=1)

        return scoring.marginal_signatures(task_model.backbone, lambda ids: log_probs(ids, ids), score)


DENOISING = Denoising()
