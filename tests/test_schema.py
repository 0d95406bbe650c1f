"""Records are `tf.train.Example`s with exactly the features of docs/contracts.md."""

import pytest
import tensorflow as tf

from beam_jobs import schema


@pytest.mark.parametrize(
    "record_id, sequence, source, taxon_id",
    [
        ("UniRef100_P12345", b"MKTAYIAKQR", "uniref100", 9606),
        ("Q9H400", b"M", "fasta", -1),
        ("bfd_\u00e9l\u00e8ve", b"A" * 40000, "bfd", 2**40),
    ],
)
def test_encoded_example_parses_as_tf_train_example(record_id, sequence, source, taxon_id):
    serialized = schema.encode_example(record_id, sequence, source, taxon_id)
    example = tf.train.Example.FromString(serialized)
    features = example.features.feature
    assert set(features) == set(schema.FEATURE_NAMES)
    assert features["id"].bytes_list.value == [record_id.encode()]
    assert features["sequence"].bytes_list.value == [sequence]
    assert features["length"].int64_list.value == [len(sequence)]
    assert features["source"].bytes_list.value == [source.encode()]
    assert features["taxon_id"].int64_list.value == [taxon_id]

    parsed = schema.parse_example(tf.constant([serialized]))
    assert parsed["sequence"].numpy().tolist() == [sequence]
    assert parsed["taxon_id"].numpy().tolist() == [taxon_id]
    assert parsed["length"].dtype == tf.int64


def test_encoding_equals_protobuf_serialisation_up_to_map_order():
    serialized = schema.encode_example("P1", b"MKT", "fasta", -1)
    reference = tf.train.Example()
    for name, value in (("id", b"P1"), ("sequence", b"MKT"), ("source", b"fasta")):
        reference.features.feature[name].bytes_list.value.append(value)
    reference.features.feature["length"].int64_list.value.append(3)
    reference.features.feature["taxon_id"].int64_list.value.append(-1)
    assert tf.train.Example.FromString(serialized) == reference


def test_shard_names_follow_the_layout():
    assert schema.shard_suffix("gzip") == ".tfrecord.gz"
    assert schema.shard_suffix("none") == ".tfrecord"
