"""A TFRecord sink that frames records in memory and gzips them in large blocks at a fast level.

Beam's ``WriteToTFRecord`` hands each record to the gzip file in four small writes, each a separate zlib call,
at zlib's default level 6. Here records are framed (length, masked CRC32C, data, masked CRC32C: the TFRecord
format) into a buffer that is compressed 1 MiB at a time at level 1: on protein records that compresses
~2.5x faster than level 6 for files ~3% larger (residue text is close to incompressible either way).
Output files are ordinary (gzip) TFRecord files that `tf.data.TFRecordDataset` reads.
"""

from __future__ import annotations

import struct
import zlib

import apache_beam as beam
import google_crc32c
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes

FLUSH_BYTES = 1 << 20
GZIP_LEVEL = 1
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """The CRC32C of `data`, masked as TFRecord files store it."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One record in TFRecord framing."""
    length = struct.pack("<Q", len(data))
    return b"".join((length, struct.pack("<I", masked_crc32c(length)), data, struct.pack("<I", masked_crc32c(data))))


class _BufferedRecords:
    """The open shard: framed records gathered until :data:`FLUSH_BYTES`, then written in one call."""

    def __init__(self, file_handle, gzip: bool, path: str):
        self._file, self._path = file_handle, path
        self._buffer = bytearray()
        self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS) if gzip else None

    def append(self, record: bytes) -> None:
        self._buffer += frame_record(record)
        if len(self._buffer) >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            block = bytes(self._buffer)
            self._write(self._compressor.compress(block) if self._compressor else block)
            self._buffer.clear()

    def _write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as error:  # a full disk says which disk
            raise OSError(error.errno, f"{error.strerror}: writing {self._path}") from error

    def close(self) -> None:
        self._flush()
        if self._compressor:
            self._write(self._compressor.flush())
        self._file.close()


class _TFRecordShardSink(filebasedsink.FileBasedSink):
    def __init__(self, *args, gzip: bool, **kwargs):
        # The file itself is opened uncompressed: _BufferedRecords does the gzip.
        super().__init__(*args, compression_type=CompressionTypes.UNCOMPRESSED, **kwargs)
        self._gzip = gzip

    def open(self, temp_path: str) -> _BufferedRecords:
        return _BufferedRecords(super().open(temp_path), self._gzip, temp_path)

    def write_record(self, file_handle: _BufferedRecords, records: list[bytes]) -> None:
        for record in records:
            file_handle.append(record)


class WriteTFRecordShards(beam.PTransform):
    """Writes batches (lists) of serialised records as sharded TFRecord files; outputs the final file names."""

    def __init__(self, file_path_prefix: str, file_name_suffix: str, num_shards: int, shard_name_template: str,
                 gzip: bool):
        super().__init__()
        self._sink = _TFRecordShardSink(
            file_path_prefix,
            coder=None,  # elements are lists of bytes, written by write_record itself
            file_name_suffix=file_name_suffix,
            num_shards=num_shards,
            shard_name_template=shard_name_template,
            mime_type="application/octet-stream",
            gzip=gzip,
        )

    def expand(self, records):
        return records | beam.io.Write(self._sink)
