"""The job's TFRecord sink writes ordinary TFRecord files, plain or gzip, that TensorFlow reads."""

from __future__ import annotations

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.runners.portability.fn_api_runner import fn_runner

from beam_jobs import tfrecord_sink


def test_framing_matches_tensorflow_writer(tmp_path):
    path = str(tmp_path / "tf.tfrecord")
    records = [b"", b"x", b"MKTAYIAK" * 300]
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    with open(path, "rb") as handle:
        assert handle.read() == b"".join(tfrecord_sink.frame_record(r) for r in records)


@pytest.mark.parametrize("gzip, suffix", [(True, ".tfrecord.gz"), (False, ".tfrecord")])
def test_sharded_output_reads_back_in_full(tmp_path, monkeypatch, gzip, suffix):
    monkeypatch.setattr(tfrecord_sink, "FLUSH_BYTES", 1000)  # many blocks per shard
    records = [f"record {i} ".encode() * (i % 50) for i in range(3000)]
    with beam.Pipeline(runner=fn_runner.FnApiRunner()) as pipeline:
        batches = [records[i:i + 70] for i in range(0, len(records), 70)]
        _ = pipeline | beam.Create(batches) | tfrecord_sink.WriteTFRecordShards(
            str(tmp_path / "data"), suffix, num_shards=3, shard_name_template="-SSSSS-of-NNNNN", gzip=gzip)
    files = sorted(str(p) for p in tmp_path.glob("data-*"))
    assert [f.rsplit("/", 1)[1] for f in files] == [f"data-0000{i}-of-00003{suffix}" for i in range(3)]
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP" if gzip else "")
    assert sorted(dataset.as_numpy_iterator()) == sorted(records)
