"""Masked LM (ProtBert, ProtAlbert): 15% of the residues selected; 80% of those become ``[MASK]``, 10% a uniformly
random residue, 10% are kept; the model predicts the selected residues.

Masking is dynamic and BERT-style, with tensorflow-text: ``RandomItemSelector`` picks the residues of each
sequence and a ``MaskValuesChooser`` chooses their input tokens, statelessly from the seed.

No-context floor: at a masked position the input reveals nothing, so the best guess is the composition (entropy
H(p)); at a visible position (kept or replaced, equally likely) the input residue r is the target with probability
``p_r (1 + 1/K) / (p_r + 1/K)`` (kept, or a random draw that hit it), any other x with ``p_x (1/K) / (p_r + 1/K)``,
K the residue count. The floor is the mixture of both expected losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as text
from keras import ops

from models import vocabulary
from models.input_pipeline import TOKEN_IDS, InputConfig, length_batches, seeds
from models.layers import MaskedLMHead
from models.networks.encoder_backbone import EncoderBackbone, initializer
from models.objectives import scoring
from models.objectives.composition import entropy, probabilities
from models.objectives.objective import TARGET_IDS, TARGET_WEIGHTS, Objective

MASK_POSITIONS = "mask_positions"  # [batch, max_predictions]: the positions scored


@dataclass(frozen=True)
class MaskingConfig:
    selection_rate: float = 0.15
    mask_token_rate: float = 0.8
    random_token_rate: float = 0.1

    def max_predictions(self, sequence_length: int) -> int:
        return math.ceil(sequence_length * self.selection_rate)


@keras.saving.register_keras_serializable(package="prottrans")
class MaskedLM(keras.Model):
    """``{"token_ids": [batch, length], "mask_positions": [batch, positions]}`` → logits
    ``[batch, positions, vocabulary]`` at the given positions (all positions when `mask_positions` is absent).

    Scoring only the ~15% masked positions keeps the vocabulary projection off the other 85%.
    """

    def __init__(self, backbone: EncoderBackbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = MaskedLMHead(
            backbone.token_embedding, activation_name=backbone.activation_name,
            layer_norm_epsilon=backbone.layer_norm_epsilon, kernel_initializer=initializer(),
            dtype=backbone.dtype_policy, name="mlm_head")

    def build(self, input_shape):
        token_ids_shape = input_shape[TOKEN_IDS] if isinstance(input_shape, dict) else input_shape
        if not self.backbone.built:
            self.backbone.build(token_ids_shape)
        self.head.build((*token_ids_shape, self.backbone.hidden_dim))
        self.built = True

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            token_ids, mask_positions = inputs[TOKEN_IDS], inputs.get(MASK_POSITIONS)
        else:
            token_ids, mask_positions = inputs, None
        hidden = self.backbone(token_ids, training=training)
        if mask_positions is not None:
            hidden = ops.take_along_axis(hidden, ops.expand_dims(ops.cast(mask_positions, "int32"), -1), axis=1)
        return self.head(hidden)

    def get_config(self):
        return {"name": self.name, "backbone": keras.saving.serialize_keras_object(self.backbone)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


class _SeededResidueMaskValues(text.MaskValuesChooser):
    """tensorflow-text's 80/10/10 choice, with two changes: random replacements are residues (never
    ``[PAD]``, ``[CLS]``… which would change the attention mask) and the randomness is stateless."""

    def __init__(self, masking: MaskingConfig, seed: tf.Tensor):
        super().__init__(vocabulary.VOCABULARY_SIZE, vocabulary.MASK_ID, masking.mask_token_rate,
                         masking.random_token_rate)
        self._seed = seed

    def get_mask_values(self, masked_lm_ids: tf.RaggedTensor) -> tf.RaggedTensor:
        flat = masked_lm_ids.flat_values
        draw = tf.random.stateless_uniform(tf.shape(flat), self._seed)
        residues = tf.random.stateless_uniform(
            tf.shape(flat), self._seed + 1, minval=vocabulary.FIRST_RESIDUE_ID, maxval=vocabulary.VOCABULARY_SIZE,
            dtype=tf.int32)
        values = tf.where(
            draw < self._mask_token_rate,
            tf.constant(vocabulary.MASK_ID, flat.dtype),
            tf.where(draw < self._mask_token_rate + self._random_token_rate, tf.cast(residues, flat.dtype), flat),
        )
        return masked_lm_ids.with_flat_values(values)


def mask_batch(token_ids: tf.Tensor, seed: tf.Tensor, max_predictions: int,
               masking: MaskingConfig = MaskingConfig()) -> dict[str, tf.Tensor]:
    """Dynamic masking of a padded batch ``[batch, length]`` of ``[CLS] residues [SEP]`` ids: ``token_ids``,
    ``mask_positions``, ``target_ids`` (int32) and ``target_weights`` (float32, 0 for padding predictions)."""
    ragged = tf.RaggedTensor.from_tensor(token_ids, padding=vocabulary.PAD_ID)
    selector = text.RandomItemSelector(
        max_selections_per_batch=max_predictions,
        selection_rate=masking.selection_rate,
        unselectable_ids=[vocabulary.PAD_ID, vocabulary.CLS_ID, vocabulary.SEP_ID],
        shuffle_fn=lambda positions: tf.random.experimental.stateless_shuffle(positions, seed + 2),
    )
    masked, positions, original = text.mask_language_model(ragged, selector, _SeededResidueMaskValues(masking, seed))
    shape = [tf.shape(token_ids)[0], max_predictions]
    return {
        TOKEN_IDS: masked.to_tensor(default_value=vocabulary.PAD_ID, shape=tf.shape(token_ids)),
        MASK_POSITIONS: tf.cast(positions.to_tensor(default_value=0, shape=shape), tf.int32),
        TARGET_IDS: tf.cast(original.to_tensor(default_value=vocabulary.PAD_ID, shape=shape), tf.int32),
        TARGET_WEIGHTS: tf.cast(tf.ones_like(positions, tf.float32).to_tensor(default_value=0.0, shape=shape),
                                tf.float32),
    }


def masked_lm_dataset(files: Sequence[str], config: InputConfig,
                      input_context: tf.distribute.InputContext | None = None, repeat: bool = True,
                      masking: MaskingConfig = MaskingConfig()) -> tf.data.Dataset:
    """Masked-LM batches (:func:`mask_batch`) of the cropped, length-bucketed proteins of the Beam job's shards."""
    max_predictions = masking.max_predictions(config.sequence_length)
    masked = tf.data.Dataset.zip(length_batches(files, config, input_context, repeat), seeds(config.seed, 2)).map(
        lambda ids, seed: mask_batch(ids, seed, max_predictions, masking), num_parallel_calls=tf.data.AUTOTUNE)
    return masked.prefetch(tf.data.AUTOTUNE)


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


class MaskedLanguageModeling(Objective):
    name = "masked_lm"
    description = "masked LM (15%, 80/10/10)"
    accuracy_metric = "masked_accuracy"

    def __init__(self, masking: MaskingConfig = MaskingConfig()):
        self.masking = masking

    def floor(self, counts, sequences):
        return masked_lm_floor(counts, self.masking)

    def task_model(self, backbone, lanes=1):
        return MaskedLM(backbone)

    def dataset(self, files, config, input_context=None, backbone=None, repeat=True):
        return masked_lm_dataset(files, config, input_context, repeat, self.masking)

    def serving_signatures(self, task_model):
        """``wildtype_marginals`` and ``masked_marginals`` (:mod:`models.objectives.scoring`) from the MLM head."""
        columns = scoring.residue_columns(task_model.backbone)

        def wildtype(token_ids):
            return scoring.residue_log_probs(task_model({TOKEN_IDS: token_ids}, training=False), columns)

        def score(masked, position, wildtype_ids):
            logits = task_model({TOKEN_IDS: masked, MASK_POSITIONS: position[:, None]}, training=False)[:, 0]
            return scoring.residue_log_probs(logits, columns)

        return scoring.marginal_signatures(task_model.backbone, wildtype, score)


MASKED_LM = MaskedLanguageModeling()
