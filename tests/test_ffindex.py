"""a3m entries in an ffindex/ffdata pair (BFD's layout) yield their first sequence, de-gapped."""

from __future__ import annotations

import pytest

from beam_jobs.fasta_source import InputFileError
from beam_jobs.ffindex import ReadA3mEntries, first_a3m_sequence, parse_index_line
from tests.conftest import SAMPLE_A3M


def write_ffindex(directory, entries: dict[str, bytes], name="db_a3m"):
    """Write an ffindex/ffdata pair as ffindex_build does: entries NUL-terminated, index sorted by name."""
    data, index = bytearray(), []
    for entry_name, entry in entries.items():
        index.append(f"{entry_name}\t{len(data)}\t{len(entry) + 1}\n")
        data += entry + b"\0"
    (directory / f"{name}.ffdata").write_bytes(bytes(data))
    (directory / f"{name}.ffindex").write_text("".join(sorted(index)))
    return directory / f"{name}.ffindex"


def write_ffindex_from_real_a3m(directory):
    """The real HH-suite a3m as one entry, plus a synthetic one with a `#` line; returns (index, expected)."""
    real = SAMPLE_A3M.read_bytes()
    query = real.split(b"\n>")[0].split(b"\n", 1)[1].replace(b"\n", b"").decode()
    synthetic = b"#42 1\n>rep1 cluster rep\nMK-tT\naYI.K\n>member\nMKKKTAYIK\n"
    index = write_ffindex(directory, {"0000001": real, "0000002": synthetic})
    return index, {"0000001": query, "0000002": "MKTYIK"}


def test_first_sequence_drops_gaps_insertions_and_comment_lines():
    header, residues = first_a3m_sequence(b"#5 1\n>q desc\nAB-c\nd.EF\n>hit\nZZZZ\n\0")
    assert (header, residues) == ("q desc", b"ABEF")


def test_real_a3m_query_has_no_gaps_or_lowercase():
    header, residues = first_a3m_sequence(SAMPLE_A3M.read_bytes())
    assert header.startswith("sp|Q5VUD6|")
    assert residues.isupper() and b"-" not in residues and len(residues) > 100


def test_reader_yields_one_record_per_entry(tmp_path):
    index, expected = write_ffindex_from_real_a3m(tmp_path)
    reader = ReadA3mEntries()
    reader.setup()
    records = [r for line in index.read_text().splitlines() for r in reader.process((str(index), line))]
    reader.teardown()
    assert {r[2]: r[3].decode() for r in records} == expected
    assert all(r[0].endswith("db_a3m.ffdata") and not r[4] for r in records)


def test_malformed_index_line_names_the_file():
    with pytest.raises(InputFileError, match="db.ffindex: malformed ffindex line"):
        parse_index_line("db.ffindex", "only-a-name\n")


def test_entry_past_the_end_of_the_data_file_names_the_file(tmp_path):
    index = write_ffindex(tmp_path, {"a": b">a\nMKT\n"})
    reader = ReadA3mEntries()
    reader.setup()
    with pytest.raises(InputFileError, match="db_a3m.ffdata: entry 'b'"):
        list(reader.process((str(index), "b\t0\t999")))
