"""Reading a3m MSAs stored in an ffindex/ffdata pair, as BFD and HH-suite databases ship them.

The ``.ffindex`` file has one line per entry, ``name<TAB>offset<TAB>length``, pointing into ``.ffdata``
where each entry ends with a NUL byte. Of each entry's a3m we keep the first sequence (the query or cluster
representative), with ``-`` gaps and lower-case insertion states removed, so the residues match the
representative sequence itself. The ffindex entry name is the record id.
"""

from __future__ import annotations

from typing import Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs.fasta_source import DEFAULT_MAX_RECORD_BYTES, EXCERPT_BYTES, InputFileError, RawRecord

_A3M_NOT_RESIDUES = b"-.abcdefghijklmnopqrstuvwxyz"


def ffdata_path(index_path: str) -> str:
    """The ``.ffdata`` file that goes with an ``.ffindex`` file."""
    if not index_path.endswith(".ffindex"):
        raise InputFileError(f"{index_path}: an a3m-ffindex input must name the .ffindex file")
    return index_path[: -len(".ffindex")] + ".ffdata"


def parse_index_line(index_path: str, line: str) -> tuple[str, int, int]:
    """``name, offset, length`` of one ffindex line, or an error naming the file and the line."""
    fields = line.rstrip("\r\n").split("\t")
    try:
        name, offset, length = fields
        return name, int(offset), int(length)
    except ValueError:
        raise InputFileError(f"{index_path}: malformed ffindex line {line[:200]!r}") from None


def first_a3m_sequence(entry: bytes) -> tuple[str | None, bytes]:
    """Header and residues of the first sequence of an a3m entry (gaps and insertions removed)."""
    lines = entry.rstrip(b"\0").split(b"\n")
    header = None
    body = []
    for line in lines:
        if line.startswith(b"#"):
            continue
        if line.startswith(b">"):
            if header is not None:
                break
            header = line[1:].rstrip(b"\r").decode("utf-8", errors="replace")
        elif header is not None:
            body.append(line)
    return header, b"".join(body).translate(None, _A3M_NOT_RESIDUES)


class ReadA3mEntries(beam.DoFn):
    """``(index_path, index_line)`` → :data:`RawRecord` of the entry's first sequence."""

    def __init__(self, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        self._max_record_bytes = max_record_bytes
        self._open: dict[str, object] = {}

    def setup(self):
        self._open = {}

    def _data_file(self, index_path: str):
        data_path = ffdata_path(index_path)
        if data_path not in self._open:
            try:
                self._open[data_path] = FileSystems.open(data_path, compression_type=CompressionTypes.UNCOMPRESSED)
            except Exception as error:
                raise InputFileError(f"{data_path}: cannot open the ffdata of {index_path}: {error}") from error
        return data_path, self._open[data_path]

    def process(self, element: tuple[str, str]) -> Iterator[RawRecord]:
        index_path, line = element
        if not line.strip():
            return
        name, offset, length = parse_index_line(index_path, line)
        data_path, data = self._data_file(index_path)
        if length > self._max_record_bytes:
            data.seek(offset)
            yield (data_path, offset, name, data.read(EXCERPT_BYTES), True)
            return
        data.seek(offset)
        entry = data.read(length)
        if len(entry) != length:
            raise InputFileError(f"{data_path}: entry {name!r} at {offset}+{length} runs past the end of the file")
        header, residues = first_a3m_sequence(entry)
        # The entry name is the id; the a3m header (kept only to tell a missing one) is not.
        yield (data_path, offset, name if header is not None else None, residues, False)

    def teardown(self):
        for handle in self._open.values():
            handle.close()
        self._open = {}
