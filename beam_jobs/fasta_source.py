"""A splittable Beam source for FASTA files (plain or gzip), and the a3m/ffindex reader for BFD.

Both yield :data:`RawRecord` tuples — ``(path, offset, header, body, oversized)`` — that the job parses:
`header` is the header line without ``>`` (``None`` for residue lines that precede any header), `body` the
raw residue lines, `offset` the byte position of the record in its file.

Splitting: a record belongs to the byte range that holds the ``>`` starting it. A reader of a range that
starts mid-file skips to the first ``\\n>`` at or after its start, and reads its last record to the end even
past its range, so every record is read exactly once however the file is split. Gzip files cannot be split
and are read whole, through Python's :mod:`gzip` so a truncated file fails with an error naming it.
"""

from __future__ import annotations

import gzip
import zlib
from typing import BinaryIO, Callable, Iterator

from apache_beam.io import filebasedsource
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

# (path, offset, header or None, raw body bytes, oversized)
RawRecord = tuple[str, int, "str | None", bytes, bool]

READ_CHUNK_BYTES = 1 << 20
# A record larger than this is not held in memory: it is skipped and rejected as `record_too_large`.
DEFAULT_MAX_RECORD_BYTES = 64 << 20
EXCERPT_BYTES = 200


class InputFileError(IOError):
    """An input file that cannot be read (truncated or corrupt gzip, malformed index)."""


def split_record(path: str, offset: int, chunk: bytes, oversized: bool = False) -> RawRecord:
    """Turn the bytes of one record (from ``>`` up to the next record) into a :data:`RawRecord`."""
    if not chunk.startswith(b">"):
        return (path, offset, None, chunk, oversized)
    newline = chunk.find(b"\n")
    if newline < 0:
        header_bytes, body = chunk[1:], b""
    else:
        header_bytes, body = chunk[1:newline], chunk[newline + 1 :]
    header = header_bytes.rstrip(b"\r").decode("utf-8", errors="replace")
    return (path, offset, header, body, oversized)


def scan_records(
    read: Callable[[int], bytes],
    start: int,
    claim: Callable[[int], bool],
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[tuple[int, bytes, bool]]:
    """Yield ``(offset, chunk, oversized)`` for each record starting at or after `start`.

    `read(n)` reads the stream, which is positioned at ``start - 1`` (or 0 when `start` is 0). `claim(offset)`
    is asked before each record is yielded; scanning stops at the first refusal. An oversized record's
    chunk is its first :data:`EXCERPT_BYTES` bytes, and its bytes are never held in memory at once.
    """
    base = max(start - 1, 0)  # file offset of buf[0]
    buf = read(READ_CHUNK_BYTES)
    pos = 0  # index in buf of the current record's first byte
    if start > 0:
        while (found := buf.find(b"\n>")) < 0:
            more = read(READ_CHUNK_BYTES)
            if not more:
                return
            base, buf = base + len(buf) - 1, buf[-1:] + more
        pos = found + 1
    if not buf:
        return

    while True:
        record_offset = base + pos
        if not claim(record_offset):
            return
        excerpt = None
        scanned = pos + 1
        while (found := buf.find(b"\n>", scanned)) < 0:
            if excerpt is None and len(buf) - pos > max_record_bytes:
                excerpt = buf[pos : pos + EXCERPT_BYTES]
            more = read(READ_CHUNK_BYTES)
            if not more:
                break
            # Drop what is consumed; keep the last byte, which may be the "\n" of the next "\n>".
            keep_from = len(buf) - 1 if excerpt is not None else pos
            scanned = len(buf) - 1 - keep_from
            base, buf, pos = base + keep_from, buf[keep_from:] + more, pos - keep_from
        end = found if found >= 0 else len(buf)
        if excerpt is None and end - pos > max_record_bytes:
            excerpt = buf[pos : pos + EXCERPT_BYTES]
        if excerpt is not None:
            yield record_offset, excerpt, True
        elif buf[pos:end].strip():
            yield record_offset, buf[pos:end], False
        if found < 0:
            return
        pos = found + 1


class FastaSource(filebasedsource.FileBasedSource):
    """Reads FASTA records from a file pattern; uncompressed files are split across workers."""

    def __init__(self, file_pattern: str, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, **kwargs):
        super().__init__(file_pattern, compression_type=CompressionTypes.AUTO, **kwargs)
        self._max_record_bytes = max_record_bytes

    def open_file(self, file_name: str) -> BinaryIO:
        compression = CompressionTypes.detect_compression_type(file_name)
        if compression not in (CompressionTypes.GZIP, CompressionTypes.UNCOMPRESSED):
            raise InputFileError(f"{file_name}: only plain and gzip FASTA are supported")
        raw = FileSystems.open(file_name, "application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED)
        return gzip.GzipFile(fileobj=raw, mode="rb") if compression == CompressionTypes.GZIP else raw

    def read_records(self, file_name: str, offset_range_tracker) -> Iterator[RawRecord]:
        start = offset_range_tracker.start_position()
        try:
            with self.open_file(file_name) as stream:
                if start > 0:
                    stream.seek(start - 1)
                for offset, chunk, oversized in scan_records(
                    stream.read, start, offset_range_tracker.try_claim, self._max_record_bytes
                ):
                    yield split_record(file_name, offset, chunk, oversized)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise InputFileError(f"{file_name}: unreadable compressed input ({error}); is the file truncated?") from error

    def default_output_coder(self):
        from apache_beam.coders import coders

        return coders.FastPrimitivesCoder()
