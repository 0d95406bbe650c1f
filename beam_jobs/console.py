"""What every command does before its own work: a quiet start, and progress that suits where output goes.

On a machine without a GPU, importing TensorFlow prints CUDA, oneDNN and absl start-up lines (C++ logging that
runs before absl is initialised ignores ``TF_CPP_MIN_LOG_LEVEL``), so a user's first sight of a real error is a
CUDA error that is not one. :func:`quiet_start` hides them unless ``--verbose`` is given or
``PROTTRANS_VERBOSE=1`` is set.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import warnings
from typing import Callable

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
    # Beam logs a failing step's traceback at ERROR and then raises the same error, which `guarded` reports.
    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
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


def whole_number(minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from `minimum` to `maximum` (none: no upper bound), or an error that names the
    range (``--limit -5`` is not "all but five")."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum:,}" if maximum is not None else ""
            raise argparse.ArgumentTypeError(f"must be at least {minimum:,}{upper}, not {value:,}")
        return value

    parse.__name__ = "whole number"
    return parse


def real_number(minimum: float, maximum: float = math.inf, above_minimum: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [`minimum`, `maximum`] (above `minimum` if `above_minimum`); NaN and
    infinities are refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        low_ok = value > minimum if above_minimum else value >= minimum
        if not (math.isfinite(value) and low_ok and value <= maximum):
            bound = f"above {minimum:g}" if above_minimum else f"at least {minimum:g}"
            upper = f" and at most {maximum:g}" if math.isfinite(maximum) else ""
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}{upper}, not {text}")
        return value

    parse.__name__ = "number"
    return parse


def guarded(command: str, run: Callable[[], int], argv: list[str] | None = None) -> int:
    """`run()`'s exit status; an error that escapes it ends the command with one line, ``COMMAND: error: …`` (the
    message names the file or flag), and exit status 1 — its traceback only with ``--verbose``. A command's own
    checks print their lines and return their statuses before this; this is the boundary for what they did not
    foresee."""
    try:
        return run()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # noqa: BLE001 — the command's boundary: every library error becomes one line
        if verbose(argv):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        if len(message) > 600:  # a library's message can embed whole arrays
            message = message[:600] + " …"
        print(f"{command}: error: {type(error).__name__}: {message} (--verbose shows the traceback)",
              file=sys.stderr)
        return 1
