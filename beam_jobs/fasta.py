"""The one streaming FASTA reader outside Beam: plain or gzip, one record at a time.

Memory holds one record, never the file. Gzip is recognised by its magic bytes, whatever the file is called.
Blank lines are allowed anywhere; residue lines before the first header are an error (the file is not FASTA),
and so is a truncated or corrupt gzip file; both errors name the file. Residues are returned as written
(case, ``*`` and rare residues kept): :func:`beam_jobs.sequences.normalise` is the one place that cleans them.
The Beam job reads byte ranges of FASTA files through :mod:`beam_jobs.fasta_source` instead.
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import IO, Iterable, Iterator, NamedTuple

GZIP_MAGIC = b"\x1f\x8b"


class FastaRecord(NamedTuple):
    id: str  # the header's first word; "" when the header is blank
    header: str  # the header line without ">" and surrounding whitespace
    sequence: str  # the residue lines joined, all whitespace removed
    line: int  # 1-based line number of the header


def read_fasta(source: str | os.PathLike[str] | IO[str]) -> Iterator[FastaRecord]:
    """The records of a FASTA file, in order.

    `source` is a path (plain or gzip, opened here and closed when the iteration ends) or an open text
    handle (read as it is; its ``name`` is used in errors). Raises ValueError at residue lines before the first
    header, and OSError naming the file when a gzip file is truncated or corrupt.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        with _open_text(path) as handle:
            yield from _records(handle, path)
    else:
        yield from _records(source, str(getattr(source, "name", "<stream>")))


def _open_text(path: str) -> IO[str]:
    with open(path, "rb") as probe:
        is_gzip = probe.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    # utf-8 with replacement, as the Beam source decodes headers: a stray byte becomes an illegal residue
    # (rejected by normalise) or a replaced header character, never a crash mid-file.
    if is_gzip:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _records(lines: Iterable[str], name: str) -> Iterator[FastaRecord]:
    header: str | None = None
    parts: list[str] = []
    start = number = 0
    try:
        for number, line in enumerate(lines, start=1):
            if line.startswith(">"):
                if header is not None:
                    yield _record(header, parts, start)
                header, parts, start = line[1:].strip(), [], number
            elif line.strip():
                if header is None:
                    raise ValueError(f"{name}:{number}: residues before the first '>' header: not FASTA")
                parts.append(line)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise OSError(f"{name}: truncated or corrupt gzip at line {number + 1}: {error}") from error
    if header is not None:
        yield _record(header, parts, start)


def _record(header: str, parts: list[str], line: int) -> FastaRecord:
    words = header.split(maxsplit=1)
    return FastaRecord(words[0] if words else "", header, "".join("".join(parts).split()), line)
