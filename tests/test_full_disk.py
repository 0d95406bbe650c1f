"""A full disk (here the file-size limit, ``ulimit -f``, which fails writes as a full disk does) stops a command
with one line that names the file, a non-zero exit and no crash; what was written stays resumable."""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
from pathlib import Path

from models.export.signatures import export_saved_model, head_signatures
from models.input_pipeline import TOKEN_IDS
from models.registry import build_backbone, get_family

BIN = Path(sys.executable).parent
SAMPLE = Path(__file__).resolve().parents[1] / "beam_jobs" / "sample_data" / "uniprot_sample.fasta.gz"


def _limited(command: list[str], max_file_bytes: int | None) -> subprocess.CompletedProcess:
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}  # a user's shell
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env,
                          preexec_fn=limit if max_file_bytes else None)


def _one_line_error(result: subprocess.CompletedProcess, command: str) -> str:
    assert result.returncode == 1, result.stderr[-2000:]  # not 139: HDF5 that failed a write used to segfault
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"{command}: error:") and "Traceback" not in result.stderr, \
        result.stderr[-2000:]
    return errors[0]


def test_embedding_into_a_full_disk_stops_before_hdf5_fails_and_resumes_when_there_is_room(tmp_path):
    model = export_saved_model(build_backbone("protbert", "tiny"), str(tmp_path / "serving"))
    rng = random.Random(0)
    fasta = tmp_path / "proteins.fasta"
    fasta.write_text("".join(f">P{i}\n{''.join(rng.choices('ACDEFGHIKLMNPQRSTVWY', k=300))}\n" for i in range(60)))
    output = tmp_path / "out.h5"
    command = [str(BIN / "prottrans-embed"), "--saved-model", model, "--per-residue", str(fasta), str(output)]

    full = _limited(command, 5 << 20)
    line = _one_line_error(full, "prottrans-embed")
    assert f"{output}.partial: no room to write 'P" in line and "(rerun to resume)" in line

    resumed = _limited(command, None)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "embedded " in resumed.stdout and "already in" in resumed.stdout
    assert not resumed.stdout.split("already in")[1].split(":")[1].strip().startswith("0;")


def test_preprocessing_into_a_full_disk_names_the_file_it_was_writing(tmp_path):
    result = _limited([str(BIN / "prottrans-preprocess"), "--input", str(SAMPLE), "--output-dir",
                       str(tmp_path / "out")], 100 << 10)
    line = _one_line_error(result, "prottrans-preprocess")
    assert "File too large: writing " + str(tmp_path / "out") in line


def test_a_text_output_cut_by_a_full_disk_never_replaces_the_earlier_one(tmp_path):
    """prottrans-score and prottrans-predict write OUT.partial and rename it when complete: a full disk leaves the
    earlier OUT as it was, never a cut file that looks whole."""
    family = get_family("protbert")
    backbone = build_backbone("protbert", "tiny")
    task_model = family.objective.task_model(backbone)
    task_model.build({TOKEN_IDS: (None, None)})
    model = export_saved_model(backbone, str(tmp_path / "serving"), head=head_signatures(family.objective, task_model))
    rng = random.Random(1)
    sequence = "".join(rng.choices("ACDEFGHIKLMNPQRSTVWY", k=60))
    (tmp_path / "protein.fasta").write_text(f">P1\n{sequence}\n")
    mutants = [f"{wild}{position}{other}" for position, wild in enumerate(sequence, 1)
               for other in "ACDEFGHIKLMNPQRSTVWY" if other != wild]
    (tmp_path / "mutants.csv").write_text("mutant\n" + "\n".join(mutants) + "\n")
    output = tmp_path / "scores.csv"
    output.write_text("an earlier run's scores\n")
    command = [str(BIN / "prottrans-score"), "--saved-model", model, str(tmp_path / "protein.fasta"),
               str(tmp_path / "mutants.csv"), str(output)]

    line = _one_line_error(_limited(command, 8 << 10), "prottrans-score")
    assert f"File too large: writing {output}.partial" in line
    assert output.read_text() == "an earlier run's scores\n" and not Path(f"{output}.partial").exists()
    assert _limited(command, None).returncode == 0
    assert len(output.read_text().splitlines()) == len(mutants) + 1
