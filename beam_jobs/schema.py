"""The record contract (docs/contracts.md): one ``tf.train.Example`` per protein, and the layout of a dataset folder.

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

# Values of the `source` feature. `uniref90` extends the list in docs/contracts.md for UniRef90 inputs.
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


def feature_spec() -> dict[str, Any]:
    """`tf.io.parse_example` spec for the records of docs/contracts.md."""
    import tensorflow as tf

    return {
        ID: tf.io.FixedLenFeature([], tf.string),
        SEQUENCE: tf.io.FixedLenFeature([], tf.string),
        LENGTH: tf.io.FixedLenFeature([], tf.int64),
        SOURCE: tf.io.FixedLenFeature([], tf.string),
        TAXON_ID: tf.io.FixedLenFeature([], tf.int64, default_value=UNKNOWN_TAXON),
    }


_ONE_BYTE_VARINTS = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE_VARINTS[value]
    value &= (1 << 64) - 1  # int64 on the wire: negatives as 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(payload: bytes) -> bytes:
    """Field 1, wire type 2 (tag byte 0x0A), as every level of an Example uses, with its payload."""
    return b"\x0a" + _varint(len(payload)) + payload


def _entry(key: str, feature: bytes) -> bytes:
    # Features.feature is map<string, Feature>: each entry {1: key, 2: value} sits in field 1 of Features.
    name = key.encode("ascii")
    entry = b"\x0a" + _varint(len(name)) + name + b"\x12" + _varint(len(feature)) + feature
    return _delimited(entry)


def _bytes_feature(value: bytes) -> bytes:
    return _delimited(_delimited(value))  # Feature.bytes_list (1) → BytesList.value (1)


def _int64_feature(value: int) -> bytes:
    packed = _delimited(_varint(value))  # Int64List.value (1), packed
    return b"\x1a" + _varint(len(packed)) + packed  # Feature.int64_list (3)


def encode_example(record_id: str, sequence: bytes, source: str, taxon_id: int) -> bytes:
    """Serialise one normalised protein as a `tf.train.Example`.

    Written straight to the protobuf wire format, so Beam workers need no TensorFlow import (seconds of
    start-up per worker process); the tests check it parses as `tf.train.Example` with :func:`feature_spec`.
    """
    features = b"".join((
        _entry(ID, _bytes_feature(record_id.encode("utf-8"))),
        _entry(SEQUENCE, _bytes_feature(sequence)),
        _entry(LENGTH, _int64_feature(len(sequence))),
        _entry(SOURCE, _bytes_feature(source.encode("ascii"))),
        _entry(TAXON_ID, _int64_feature(taxon_id)),
    ))
    return _delimited(features)  # Example.features (1)


def parse_example(serialized) -> dict[str, Any]:
    """Parse serialised Examples (scalar or batch tensor) with :func:`feature_spec`."""
    import tensorflow as tf

    return tf.io.parse_example(serialized, feature_spec())
