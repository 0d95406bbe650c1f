"""The pretraining input pipeline: TFRecords of the Beam job → masked-LM batches, deterministic for a seed.

Records are parsed with the schema's feature spec (:mod:`beam_jobs.schema`, the one owner of the record
format), tokenised in the graph, cropped at a random offset to the phase's length, batched by length bucket
(padding only to the bucket's length) and masked dynamically, BERT-style, with tensorflow-text:
``RandomItemSelector`` picks 15% of the residues of each sequence and a ``MaskValuesChooser`` replaces 80% of
them with ``[MASK]``, 10% with a random residue and leaves 10%. All randomness is stateless and derived from
the seed and the element's index, so a seed fixes the data order, crops and masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import tensorflow as tf
import tensorflow_text as text

from beam_jobs import schema
from models import vocabulary

TOKEN_IDS = "token_ids"
MASK_POSITIONS = "mask_positions"
MASK_IDS = "mask_ids"
MASK_WEIGHTS = "mask_weights"
SMALLEST_BUCKET = 64


@dataclass(frozen=True)
class MaskingConfig:
    selection_rate: float = 0.15
    mask_token_rate: float = 0.8
    random_token_rate: float = 0.1


@dataclass(frozen=True)
class InputConfig:
    """One training phase's input: `sequence_length` counts ``[CLS]`` and ``[SEP]``."""

    sequence_length: int
    batch_size: int  # per input pipeline (per replica under a strategy)
    seed: int = 0
    shuffle_buffer: int = 10_000
    masking: MaskingConfig = MaskingConfig()

    @property
    def max_predictions(self) -> int:
        return math.ceil(self.sequence_length * self.masking.selection_rate)

    @property
    def bucket_lengths(self) -> tuple[int, ...]:
        """Padded lengths of the batches: powers of two from 64, then `sequence_length`."""
        lengths = []
        length = SMALLEST_BUCKET
        while length < self.sequence_length:
            lengths.append(length)
            length *= 2
        return (*lengths, self.sequence_length)


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


def mask_batch(token_ids: tf.Tensor, seed: tf.Tensor, config: InputConfig) -> dict[str, tf.Tensor]:
    """Dynamic masking of a padded batch ``[batch, length]`` of ``[CLS] residues [SEP]`` ids."""
    ragged = tf.RaggedTensor.from_tensor(token_ids, padding=vocabulary.PAD_ID)
    selector = text.RandomItemSelector(
        max_selections_per_batch=config.max_predictions,
        selection_rate=config.masking.selection_rate,
        unselectable_ids=[vocabulary.PAD_ID, vocabulary.CLS_ID, vocabulary.SEP_ID],
        shuffle_fn=lambda positions: tf.random.experimental.stateless_shuffle(positions, seed + 2),
    )
    masked, positions, original = text.mask_language_model(
        ragged, selector, _SeededResidueMaskValues(config.masking, seed))
    shape = [tf.shape(token_ids)[0], config.max_predictions]
    return {
        TOKEN_IDS: masked.to_tensor(default_value=vocabulary.PAD_ID, shape=tf.shape(token_ids)),
        MASK_POSITIONS: tf.cast(positions.to_tensor(default_value=0, shape=shape), tf.int32),
        MASK_IDS: tf.cast(original.to_tensor(default_value=vocabulary.PAD_ID, shape=shape), tf.int32),
        MASK_WEIGHTS: tf.cast(tf.ones_like(positions, tf.float32).to_tensor(default_value=0.0, shape=shape), tf.float32),
    }


def _crop_and_encode(sequence: tf.Tensor, seed: tf.Tensor, max_residues: int) -> tf.Tensor:
    residues = vocabulary.tokenize(tf.reshape(sequence, [1]))[0]
    length = tf.shape(residues)[0]
    spare = tf.maximum(length - max_residues, 0)
    start = tf.random.stateless_uniform([], seed, maxval=spare + 1, dtype=tf.int32)
    cropped = residues[start : start + max_residues]
    return tf.concat([[vocabulary.CLS_ID], cropped, [vocabulary.SEP_ID]], axis=0)


def seeds(seed: int, salt: int) -> tf.data.Dataset:
    """A stream of stateless-RNG seeds ``[seed, salt, index]`` → shape-[2] seeds."""
    return tf.data.Dataset.counter().map(lambda index: tf.stack([tf.cast(seed * 1_000_003 + salt, tf.int64), index]))


def pretraining_dataset(
    files: Sequence[str],
    config: InputConfig,
    input_context: tf.distribute.InputContext | None = None,
    repeat: bool = True,
) -> tf.data.Dataset:
    """Masked-LM batches from the Beam job's TFRecord shards (``.tfrecord.gz`` or ``.tfrecord``).

    Each element: ``token_ids``, ``mask_positions``, ``mask_ids`` (int32) and ``mask_weights`` (float32,
    0 for padding predictions). Under a strategy, pass the `input_context` of
    ``distribute_datasets_from_function`` to read a disjoint share of the files per input pipeline.
    """
    masked = tf.data.Dataset.zip(length_batches(files, config, input_context, repeat), seeds(config.seed, 2)).map(
        lambda ids, seed: mask_batch(ids, seed, config), num_parallel_calls=tf.data.AUTOTUNE)
    return masked.prefetch(tf.data.AUTOTUNE)


def compression_type(path: str) -> str:
    """TFRecordDataset's compression for a shard the Beam job wrote (``.tfrecord.gz`` or ``.tfrecord``)."""
    return "GZIP" if path.endswith(".gz") else ""


def read_sequences(files: Sequence[str], config: InputConfig, input_context: tf.distribute.InputContext | None = None,
                   repeat: bool = True, shuffle: bool | None = None) -> tf.data.Dataset:
    """Sequence strings from the Beam job's TFRecord shards: this input pipeline's share of the files, shuffled
    by the seed (by default when repeating; each pass in a new order), repeated forever with `repeat`."""
    shuffle = repeat if shuffle is None else shuffle
    files = sorted(files)
    if not files:
        raise ValueError("no TFRecord files to read")
    compression = compression_type(files[0])
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(files) < input_context.num_input_pipelines:
            raise ValueError(f"{len(files)} files cannot be shared by {input_context.num_input_pipelines} input "
                             "pipelines: write more shards (--num-shards)")
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=compression),
        cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        dataset = dataset.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    return dataset.map(lambda record: schema.parse_example(record)[schema.SEQUENCE],
                       num_parallel_calls=tf.data.AUTOTUNE)


def length_batches(files, config, input_context, repeat) -> tf.data.Dataset:
    """Padded ``[CLS] residues [SEP]`` batches, cropped at random to the phase's length, by length bucket."""
    max_residues = config.sequence_length - 2
    sequences = read_sequences(files, config, input_context, repeat)
    token_ids = tf.data.Dataset.zip(sequences, seeds(config.seed, 1)).map(
        lambda sequence, seed: _crop_and_encode(sequence, seed, max_residues), num_parallel_calls=tf.data.AUTOTUNE)
    buckets = config.bucket_lengths
    batches = token_ids.bucket_by_sequence_length(
        element_length_func=lambda ids: tf.shape(ids)[0],
        bucket_boundaries=[length + 1 for length in buckets[:-1]],
        bucket_batch_sizes=[config.batch_size] * len(buckets),
        padded_shapes=[None],
        padding_values=vocabulary.PAD_ID,
        pad_to_bucket_boundary=False,
        drop_remainder=repeat,
    )
    return batches.map(lambda ids: _pad_to_bucket(ids, buckets), num_parallel_calls=tf.data.AUTOTUNE)


def _pad_to_bucket(token_ids: tf.Tensor, buckets: tuple[int, ...]) -> tf.Tensor:
    """Pad a batch to the smallest bucket length that holds it, so batches come in few shapes."""
    length = tf.shape(token_ids)[1]
    target = tf.gather(buckets, tf.reduce_min(tf.where(tf.constant(buckets) >= length)))
    return tf.pad(token_ids, [[0, 0], [0, target - length]], constant_values=vocabulary.PAD_ID)


# Causal language modelling on segment streams (Transformer-XL) -----------------------------------------------
RESET = "reset"


def causal_lm_dataset(files: Sequence[str], config: InputConfig,
                      input_context: tf.distribute.InputContext | None = None,
                      repeat: bool = True) -> tf.data.Dataset:
    """Segment batches ``[lanes, sequence_length]`` (lanes = `config.batch_size`) for a causal LM with memory.

    In each epoch, lane b reads every lanes-th protein of the (shuffled) input as one stream, ``[CLS] residues
    [SEP]`` after another, and row b of each batch is that stream's next segment, so a lane's memory from one
    batch is the context of its next. Targets are the next tokens; ``reset`` is 1 on the first segment of every
    epoch (the lanes start new streams). An epoch ends with its shortest lane.
    """
    lanes, length = config.batch_size, config.sequence_length

    def lane(index: int) -> tf.data.Dataset:
        # One epoch, reshuffled each time the whole stream is repeated; every lane shuffles alike and takes its share
        sequences = read_sequences(files, config, input_context, repeat=False, shuffle=repeat).shard(lanes, index)
        tokens = sequences.map(
            lambda sequence: tf.concat([[vocabulary.CLS_ID], vocabulary.tokenize(tf.reshape(sequence, [1]))[0],
                                        [vocabulary.SEP_ID]], axis=0),
            num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        # Windows of length + 1 tokens, overlapping by one: the inputs and their next tokens
        return tokens.window(length + 1, shift=length, drop_remainder=True).flat_map(
            lambda window: window.batch(length + 1))

    segments = tf.data.Dataset.zip(tuple(lane(i) for i in range(lanes))).map(lambda *rows: tf.stack(rows))

    def as_batch(index, rows):
        return {
            TOKEN_IDS: rows[:, :-1],
            MASK_IDS: rows[:, 1:],
            MASK_WEIGHTS: tf.ones([lanes, length], tf.float32),
            RESET: tf.fill([lanes], tf.cast(tf.equal(index, 0), tf.float32)),
        }

    epochs = segments.enumerate().map(as_batch)
    return (epochs.repeat() if repeat else epochs).prefetch(tf.data.AUTOTUNE)


def first_unreadable_file(files: Sequence[str]) -> tuple[str, str] | None:
    """``(file, error)`` for the first of `files` whose records cannot all be read (truncated, corrupt), or None.
    Reads every record: meant for naming the culprit after a read failed, which TensorFlow's error does not."""
    for path in sorted(files):
        try:
            for _ in tf.data.TFRecordDataset(path, compression_type=compression_type(path)).batch(4096):
                pass
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            return path, error.message
    return None
