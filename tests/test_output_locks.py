"""One writer per output: a second run of any command into an output that a live run is writing is refused, naming
that run, before it reads or writes anything; a killed writer leaves no lock behind."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from beam_jobs.output_lock import OutputLock, OutputLocked


def _command(name: str, tmp_path: Path) -> tuple:
    """(main, arguments, the output they write)."""
    from serving import embed, predict, score

    fasta, model = tmp_path / "in.fasta", str(tmp_path / "no_model_needed")
    fasta.write_text(">P1\nMKTAYIAKQR\n")
    if name == "prottrans-score":
        mutants = tmp_path / "mutants.csv"
        mutants.write_text("mutant\nM1A\n")
        return score.main, ["--saved-model", model, str(fasta), str(mutants)], tmp_path / "out.csv"
    if name == "prottrans-predict":
        return predict.main, ["--saved-model", model, str(fasta)], tmp_path / "out.tsv"
    if name == "prottrans-embed --beam":
        return embed.main, ["--saved-model", model, "--beam", str(fasta)], tmp_path / "out"
    return embed.main, ["--saved-model", model, str(fasta)], tmp_path / "out.h5"


@pytest.mark.parametrize("name", ["prottrans-embed", "prottrans-embed --beam", "prottrans-predict",
                                  "prottrans-score"])
def test_a_second_run_into_a_live_run_s_output_is_refused_and_leaves_its_files_alone(tmp_path, capsys, name):
    main, arguments, output = _command(name, tmp_path)
    if name.endswith("--beam"):
        output.mkdir()
        (output / "embeddings-00000-of-00001.h5").write_bytes(b"the first run's")
    else:
        output.write_bytes(b"the first run's")
        Path(f"{output}.partial").write_bytes(b"the first run's partial file")
        Path(f"{output}.rejects.jsonl").write_bytes(b"the first run's rejects")
    with OutputLock(str(output), "the first run"):
        assert main([*arguments, str(output)]) == 2
    error = capsys.readouterr().err
    assert f"{output} is being written by another run (the first run, pid " in error
    assert all(path.read_bytes().startswith(b"the first run's") for path in tmp_path.rglob("out*") if path.is_file()
               and not path.name.endswith(".lock"))


def test_a_killed_writer_leaves_no_lock_and_a_released_one_no_file(tmp_path):
    output = tmp_path / "out.h5"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom beam_jobs.output_lock import OutputLock\n"
                               f"lock = OutputLock({str(output)!r}, 'a writer')\nprint('held', flush=True)\n"
                               "time.sleep(120)"], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=f"a writer, pid {holder.pid}"):
            OutputLock(str(output), "a second writer")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert Path(f"{output}.lock").exists()  # what a killed process leaves: a file, not a lock
    with OutputLock(str(output), "after the kill"):
        pass
    assert not Path(f"{output}.lock").exists()
