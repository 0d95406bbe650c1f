"""`prottrans-embed`: embeddings for a FASTA file of any size, into HDF5 — in this process, or as a Beam job.

    prottrans-embed (--server HOST:PORT --model NAME | --saved-model DIR) IN.fasta[.gz] OUT.h5
        [--per-residue] [--per-protein] [--float16]
    prottrans-embed --beam --saved-model DIR 'IN*.fasta.gz' OUT_DIR [--num-shards N] [--overwrite] [Beam options]

With ``--beam`` the job runs on any Beam runner (``serving/beam_embed.py``: RunInference, sharded HDF5 files of
the format below, rejects, a manifest); what follows describes the single-process file.

The FASTA is streamed in chunks, so memory does not grow with the file. The HDF5 file holds one dataset per
protein, keyed by its id (the header's first word, made a safe HDF5 name: ``%`` → ``%25``, ``/`` → ``%2F``, a
leading ``.`` → ``%2E``; the id itself is the dataset's ``id`` attribute), as bio_embeddings and ProtTrans write
them: ``[length, hidden]`` per residue or ``[hidden]`` per protein (the default); with both flags, under the groups
``per_residue`` and ``per_protein``. The file's ``prottrans_embed`` attribute (JSON) records the model's identity,
the layout and the dtype; every dataset carries a Fletcher-32 checksum.

Until a run is complete the file is ``OUT.h5.partial``, flushed after every chunk; the finished file is renamed
to OUT.h5. Rerunning the command resumes: proteins already in the file are kept once their checksum and values
are verified (a damaged one is embedded again), a partial file left unreadable by a kill is started again, and a
file of another model, layout or dtype is refused. Records that cannot be embedded (no id, empty or illegal
sequence, an id seen twice) are counted and listed, once per run, in ``OUT.h5.rejects.jsonl``.
"""

from __future__ import annotations

import os

from beam_jobs.console import VERBOSE_FLAG, VERBOSE_HELP, quiet_start

quiet_start()  # before TensorFlow is imported

import argparse
import json
import sys
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import grpc
import h5py
import numpy as np

from beam_jobs.fasta import read_fasta
from beam_jobs.sequences import Reject, normalise

CHUNK_RESIDUES = 200_000  # residues embedded (and written) per round
T = TypeVar("T")
HEADER = "prottrans_embed"
FORMAT_VERSION = 1
PARTIAL_SUFFIX = ".partial"


class OutputError(ValueError):
    """OUT.h5 cannot be used for this run; the message says why and what to do."""


def dataset_key(record_id: str) -> str:
    """`record_id` as an HDF5 dataset name: no ``/`` (a path separator) and no leading ``.`` (``.`` names the group
    itself), reversibly."""
    key = record_id.replace("%", "%25").replace("/", "%2F")
    return "%2E" + key[1:] if key.startswith(".") else key


def layout_of(per_residue: bool, per_protein: bool) -> list[str]:
    """The groups a file holds, as its header records them."""
    return [kind for kind, wanted in (("per_residue", per_residue), ("per_protein", per_protein)) if wanted]


def layout_groups(handle: h5py.File, per_residue: bool, per_protein: bool) -> dict[str, h5py.Group]:
    """Where each kind of embedding goes: the file itself for one kind, groups ``per_residue``/``per_protein``
    for both (keyed ``residues`` and ``protein``, the :class:`ProteinEmbedding` fields)."""
    both = per_residue and per_protein
    groups = {}
    if per_residue:
        groups["residues"] = handle.require_group("per_residue") if both else handle
    if per_protein:
        groups["protein"] = handle.require_group("per_protein") if both else handle
    return groups


def store(groups: dict[str, h5py.Group], key: str, record_id: str, embedding, dtype: str) -> None:
    """One protein's datasets, in `dtype`, with a Fletcher-32 checksum and its id as an attribute."""
    for kind, group in groups.items():
        data = np.asarray(getattr(embedding, kind)).astype(dtype)
        dataset = group.create_dataset(key, data=data, fletcher32=True, chunks=data.shape or None)
        dataset.attrs["id"] = record_id


class Output:
    """OUT.h5 of one run, written as OUT.h5.partial, with its rejects file (rewritten by each run).

    `identity` names the model (its digest or served version), `layout` the groups written, `dtype` the stored
    precision; a file already there that records others is refused.
    """

    def __init__(self, path: str, identity: str, per_residue: bool, per_protein: bool, dtype: str = "float32"):
        self.path = path
        self.partial = path + PARTIAL_SUFFIX
        self.dtype = dtype
        self.header = {"format_version": FORMAT_VERSION, "model": identity, "layout": layout_of(per_residue, per_protein),
                       "dtype": dtype}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.restarted = self._take_over_earlier()
        self.file = h5py.File(self.partial, "a")
        if HEADER not in self.file.attrs:
            self.file.attrs[HEADER] = json.dumps(self.header)
        self.groups = layout_groups(self.file, per_residue, per_protein)
        self.rejects = open(path + ".rejects.jsonl", "w")
        self.rejected = 0
        self.repaired = 0

    def _take_over_earlier(self) -> bool:
        """Move a finished OUT.h5 back to OUT.h5.partial to extend it, after checking that it records this run's
        model, layout and dtype. True when an unreadable partial file of an interrupted run was discarded."""
        if os.path.exists(self.partial):
            try:
                self._check_header(self.partial)
            except OSError:  # a kill before the first flush leaves no readable HDF5 superblock: nothing to keep
                os.remove(self.partial)
                return True
        elif os.path.exists(self.path):
            try:
                self._check_header(self.path)
            except OSError as error:
                raise OutputError(f"{self.path} exists but is not a readable HDF5 file ({error}); move it away or "
                                  "choose another output file") from error
            os.replace(self.path, self.partial)
        return False

    def _check_header(self, path: str) -> None:
        with h5py.File(path, "r") as handle:
            if HEADER not in handle.attrs:
                if len(handle) == 0:
                    return
                raise OutputError(f"{path} was not written by prottrans-embed (it has no {HEADER!r} attribute); "
                                  "choose another output file")
            found = json.loads(handle.attrs[HEADER])
        differences = [f"{name} {found.get(name)!r} there, {value!r} now" for name, value in self.header.items()
                       if found.get(name) != value]
        if differences:
            raise OutputError(f"{path} holds other embeddings ({'; '.join(differences)}): a rerun can only add to "
                              "a file of the same model, layout and dtype; choose another output file or delete it")

    def done(self, key: str) -> bool:
        """True when every group holds `key` intact; a damaged entry is deleted (and counted) to be embedded again."""
        present = [group for group in self.groups.values() if key in group]
        if not present:
            return False
        try:
            intact = all(np.isfinite(group[key][()]).all() for group in present)
        except OSError:  # Fletcher-32 mismatch: bytes changed since they were written
            intact = False
        if intact and len(present) == len(self.groups):
            return True
        if not intact:
            self.repaired += 1
        for group in present:
            del group[key]
        return False

    def write(self, key: str, record_id: str, embedding) -> None:
        store(self.groups, key, record_id, embedding, self.dtype)

    def reject(self, line: int, record_id: str, reason: str) -> None:
        self.rejects.write(json.dumps({"line": line, "id": record_id, "reason": reason}) + "\n")
        self.rejected += 1

    def flush(self) -> None:
        self.file.flush()
        self.rejects.flush()

    def close(self, complete: bool) -> None:
        """Close both files; a complete run's file becomes OUT.h5."""
        self.file.close()
        self.rejects.close()
        if complete:
            os.replace(self.partial, self.path)


def make_embedder(args):
    """`.embed(list[str])` of the server or of a local SavedModel."""
    if args.saved_model:
        from models.export.embedders import load_embedder

        return load_embedder(args.saved_model)
    from serving.client import EmbeddingClient

    return EmbeddingClient(args.server, args.model, max_residues=args.max_residues, timeout_s=args.timeout,
                           per_residue=args.per_residue, residue_dtype="float16" if args.float16 else "float32")


def screened_records(fasta: str, reject: Callable[[int, str, str], None],
                     key: Callable[[str], str] = lambda record_id: record_id) -> Iterator[tuple[str, str]]:
    """A FASTA file's records as ``(id, normalised sequence)``: the first record of each `key` whose sequence
    normalises; every other record goes to ``reject(line, id, reason)``, so none is dropped unseen."""
    seen: set[str] = set()
    for record in read_fasta(fasta):
        if not record.id:
            reject(record.line, "", "missing id")
            continue
        if key(record.id) in seen:
            reject(record.line, record.id, "duplicate id (the first record with it was kept)")
            continue
        seen.add(key(record.id))
        normalised = normalise(record.sequence.encode("utf-8", errors="replace"))
        if isinstance(normalised, Reject):
            reject(record.line, record.id, normalised.detail or normalised.reason)
            continue
        yield record.id, normalised.sequence.decode("ascii")


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


def embed_file(fasta: str, output: Output, embedder, progress) -> dict[str, int]:
    counts = {"embedded": 0, "skipped_done": 0}

    def to_embed() -> Iterator[tuple[str, str, str]]:
        for record_id, sequence in screened_records(fasta, output.reject, key=dataset_key):
            key = dataset_key(record_id)
            if output.done(key):
                counts["skipped_done"] += 1
                progress.update(1)
            else:
                yield key, record_id, sequence

    for chunk in chunks_of(to_embed(), CHUNK_RESIDUES, lambda item: len(item[2])):
        for (key, record_id, _), embedding in zip(chunk, embedder.embed([sequence for *_, sequence in chunk])):
            output.write(key, record_id, embedding)
        output.flush()
        counts["embedded"] += len(chunk)
        progress.update(len(chunk))
    counts["rejected"], counts["repaired"] = output.rejected, output.repaired
    return counts


def add_model_source(parser: argparse.ArgumentParser) -> None:
    """``--server HOST:PORT --model NAME`` or ``--saved-model DIR``, and ``--timeout``: where a command's model runs."""
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", metavar="HOST:PORT", help="TF Serving (or prottrans-serve) gRPC address")
    source.add_argument("--saved-model", metavar="DIR", help="a SavedModel (or model folder) run in this process")
    parser.add_argument("--model", help="model name on the server (with --server)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (deadline)")


def server_refusal(error: grpc.RpcError) -> str:
    return f"the server answered {error.code().name}: {error.details()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prottrans-embed", description=__doc__.split("\n\n")[0])
    add_model_source(parser)
    parser.add_argument("--max-residues", type=int, default=None,
                        help="with --server: the model's limit; longer sequences are embedded in pieces")
    parser.add_argument("input", metavar="IN.fasta")
    parser.add_argument("output", metavar="OUT.h5")
    parser.add_argument("--per-residue", action="store_true")
    parser.add_argument("--per-protein", action="store_true")
    parser.add_argument("--float16", action="store_true", help="store half-precision embeddings (half the size)")
    beam_group = parser.add_argument_group("Beam job (--beam): unknown flags are Beam pipeline options "
                                           "(--runner, --direct_num_workers, --project, --temp_location, ...)")
    beam_group.add_argument("--beam", action="store_true",
                            help="run as a Beam job: IN is a file pattern, OUT a folder of sharded HDF5 files")
    beam_group.add_argument("--num-shards", type=int, default=4, help="HDF5 files written (default 4)")
    beam_group.add_argument("--overwrite", action="store_true", help="replace the embeddings already in OUT")
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and not args.beam:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    if args.server and not args.model:
        parser.error("--server needs --model NAME")
    per_protein = args.per_protein or not args.per_residue
    if args.beam:
        if not args.saved_model:
            parser.error("--beam runs a SavedModel on the workers: pass --saved-model DIR")
        if args.num_shards < 1:
            parser.error("--num-shards must be at least 1")
        return _run_beam(args, beam_args, per_protein)
    from tqdm import tqdm

    try:
        embedder = make_embedder(args)
        if hasattr(embedder, "pin_version"):
            embedder.pin_version()  # one served version per file, recorded in it
        output = Output(args.output, embedder.identity, args.per_residue, per_protein,
                        "float16" if args.float16 else "float32")
    except (ValueError, OSError) as error:
        print(f"prottrans-embed: error: {error}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        print(f"prottrans-embed: error: {server_refusal(error)}", file=sys.stderr)
        return 2
    if output.restarted:
        print(f"prottrans-embed: {output.partial} was left unreadable by an interrupted run; starting it again",
              file=sys.stderr)
    complete = False
    try:
        with tqdm(unit=" proteins", file=sys.stderr, disable=None) as progress:
            counts = embed_file(args.input, output, embedder, progress)
        complete = True
    except (ValueError, OSError) as error:  # the reader's errors name the file and line
        print(f"prottrans-embed: error: {error} (rerun to resume)", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        print(f"prottrans-embed: error: {server_refusal(error)} (rerun to resume)", file=sys.stderr)
        return 1
    finally:
        output.close(complete)
    repaired = f"; damaged and embedded again: {counts['repaired']:,}" if counts["repaired"] else ""
    print(f"embedded {counts['embedded']:,}; already in {args.output}: {counts['skipped_done']:,}{repaired}; "
          f"rejected {counts['rejected']:,} (see {args.output}.rejects.jsonl)")
    return 0

def _run_beam(args, beam_args: list[str], per_protein: bool) -> int:
    from serving import beam_embed

    try:
        manifest = beam_embed.run([args.input], args.output, args.saved_model, beam_args, args.num_shards,
                                  "float16" if args.float16 else "float32", args.per_residue, per_protein,
                                  args.overwrite)
    except (ValueError, OSError) as error:
        print(f"prottrans-embed: error: {error}", file=sys.stderr)
        return 2
    counts = manifest["counts"]
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in counts["rejected_by_reason"].items()) or "none"
    print(f"read {counts['read']:,}; embedded {counts['embedded']:,} into "
          f"{len(manifest['shards'][beam_embed.SHARD_PREFIX])} shards; rejected {counts['rejected']:,} ({reasons}); "
          f"manifest: {os.path.join(args.output, beam_embed.MANIFEST_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
