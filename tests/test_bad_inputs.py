"""Bad input never crashes the job and is never dropped silently: each record is written, rejected with a
reason, or counted as a duplicate, and the manifest reconciles."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest

from beam_jobs import fasta_to_tfrecords
from tests.bad_inputs import LONG_RESIDUES, write_bad_inputs
from tests.conftest import assert_reconciles, read_records, read_rejects


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    inputs = tmp_path_factory.mktemp("bad_inputs")
    expected = write_bad_inputs(inputs)
    out = tmp_path_factory.mktemp("out") / "dataset"
    manifest = fasta_to_tfrecords.run(["--input", str(inputs / "*.fasta*"), "--output-dir", str(out)])
    return expected, out, manifest


def test_every_bad_record_gets_its_outcome(bad_run):
    expected, out, manifest = bad_run
    written = {r["id"]: r["sequence"] for split in ("train", "valid") for r in read_records(out, split)}
    assert written == expected.written
    counts = manifest["counts"]
    assert counts["rejected_by_reason"] == expected.rejected
    assert counts["duplicates_by_reason"] == {"duplicate_id": expected.duplicates}
    assert counts["repairs"] == expected.repairs


def test_counts_reconcile(bad_run):
    expected, _, manifest = bad_run
    assert_reconciles(manifest)
    assert manifest["counts"]["read"] == expected.read


def test_rejects_file_names_each_record_and_reason(bad_run):
    expected, out, manifest = bad_run
    rejects = read_rejects(out)
    assert len(rejects) == manifest["counts"]["rejected"] == sum(expected.rejected.values())
    by_id = {r["id"]: r for r in rejects if r["id"]}
    assert by_id["huge"]["reason"] == "too_long"
    assert f"length {LONG_RESIDUES}" in by_id["huge"]["detail"]
    assert len(by_id["huge"]["excerpt"]) == 200
    assert by_id["illegal_char"]["excerpt"] == "MKT#QRS"
    assert by_id["illegal_char"]["file"].endswith("messy.fasta")
    assert "'#'" in by_id["illegal_char"]["detail"]
    conflicts = [r for r in rejects if r["reason"] == "conflicting_duplicate_id"]
    assert {r["excerpt"] for r in conflicts} == {"MKTAAA", "MKTGGG"}
    assert {r["id"] for r in rejects if r["reason"] in ("missing_header", "missing_id")} == {""}
    # escaped, so that an id that is not UTF-8 never becomes another one (a replacement character would merge ids)
    assert {r["id"]: r["detail"] for r in rejects if r["reason"] == "invalid_id"} == {
        "latin1_\\ufffd": "the id is not valid UTF-8", "nul\\x00id": "the id holds a control character (such as NUL)"}


def test_truncated_gzip_fails_the_job_with_the_file_name(tmp_path):
    broken = tmp_path / "broken.fasta.gz"
    broken.write_bytes(gzip.compress(b">a\nMKTAYIAK\n" * 20000)[:-100])
    result = subprocess.run(
        [sys.executable, "-m", "beam_jobs.fasta_to_tfrecords", "--input", str(broken),
         "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "broken.fasta.gz" in result.stderr and "truncated" in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_beam_metrics_count_the_same_outcomes_as_the_manifest(tmp_path):
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    from beam_jobs import pipeline

    expected = write_bad_inputs(tmp_path / "in")
    options = pipeline.PreprocessOptions(inputs=(str(tmp_path / "in" / "*.fasta*"),), output_dir=str(tmp_path / "out"))
    p = beam.Pipeline(runner=fn_runner.FnApiRunner())
    pipeline.build_pipeline(p, options, versions={})
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace("prottrans"))["counters"]}
    assert counters["read"] == expected.read
    assert counters["written_train"] + counters.get("written_valid", 0) == len(expected.written)
    assert counters["duplicates_duplicate_id"] == expected.duplicates
    assert {k[len("rejected_"):]: v for k, v in counters.items() if k.startswith("rejected_")} == expected.rejected
    assert counters["residues_written"] == sum(len(s) for s in expected.written.values())
