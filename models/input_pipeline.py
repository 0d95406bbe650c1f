"""The training input every objective builds on: TFRecords of the Beam job → tokenised proteins, as cropped
batches by length bucket or as segments of per-lane streams, deterministic for a seed.

Records are parsed with the schema's feature spec (:mod:`beam_jobs.schema`, the one owner of the record
format), tokenised in the graph, and either cropped at a random offset to the phase's length and batched by
length bucket (padding only to the bucket's length), or read as streams, one per batch lane, cut into segments.
All randomness is stateless and derived from the seed and the element's index, so a seed fixes the data order and
the crops; each objective (:mod:`models.objectives`) turns these into its batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import tensorflow as tf

from beam_jobs import schema
from models import vocabulary

TOKEN_IDS = "token_ids"  # the model's input tokens, in every objective's batch
SEGMENTS = "segments"  # [lanes, length + 1]: a stream segment and the token after it
RESET = "reset"  # [lanes]: 1 where a lane starts a new stream (its memory is cleared), in stream batches
SMALLEST_BUCKET = 64


@dataclass(frozen=True)
class InputConfig:
    """One training phase's input: `sequence_length` counts ``[CLS]`` and ``[SEP]``."""

    sequence_length: int
    batch_size: int  # per input pipeline (per replica under a strategy)
    seed: int = 0
    shuffle_buffer: int = 10_000

    @property
    def bucket_lengths(self) -> tuple[int, ...]:
        """Padded lengths of the batches: powers of two from 64, then `sequence_length`."""
        lengths = []
        length = SMALLEST_BUCKET
        while length < self.sequence_length:
            lengths.append(length)
            length *= 2
        return (*lengths, self.sequence_length)


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


def stream_segments(files: Sequence[str], config: InputConfig,
                    input_context: tf.distribute.InputContext | None = None,
                    repeat: bool = True) -> tf.data.Dataset:
    """Segments of per-lane streams: ``{"segments": [lanes, sequence_length + 1], "reset": [lanes]}`` (lanes =
    `config.batch_size`), for a model with memory.

    In each epoch, lane b reads every lanes-th protein of the (shuffled) input as one stream, ``[CLS] residues
    [SEP]`` after another, and row b of each batch is that stream's next segment, so a lane's memory from one
    batch is the context of its next. Consecutive segments of a lane overlap by one token (the last of one is the
    first of the next), so a segment holds its inputs and their next tokens. ``reset`` is 1 on the first segment
    of every epoch (the lanes start new streams). An epoch ends with its shortest lane.
    """
    lanes, length = config.batch_size, config.sequence_length

    def lane(index: int) -> tf.data.Dataset:
        # One epoch, reshuffled each time the whole stream is repeated; every lane shuffles alike and takes its share
        sequences = read_sequences(files, config, input_context, repeat=False, shuffle=repeat).shard(lanes, index)
        tokens = sequences.map(
            lambda sequence: tf.concat([[vocabulary.CLS_ID], vocabulary.tokenize(tf.reshape(sequence, [1]))[0],
                                        [vocabulary.SEP_ID]], axis=0),
            num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        return tokens.window(length + 1, shift=length, drop_remainder=True).flat_map(
            lambda window: window.batch(length + 1))

    segments = tf.data.Dataset.zip(tuple(lane(i) for i in range(lanes))).map(lambda *rows: tf.stack(rows))
    epochs = segments.enumerate().map(lambda index, rows: {
        SEGMENTS: rows, RESET: tf.fill([lanes], tf.cast(tf.equal(index, 0), tf.float32))})
    return epochs.repeat() if repeat else epochs



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
