"""The Beam job end to end on real sequences: what it writes reads back equal to the normalised input."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

import pytest

from beam_jobs import pipeline
from tests.conftest import SAMPLE_FASTA, assert_reconciles, read_fasta_reference, read_records, read_rejects

_RARE_TO_X = str.maketrans("UZOB", "XXXX")


def expected_from_sample() -> dict[str, str]:
    """id -> normalised sequence of the bundled UniProt sample, derived without the job's code."""
    expected = {}
    for header, residues in read_fasta_reference(SAMPLE_FASTA):
        accession = re.match(r"(?:sp|tr)\|([^|]+)\|", header).group(1)
        expected[accession] = residues.upper().rstrip("*").translate(_RARE_TO_X)
    return expected


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    from beam_jobs import fasta_to_tfrecords

    out = tmp_path_factory.mktemp("sample") / "dataset"
    manifest = fasta_to_tfrecords.run(["--input", str(SAMPLE_FASTA), "--output-dir", str(out)])
    return out, manifest


def test_sample_records_read_back_equal_to_the_normalised_input(sample_run):
    out, manifest = sample_run
    expected = expected_from_sample()
    records = read_records(out, "train") + read_records(out, "valid")
    assert {r["id"]: r["sequence"] for r in records} == expected
    assert len(records) == len(expected) == 2000
    assert all(r["length"] == len(r["sequence"]) for r in records)
    assert {r["source"] for r in records} == {"fasta"}
    assert manifest["counts"]["written"] == 2000 and manifest["counts"]["rejected"] == 0
    assert_reconciles(manifest)


def test_manifest_describes_the_dataset(sample_run):
    out, manifest = sample_run
    records = read_records(out, "train") + read_records(out, "valid")
    residues = "".join(r["sequence"] for r in records)
    assert manifest["residues"]["total"] == len(residues)
    composition = Counter(residues)
    assert {k: v["count"] for k, v in manifest["residue_composition"].items() if v["count"]} == dict(composition)
    assert sum(manifest["lengths"]["histogram"]["counts"]) == len(records)
    assert manifest["lengths"]["max"] == max(r["length"] for r in records)
    assert manifest["inputs"][0]["files"][0]["size_bytes"] == SAMPLE_FASTA.stat().st_size
    assert set(manifest["versions"]) >= {"apache-beam", "tensorflow", "prottrans-tf"}
    for part, files in manifest["shards"].items():
        assert files and all((out / name).exists() for name in files), part
    assert all(re.fullmatch(r"train/data-\d{5}-of-\d{5}\.tfrecord\.gz", f) for f in manifest["shards"]["train"])


def test_split_is_by_sequence_hash_and_near_the_requested_fraction(sample_run):
    out, manifest = sample_run
    valid = read_records(out, "valid")
    assert 0.03 < len(valid) / 2000 < 0.07  # --valid-fraction defaults to 0.05
    for record in valid:
        digest = pipeline.sequence_digest(record["sequence"].encode())
        assert pipeline.split_for(digest, 0.05) == "valid"
    assert manifest["counts"]["written_by_split"] == {"train": 2000 - len(valid), "valid": len(valid)}


def test_rerun_writes_the_same_records_to_the_same_splits(sample_run, run_job):
    out, _ = sample_run
    again, _ = run_job("--input", str(SAMPLE_FASTA), "--num-shards", "3", "--compression", "none")
    for split in ("train", "valid"):
        key = lambda r: r["id"]  # noqa: E731
        assert sorted(read_records(again, split), key=key) == sorted(read_records(out, split), key=key)
    assert sorted(p.name for p in (again / "train").iterdir()) == [
        f"data-0000{i}-of-00003.tfrecord" for i in range(3)]


def write_uniref(path, records, level):
    with open(path, "w") as handle:
        for i, (accession, sequence) in enumerate(records):
            handle.write(f">UniRef{level}_{accession} Some protein n={i + 1} Tax=Homo sapiens TaxID={9600 + i} "
                         f"RepID={accession}_HUMAN\n")
            for start in range(0, len(sequence), 60):
                handle.write(sequence[start:start + 60] + "\n")


def test_uniref_inputs_keep_source_and_taxon_and_dedup_removes_shared_sequences(tmp_path, run_job):
    real = list(expected_from_sample().items())[:60]
    write_uniref(tmp_path / "uniref100.fasta", real[:40], 100)
    write_uniref(tmp_path / "uniref50.fasta", real[20:], 50)  # 20 sequences are in both files
    out, manifest = run_job("--input", str(tmp_path / "uniref100.fasta"), "--input", str(tmp_path / "uniref50.fasta"),
                            "--dedup")
    records = read_records(out, "train") + read_records(out, "valid")
    assert len(records) == 60
    assert manifest["counts"]["duplicates_by_reason"] == {"duplicate_sequence": 20}
    # The kept copy is the smallest id: "UniRef100_…" sorts before "UniRef50_…".
    by_sequence = {r["sequence"]: r for r in records}
    for i, (accession, sequence) in enumerate(real[:40]):
        record = by_sequence[sequence]
        assert (record["id"], record["source"], record["taxon_id"]) == (f"UniRef100_{accession}", "uniref100", 9600 + i)
    assert {by_sequence[s]["source"] for _, s in real[40:]} == {"uniref50"}
    assert manifest["counts"]["read_by_source"] == {"uniref100": 40, "uniref50": 40}
    assert_reconciles(manifest)


def test_without_dedup_equal_sequences_under_different_ids_are_all_kept(tmp_path, run_job):
    (tmp_path / "a.fasta").write_text(">one\nMKTAYIAK\n>two\nMKTAYIAK\n")
    out, manifest = run_job("--input", str(tmp_path / "a.fasta"), "--valid-fraction", "0.5")
    records = read_records(out, "train") + read_records(out, "valid")
    assert sorted(r["id"] for r in records) == ["one", "two"]
    assert len({split for split in ("train", "valid") if read_records(out, split)}) == 1  # same sequence, same split
    assert manifest["counts"]["duplicates_removed"] == 0


def test_a3m_ffindex_keeps_the_first_sequence_without_gaps_or_insertions(tmp_path, run_job):
    from tests.test_ffindex import write_ffindex_from_real_a3m

    index, expected = write_ffindex_from_real_a3m(tmp_path)
    out, manifest = run_job("--input", str(index), "--input-format", "a3m-ffindex")
    records = read_records(out, "train") + read_records(out, "valid")
    assert {r["id"]: r["sequence"] for r in records} == expected
    assert {r["source"] for r in records} == {"bfd"}
    assert_reconciles(manifest)


def test_fasta_and_a3m_ffindex_inputs_mix_in_one_job_and_dedup_across_them(tmp_path, run_job):
    from tests.test_ffindex import write_ffindex

    accession, sequence = next(iter(expected_from_sample().items()))
    a3m = f"#1 1\n>{accession} representative\n{sequence[:10].lower()}{sequence}\n>hit\n{sequence}\n".encode()
    index = write_ffindex(tmp_path, {"bfd_0001": a3m, "bfd_0002": b">x\nMK-TA\n"})
    out, manifest = run_job("--input", str(SAMPLE_FASTA), "--input", str(index), "--dedup")  # format from suffix
    records = {r["id"]: r for r in read_records(out, "train") + read_records(out, "valid")}
    distinct_in_sample = len(set(expected_from_sample().values()))  # the real sample has a few exact duplicates
    assert len(records) == distinct_in_sample + 1  # bfd_0001 duplicates a sample protein, bfd_0002 is new
    assert accession in records and "bfd_0001" not in records  # "A…" < "bfd_…": the smallest id is kept
    assert records["bfd_0002"]["sequence"] == "MKTA" and records["bfd_0002"]["source"] == "bfd"
    assert manifest["counts"]["duplicates_by_reason"] == {"duplicate_sequence": 2000 - distinct_in_sample + 1}
    assert len({r["sequence"] for r in records.values()}) == len(records)
    assert [i["format"] for i in manifest["inputs"]] == ["fasta", "a3m-ffindex"]
    assert_reconciles(manifest)


def test_existing_dataset_is_kept_unless_overwrite(tmp_path, run_job, capsys):
    from beam_jobs import fasta_to_tfrecords

    (tmp_path / "first.fasta").write_text(">first\nMKTAYIAK\n>bad\nMK#\n")
    (tmp_path / "second.fasta").write_text(">second\nMKT\n")
    out, _ = run_job("--input", str(tmp_path / "first.fasta"))
    again = ["--input", str(tmp_path / "second.fasta"), "--output-dir", str(out)]
    assert fasta_to_tfrecords.main(again) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [r["id"] for r in read_records(out, "train") + read_records(out, "valid")] == ["first"]
    assert fasta_to_tfrecords.main([*again, "--overwrite"]) == 0
    assert [r["id"] for r in read_records(out, "train") + read_records(out, "valid")] == ["second"]
    assert read_rejects(out) == []


def test_a_failed_overwrite_keeps_the_earlier_dataset(tmp_path, run_job, capsys):
    import gzip

    from beam_jobs import fasta_to_tfrecords

    (tmp_path / "first.fasta").write_text(">first\nMKTAYIAK\n")
    (tmp_path / "broken.fasta.gz").write_bytes(gzip.compress(b">a\nMKTAYIAK\n" * 20000)[:-100])
    out, manifest = run_job("--input", str(tmp_path / "first.fasta"))
    with pytest.raises(Exception):
        fasta_to_tfrecords.run(["--input", str(tmp_path / "broken.fasta.gz"), "--output-dir", str(out), "--overwrite"])
    assert [r["id"] for r in read_records(out, "train") + read_records(out, "valid")] == ["first"]
    assert (out / "manifest.json").read_text() and sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "train", "valid", "rejects"])  # no staging folder left behind


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys):
    from beam_jobs import fasta_to_tfrecords

    (tmp_path / "in.fasta").write_text(">a\nMKTAYIAK\n")
    (tmp_path / "a_file").write_text("not a folder")
    assert fasta_to_tfrecords.main(["--input", str(tmp_path / "in.fasta"),
                                    "--output-dir", str(tmp_path / "a_file" / "dataset")]) == 2
    error = capsys.readouterr().err
    assert "cannot write to --output-dir" in error and "a_file" in error and "Traceback" not in error


def test_a_job_that_writes_no_record_fails_loudly_unless_allowed(tmp_path, capsys):
    from beam_jobs import fasta_to_tfrecords

    (tmp_path / "all_bad.fasta").write_text(">a\nMK#\n>b\n\n")
    flags = ["--input", str(tmp_path / "all_bad.fasta"), "--output-dir", str(tmp_path / "out")]
    assert fasta_to_tfrecords.main(flags) == 1
    error = capsys.readouterr().err
    assert "no record written: read 2, rejected 2" in error and "--allow-empty" in error
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert fasta_to_tfrecords.main([*flags, "--allow-empty"]) == 0
    assert read_rejects(tmp_path / "out") and (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--direct_running_mode=multi_threading"], "multi_threading is refused"),
        (["--valid-fraction", "1.5"], "--valid-fraction"),
        (["--min-length", "10", "--max-length", "5"], "--max-length"),
    ],
)
def test_bad_flags_fail_before_any_work(tmp_path, capsys, flags, message):
    from beam_jobs import fasta_to_tfrecords

    try:
        code = fasta_to_tfrecords.main(["--input", str(SAMPLE_FASTA), "--output-dir", str(tmp_path / "o"), *flags])
    except SystemExit as exit:  # refused by the flag's own type, as argparse does
        code = exit.code
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_multi_processing_with_two_workers_writes_the_same_records(sample_run, tmp_path):
    out, _ = sample_run
    result = subprocess.run(
        [sys.executable, "-m", "beam_jobs.fasta_to_tfrecords", "--input", str(SAMPLE_FASTA),
         "--output-dir", str(tmp_path / "mp"), "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "read 2,000 records; wrote 2,000" in result.stdout
    for split in ("train", "valid"):
        key = lambda r: r["id"]  # noqa: E731
        assert sorted(read_records(tmp_path / "mp", split), key=key) == sorted(read_records(out, split), key=key)
