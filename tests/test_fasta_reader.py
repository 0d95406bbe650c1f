"""The streaming FASTA reader: plain or gzip, one record at a time, clear errors for what is not FASTA."""

from __future__ import annotations

import gzip
import io

import pytest

from beam_jobs.fasta import FastaRecord, read_fasta

# Blank lines, CRLF endings, a multi-line record, an empty record, a blank header and no final newline.
FASTA = (
    "\n"
    ">sp|P1|A_HUMAN first protein OX=9606\r\n"
    "MKTAYIAK\r\n"
    "QRQISFVK\r\n"
    "\n"
    ">P2\n"
    "mkt ay*\n"
    ">empty record\n"
    ">\n"
    "MMM\n"
    ">last\n"
    "ACD"
)
EXPECTED = [
    FastaRecord("sp|P1|A_HUMAN", "sp|P1|A_HUMAN first protein OX=9606", "MKTAYIAKQRQISFVK", 2),
    FastaRecord("P2", "P2", "mktay*", 6),
    FastaRecord("empty", "empty record", "", 8),
    FastaRecord("", "", "MMM", 9),
    FastaRecord("last", "last", "ACD", 11),
]


def test_records_give_id_header_joined_sequence_and_header_line():
    assert list(read_fasta(io.StringIO(FASTA))) == EXPECTED


def test_plain_and_gzip_files_give_the_same_records_whatever_their_name(tmp_path):
    plain = tmp_path / "proteins.fasta"
    plain.write_text(FASTA)
    compressed = tmp_path / "proteins.fa"  # gzip is recognised by its magic bytes, not by a .gz suffix
    compressed.write_bytes(gzip.compress(FASTA.encode()))
    assert list(read_fasta(plain)) == list(read_fasta(str(compressed))) == EXPECTED


def test_residues_are_left_for_normalise_to_clean():
    [record] = read_fasta(io.StringIO(">x\nmk tU\n*\n"))
    assert record.sequence == "mktU*"  # only whitespace is removed


def test_an_empty_file_has_no_records(tmp_path):
    empty = tmp_path / "empty.fasta"
    empty.write_text("")
    assert list(read_fasta(empty)) == []
    assert list(read_fasta(io.StringIO("\n\n"))) == []


def test_residues_before_the_first_header_are_not_fasta(tmp_path):
    path = tmp_path / "table.fasta"
    path.write_text("\nMKTAYIAK\n>P1\nMKT\n")
    with pytest.raises(ValueError, match=r"table.fasta:2: residues before the first '>' header: not FASTA"):
        list(read_fasta(path))


def test_a_truncated_gzip_file_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "cut.fasta.gz"
    whole = gzip.compress((">P1\n" + "MKTAYIAK" * 2000 + "\n").encode())
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(OSError, match=r"cut.fasta.gz: truncated or corrupt gzip"):
        list(read_fasta(path))


def test_records_are_yielded_as_they_are_read():
    read_lines = []

    def lines():
        for line in [">a\n", "MK\n", ">b\n", "MV\n", ">c\n"]:
            read_lines.append(line)
            yield line

    records = read_fasta(lines())
    assert next(records).id == "a"
    assert len(read_lines) == 3  # up to the next header, not the whole file
