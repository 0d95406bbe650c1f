"""The record contract (DESIGN §3): one ``tf.train.Example`` per protein, and the layout of a dataset folder.

This module is the single owner of the schema: the Beam job writes with :func:`encode_example`, and every
reader (``models`` input pipelines, the TFX ExampleGen, tests) parses with :data:`FEATURE_SPEC` or
:func:`parse_example`. TensorFlow is imported lazily so the Beam job's launcher stays light.
"""

from __future__ import annotations

from typing import Any

ID = "id"
SEQUENCE = "sequence"
LENGTH = "length"
SOURCE = "source"
TAXON_ID = "taxon_id"
FEATURE_NAMES = (ID, SEQUENCE, LENGTH, SOURCE, TAXON_ID)

UNKNOWN_TAXON = -1

# Values of the `source` feature. `uniref90` extends DESIGN §3's list for UniRef90 inputs.
SOURCES = ("uniref100", "uniref90", "uniref50", "bfd", "fasta")

# Dataset layout: <out>/<split>/data-SSSSS-of-NNNNN.tfrecord[.gz], <out>/rejects/, <out>/manifest.json.
TRAIN = "train"
VALID = "valid"
SPLITS = (TRAIN, VALID)
REJECTS_DIR = "rejects"
MANIFEST_FILE = "manifest.json"
SHARD_PREFIX = "data"
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
REJECT_EXCERPT_CHARS = 200


def shard_suffix(compression: str) -> str:
    """File suffix of TFRecord shards for a compression name (`gzip` or `none`)."""
    return ".tfrecord.gz" if compression == "gzip" else ".tfrecord"


def tfrecord_compression_type(compression: str) -> str:
    """The `compression_type` string that `tf.data.TFRecordDataset` expects."""
    return "GZIP" if compression == "gzip" else ""


def feature_spec() -> dict[str, Any]:
    """`tf.io.parse_example` spec for the records of DESIGN §3."""
    import tensorflow as tf

    return {
        ID: tf.io.FixedLenFeature([], tf.string),
        SEQUENCE: tf.io.FixedLenFeature([], tf.string),
        LENGTH: tf.io.FixedLenFeature([], tf.int64),
        SOURCE: tf.io.FixedLenFeature([], tf.string),
        TAXON_ID: tf.io.FixedLenFeature([], tf.int64, default_value=UNKNOWN_TAXON),
    }


def encode_example(record_id: str, sequence: bytes, source: str, taxon_id: int) -> bytes:
    """Serialise one normalised protein as a `tf.train.Example`."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    features = example.features.feature
    features[ID].bytes_list.value.append(record_id.encode("utf-8"))
    features[SEQUENCE].bytes_list.value.append(sequence)
    features[LENGTH].int64_list.value.append(len(sequence))
    features[SOURCE].bytes_list.value.append(source.encode("ascii"))
    features[TAXON_ID].int64_list.value.append(taxon_id)
    return example.SerializeToString()


def parse_example(serialized) -> dict[str, Any]:
    """Parse serialised Examples (scalar or batch tensor) with :func:`feature_spec`."""
    import tensorflow as tf

    return tf.io.parse_example(serialized, feature_spec())
