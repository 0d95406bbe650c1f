"""What every command does before its own work: a quiet start, and progress that suits where output goes.

On a machine without a GPU, importing TensorFlow prints CUDA, oneDNN and absl start-up lines (C++ logging that
runs before absl is initialised ignores ``TF_CPP_MIN_LOG_LEVEL``), so a user's first sight of a real error is a
CUDA error that is not one. :func:`quiet_start` hides them unless ``--verbose`` is given or
``PROTTRANS_VERBOSE=1`` is set.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings

VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = "show TensorFlow's and Beam's start-up and library log lines"


def verbose(argv: list[str] | None = None) -> bool:
    return VERBOSE_FLAG in (sys.argv[1:] if argv is None else argv) or os.environ.get("PROTTRANS_VERBOSE") == "1"


def quiet_start(argv: list[str] | None = None) -> None:
    """Import TensorFlow with its start-up logging hidden (stderr is muted for the import only) and keep library
    warnings and log lines below ERROR out of the console. With ``--verbose``, nothing is hidden."""
    if verbose(argv) or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        import tensorflow  # noqa: F401  (the import is what prints)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*deprecated.*")
    for name in ("absl", "tensorflow", "apache_beam", "tfx", "ml_metadata"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


class Progress:
    """``label: done/total`` on stderr: redrawn in place on a terminal; elsewhere (a log file, a pipe) a full line
    at most every `every_s` seconds and at the end, so that updates never run together."""

    # Not tqdm: tqdm 4.70 redraws with "\r" into a file or pipe too, so a log holds one run-together line.

    def __init__(self, label: str, total: int, every_s: float = 30.0):
        self.label, self.total, self.every_s = label, total, every_s
        self.terminal = sys.stderr.isatty()
        self._last = 0.0

    def update(self, done: int, what: str = "") -> None:
        line = f"{self.label}: {done}/{self.total}{' ' + what if what else ''}"
        if self.terminal:
            print(f"\r{line}", end="" if done < self.total else "\n", file=sys.stderr, flush=True)
        elif done >= self.total or time.monotonic() - self._last >= self.every_s:
            print(line, file=sys.stderr, flush=True)
            self._last = time.monotonic()
