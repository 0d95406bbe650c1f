"""Every command starts quietly and reports progress in a form that suits a terminal or a log file."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = {
    "prottrans-train": ["-m", "models.cli.train", "--data", "/no/such/data", "--model-dir", "/tmp/unused"],
    "prottrans-preprocess": ["-m", "beam_jobs.fasta_to_tfrecords", "--input", "/no/such.fasta", "--output-dir",
                             "/tmp/unused"],
    "prottrans-embed": ["-m", "serving.embed", "--saved-model", "/no/such/model", "/no/such.fasta", "/tmp/o.h5"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_user_mistake_prints_one_error_line_and_no_library_noise(command):
    result = subprocess.run([sys.executable, *COMMANDS[command]], capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error:"), result.stderr
    verbose = subprocess.run([sys.executable, *COMMANDS[command], "--verbose"], capture_output=True, text=True,
                             timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert verbose.returncode == result.returncode and lines[0] in verbose.stderr


def test_an_error_no_command_foresaw_is_one_line_and_its_traceback_only_with_verbose(capsys):
    from beam_jobs.console import guarded

    def fails() -> int:
        raise RuntimeError("the library failed:\n" + "[0.1 0.2 0.3]\n" * 500)

    assert guarded("prottrans-x", fails, []) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("prottrans-x: error: RuntimeError: the library failed: [0.1 0.2 0.3]")
    assert line.endswith("… (--verbose shows the traceback)") and len(line) < 700
    with pytest.raises(RuntimeError, match="the library failed"):
        guarded("prottrans-x", fails, ["--verbose"])


def test_progress_in_a_log_file_is_whole_lines(capsys):
    from beam_jobs.console import Progress

    progress = Progress("ss train", 500, every_s=0.0)
    for done in (256, 500):
        progress.update(done, "new sequences embedded")
    assert capsys.readouterr().err.splitlines() == [
        "ss train: 256/500 new sequences embedded", "ss train: 500/500 new sequences embedded"]
