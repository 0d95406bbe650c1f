"""What the commands that run a model over a FASTA file share: where the model runs (``--server`` or
``--saved-model``), the screening of the FASTA's records (every record embedded or rejected with a reason, none
dropped unseen), and chunks of about a number of residues."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple, TypeVar

import grpc

from beam_jobs.console import VERBOSE_FLAG, VERBOSE_HELP, real_number
from beam_jobs.headers import id_problem, printable_id
from beam_jobs import fasta as fasta_reader
from beam_jobs.output_lock import OutputLock
from beam_jobs.sequences import Reject, normalise

if TYPE_CHECKING:
    import tensorflow as tf

T = TypeVar("T")
R = TypeVar("R")


class ScreenedRecord(NamedTuple):
    id: str
    sequence: str  # normalised
    line: int  # of its header in the FASTA file


@contextlib.contextmanager
def naming(path: str) -> Iterator[None]:
    """An OSError raised inside names `path` (a full disk's "File too large" alone does not say which file)."""
    try:
        yield
    except OSError as error:
        if error.filename or path in str(error):
            raise
        raise OSError(error.errno, f"{error.strerror or error}: writing {path}") from error


class OutputFile:
    """A text output written as ``OUT.partial`` and renamed to OUT by `close(complete=True)`: a run that fails (a
    full disk, an error) leaves the earlier OUT, if any, as it was and no partial file, never a cut OUT that looks
    whole. Write errors name the file."""

    def __init__(self, path: str, newline: str | None = None):
        self.path, self.partial = path, path + ".partial"
        with naming(self.partial):
            self.handle = open(self.partial, "w", newline=newline)

    def write(self, text: str) -> None:
        with naming(self.partial):
            self.handle.write(text)

    def close(self, complete: bool) -> None:
        if not complete:
            with contextlib.suppress(OSError):
                self.handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.partial)
            return
        try:
            with naming(self.partial):
                self.handle.close()
        except OSError:
            self.close(complete=False)
            raise
        os.replace(self.partial, self.path)


class RejectsFile:
    """``<OUT>.rejects.jsonl``, rewritten by each run: one JSON object per record not written, with its reason;
    `count` says how many."""

    def __init__(self, output: str):
        self.path = output + ".rejects.jsonl"
        with naming(self.path):
            self.handle = open(self.path, "w")
        self.count = 0

    def write(self, **fields) -> None:
        with naming(self.path):
            self.handle.write(json.dumps(fields) + "\n")
        self.count += 1

    def record(self, line: int, record_id: str, reason: str) -> None:
        """A FASTA record, by the line of its header."""
        self.write(line=line, id=record_id, reason=reason)

    def flush(self) -> None:
        with naming(self.path):
            self.handle.flush()

    def close(self) -> None:
        with naming(self.path):
            self.handle.close()


def run_holding(output: str, command: str, run: Callable[[], int]) -> int:
    """`run()` while this process holds `output`'s writer lock (:mod:`beam_jobs.output_lock`), taken before anything
    is read or written; when another live run holds it, exit status 2 and one line naming that run."""
    try:
        lock = OutputLock(output, command)
    except OSError as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 2
    try:
        return run()
    finally:
        lock.release()


def make_embedder(args):
    """`.embed(list[str])` of the server or of a local SavedModel."""
    if args.saved_model:
        from models.export.embedders import load_embedder

        return load_embedder(args.saved_model)
    from serving.client import EmbeddingClient

    return EmbeddingClient(args.server, args.model, max_residues=args.max_residues, timeout_s=args.timeout,
                           per_residue=args.per_residue, residue_dtype="float16" if args.float16 else "float32")


def screened_records(fasta: str, reject: Callable[[int, str, str], None],
                     key: Callable[[str], str] = lambda record_id: record_id) -> Iterator[ScreenedRecord]:
    """A FASTA file's records as ``(id, normalised sequence, line)``: the first record of each `key` whose sequence
    normalises; every other record goes to ``reject(line, id, reason)``, so none is dropped unseen."""
    seen: set[str] = set()
    for record in fasta_reader.read_fasta(fasta):
        if not record.id:
            reject(record.line, "", "missing id")
            continue
        if (problem := id_problem(record.id)) is not None:
            reject(record.line, printable_id(record.id), problem)
            continue
        if record.oversized:
            reject(record.line, record.id, f"record larger than {fasta_reader.DEFAULT_MAX_RECORD_CHARS:,} characters")
            continue
        if key(record.id) in seen:
            reject(record.line, record.id, "duplicate id (the first record with it was kept)")
            continue
        seen.add(key(record.id))
        normalised = normalise(record.sequence.encode("utf-8", errors="replace"))
        if isinstance(normalised, Reject):
            reject(record.line, record.id, normalised.detail or normalised.reason)
            continue
        yield ScreenedRecord(record.id, normalised.sequence.decode("ascii"), record.line)


def chunks_of(records: Iterable[T], residues: int, length: Callable[[T], int]) -> Iterator[list[T]]:
    """`records` in consecutive lists of about `residues` residues each (a list ends once it reaches them)."""
    chunk: list[T] = []
    for record in records:
        chunk.append(record)
        if sum(map(length, chunk)) >= residues:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def add_model_source(parser: argparse.ArgumentParser) -> None:
    """``--server HOST:PORT --model NAME`` or ``--saved-model DIR``, and ``--timeout``: where a command's model runs."""
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", metavar="HOST:PORT", help="TF Serving (or prottrans-serve) gRPC address")
    source.add_argument("--saved-model", metavar="DIR", help="a SavedModel (or model folder) run in this process")
    parser.add_argument("--model", help="model name on the server (with --server)")
    parser.add_argument("--timeout", type=real_number(0, above_minimum=True), default=120.0,
                        help="seconds per request (deadline)")


def server_refusal(error: grpc.RpcError) -> str:
    return f"the server answered {error.code().name}: {error.details()}"


def model_error(error: tf.errors.InvalidArgumentError) -> str:
    """The message of an assertion in the model's graph, without TensorFlow's framing: ``assertion failed: [a]
    [b]`` → ``a b``."""
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    for line in lines:  # a nested function's failure comes after a "Graph execution error:" line
        if "assertion failed: " in line:
            message = line.split("assertion failed: ", 1)[1].strip()
            return message.removeprefix("[").removesuffix("]").replace("] [", " ")
    return lines[0] if lines else "the model refused the request"


def model_refusal(error: Exception) -> str | None:
    """The model's reason when it refused what it was given (its graph's InvalidArgumentError, locally, or a
    server's INVALID_ARGUMENT); None for any other failure."""
    import tensorflow as tf

    if isinstance(error, tf.errors.InvalidArgumentError):
        return model_error(error)
    if isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return error.details()
    return None


def run_or_reject(run: Callable[[list[T]], list[R]], items: list[T],
                  reject: Callable[[T, str], None]) -> list[tuple[T, R]]:
    """`run(items)` paired with its items; when the model refuses the batch, each item alone, and those it refuses
    go to ``reject(item, the model's reason)``: one bad sequence costs its own record, not its batch's."""
    try:
        return list(zip(items, run(items)))
    except Exception as error:  # noqa: BLE001 — only the model's refusal is handled here
        if model_refusal(error) is None:
            raise
    done = []
    for item in items:
        try:
            done.extend(zip([item], run([item])))
        except Exception as error:  # noqa: BLE001
            reason = model_refusal(error)
            if reason is None:
                raise
            reject(item, reason)
    return done
