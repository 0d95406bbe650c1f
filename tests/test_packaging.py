"""The project installs its ten commands, and Beam workers can install it from its own files."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("prottrans-preprocess", "prottrans-train", "prottrans-import", "prottrans-probe", "prottrans-pipeline",
            "prottrans-serve", "prottrans-embed", "prottrans-predict", "prottrans-score", "prottrans-finetune")


def test_every_design_command_is_a_console_script():
    scripts = {ep.name for ep in metadata.entry_points(group="console_scripts") if ep.name.startswith("prottrans-")}
    assert scripts == set(COMMANDS)
    for name in COMMANDS:
        assert (Path(sys.executable).parent / name).exists(), name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    result = subprocess.run([str(Path(sys.executable).parent / name), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout


def test_preprocess_help_lists_the_design_flags():
    result = subprocess.run([str(Path(sys.executable).parent / "prottrans-preprocess"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--input", "--output-dir", "--input-format", "--valid-fraction", "--min-length", "--max-length",
                 "--dedup", "--num-shards", "--compression"):
        assert flag in result.stdout


def test_beam_stager_builds_an_sdist_that_workers_install_with_beam_only(tmp_path):
    from apache_beam.runners.portability.stager import Stager

    sdist = Stager._build_setup_package(str(REPO / "pyproject.toml"), str(tmp_path))
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
        pkg_info = next(n for n in names if n.endswith("/PKG-INFO") and n.count("/") == 1)
        requires = [line for line in archive.extractfile(pkg_info).read().decode().splitlines()
                    if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert any(n.endswith("beam_jobs/sample_data/uniprot_sample.fasta.gz") for n in names)
    assert any(n.endswith("beam_jobs/fasta_to_tfrecords.py") for n in names)
    assert sorted(requires) == ["Requires-Dist: apache-beam[gcp]==2.77.0", "Requires-Dist: numpy"]
