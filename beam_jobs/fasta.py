"""The one streaming FASTA reader outside Beam: plain or gzip, one record at a time.

Memory holds one record, never the file, and never more than `max_record_chars` characters of it (default
:data:`DEFAULT_MAX_RECORD_CHARS`): lines are read in bounded pieces, and a record past the bound is returned with
``oversized`` set and no sequence (its caller rejects it), so an endless line (``/dev/zero``) cannot grow the
process. Gzip is recognised by its magic bytes, whatever the file is called. Blank lines are allowed anywhere;
residue lines before the first header are an error (the file is not FASTA), and so is a truncated or corrupt gzip
file; both errors name the file. Bytes that are not UTF-8 are kept as surrogate escapes (``\\udc80`` …), so two
ids that differ only there stay different. Residues are returned as written (case, ``*`` and rare residues kept):
:func:`beam_jobs.sequences.normalise` is the one place that cleans them. The Beam job reads byte ranges of FASTA
files through :mod:`beam_jobs.fasta_source` instead.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import IO, Iterable, Iterator, NamedTuple

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_MAX_RECORD_CHARS = 64 << 20  # as the Beam source's bound: 1,900 times titin
READ_CHARS = 1 << 20  # the longest piece of a line held at once beyond a record's own characters


class FastaRecord(NamedTuple):
    id: str  # the header's first word; "" when the header is blank
    header: str  # the header line without ">" and surrounding whitespace
    sequence: str  # the residue lines joined, all whitespace removed ("" when oversized)
    line: int  # 1-based line number of the header
    oversized: bool = False  # the record passed max_record_chars: its residues were not kept


def read_fasta(source: str | os.PathLike[str] | IO[str], max_record_chars: int | None = None) -> Iterator[FastaRecord]:
    """The records of a FASTA file, in order.

    `source` is a path (plain or gzip, opened here and closed when the iteration ends) or an open text
    handle (read as it is; its ``name`` is used in errors). A record whose lines pass `max_record_chars` comes
    with ``oversized`` set. Raises ValueError at residue lines before the first header, and OSError naming the
    file when a gzip file is truncated or corrupt or the path is not a readable file.
    """
    max_record_chars = max_record_chars or DEFAULT_MAX_RECORD_CHARS
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            raise OSError(f"{path} is a directory, not a FASTA file")
        with _open_text(path) as handle:
            yield from _records(handle, path, max_record_chars)
    else:
        yield from _records(source, str(getattr(source, "name", "<stream>")), max_record_chars)


def _open_text(path: str) -> IO[str]:
    with open(path, "rb") as probe:
        is_gzip = probe.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    # A stray byte becomes a surrogate escape: an illegal residue (rejected by normalise) or an id character
    # callers can refuse by name, never a crash mid-file and never a replacement that merges two ids.
    if is_gzip:
        return gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape")
    return open(path, encoding="utf-8", errors="surrogateescape")


def _lines(handle: IO[str] | Iterable[str], max_chars: int) -> Iterator[tuple[str, bool]]:
    """``(line, whole)`` for each line; a line longer than `max_chars` comes as its first `max_chars` characters
    with ``whole`` False, and its remainder is read and dropped in bounded pieces. (An iterable of lines without
    ``readline`` is taken as given.)"""
    if not hasattr(handle, "readline"):
        for line in handle:
            yield line[:max_chars], len(line) <= max_chars
        return
    while line := handle.readline(max_chars + 1):
        if len(line) <= max_chars or line.endswith("\n"):
            yield line, True
            continue
        yield line[:max_chars], False
        while (piece := handle.readline(READ_CHARS)) and not piece.endswith("\n"):
            pass


def _records(handle: IO[str] | Iterable[str], name: str, max_chars: int) -> Iterator[FastaRecord]:
    header: str | None = None
    parts: list[str] = []
    size = start = number = 0
    oversized = False
    try:
        for number, (line, whole) in enumerate(_lines(handle, max_chars), start=1):
            if line.startswith(">"):
                if header is not None:
                    yield _record(header, parts, start, oversized)
                header, parts, start, size, oversized = line[1:].strip(), [], number, 0, not whole
            elif line.strip():
                if header is None:
                    raise ValueError(f"{name}:{number}: residues before the first '>' header: not FASTA")
                size += len(line)
                oversized = oversized or not whole or size > max_chars
                if oversized:
                    parts.clear()
                else:
                    parts.append(line)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise OSError(f"{name}: truncated or corrupt gzip at line {number + 1}: {error}") from error
    if header is not None:
        yield _record(header, parts, start, oversized)


def _record(header: str, parts: list[str], line: int, oversized: bool) -> FastaRecord:
    words = header.split(maxsplit=1)
    return FastaRecord(words[0] if words else "", header, "" if oversized else "".join("".join(parts).split()),
                       line, oversized)
