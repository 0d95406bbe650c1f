"""The splittable FASTA source reads every record exactly once, however a file is split."""

from __future__ import annotations

import gzip

import pytest
from apache_beam.io import source_test_utils

from beam_jobs import fasta_source
from beam_jobs.fasta_source import FastaSource, InputFileError

# Orphan lines before the first header, CRLF endings, blank lines, an empty record and a long record.
TRICKY_FASTA = (
    b"MKV orphan residues\n"
    b">sp|P1|A_HUMAN first OX=9606\r\nMKTAYIAK\r\nQRQISFVK\r\n"
    b">second\n\nACDEFGHIKLMNPQRSTVWY\n\n"
    b">empty\n"
    b">long\n" + b"ACDEFGHIKL\n" * 30 +
    b">last no newline\nMMM"
)


@pytest.fixture
def tricky_file(tmp_path):
    path = tmp_path / "tricky.fasta"
    path.write_bytes(TRICKY_FASTA)
    return str(path)


def test_reads_every_record_with_its_header_and_offset(tricky_file):
    records = source_test_utils.read_from_source(FastaSource(tricky_file))
    assert [(r[1], r[2]) for r in records] == [
        (0, None),
        (20, "sp|P1|A_HUMAN first OX=9606"),
        (TRICKY_FASTA.index(b">second"), "second"),
        (TRICKY_FASTA.index(b">empty"), "empty"),
        (TRICKY_FASTA.index(b">long"), "long"),
        (TRICKY_FASTA.index(b">last"), "last no newline"),
    ]
    assert records[0][3] == b"MKV orphan residues"
    assert records[1][3] == b"MKTAYIAK\r\nQRQISFVK\r"
    assert records[4][3].replace(b"\n", b"") == b"ACDEFGHIKL" * 30
    assert records[-1][3] == b"MMM"
    assert all(r[0] == tricky_file for r in records)


@pytest.mark.parametrize("chunk_bytes", [1, 7, 1 << 20])
def test_split_at_every_fraction_reads_each_record_once(tricky_file, monkeypatch, chunk_bytes):
    # Small read chunks put record boundaries across chunk boundaries too.
    monkeypatch.setattr(fasta_source, "READ_CHUNK_BYTES", chunk_bytes)
    source = FastaSource(tricky_file)
    [whole] = source.split(desired_bundle_size=1 << 30)
    source_test_utils.assert_split_at_fraction_exhaustive(whole.source)


def test_initial_splits_of_any_size_equal_the_whole_file(tricky_file):
    reference = FastaSource(tricky_file)
    for bundle_size in (1, 5, 17, 64, 1000):
        splits = [(s.source, s.start_position, s.stop_position) for s in reference.split(bundle_size)]
        assert len(splits) == -(-len(TRICKY_FASTA) // bundle_size)
        source_test_utils.assert_sources_equal_reference_source((reference, None, None), splits)


def test_gzip_files_are_read_whole_and_not_split(tmp_path):
    path = tmp_path / "x.fasta.gz"
    path.write_bytes(gzip.compress(TRICKY_FASTA))
    plain = tmp_path / "x.fasta"
    plain.write_bytes(TRICKY_FASTA)
    source = FastaSource(str(path))
    assert len(list(source.split(desired_bundle_size=8))) == 1
    gz = [r[1:] for r in source_test_utils.read_from_source(source)]
    assert gz == [r[1:] for r in source_test_utils.read_from_source(FastaSource(str(plain)))]


def test_truncated_gzip_fails_with_an_error_naming_the_file(tmp_path):
    path = tmp_path / "truncated.fasta.gz"
    path.write_bytes(gzip.compress(TRICKY_FASTA * 50)[:-40])
    with pytest.raises(InputFileError, match="truncated.fasta.gz.*truncated"):
        source_test_utils.read_from_source(FastaSource(str(path)))


def test_oversized_record_is_flagged_without_being_held(tmp_path):
    path = tmp_path / "big.fasta"
    path.write_bytes(b">big\n" + b"A" * 5000 + b"\n>small\nMK\n")
    records = source_test_utils.read_from_source(FastaSource(str(path), max_record_bytes=1000))
    assert [(r[2], r[4]) for r in records] == [("big", True), ("small", False)]
    assert len(records[0][3]) <= fasta_source.EXCERPT_BYTES
