"""`prottrans-embed`: embeddings for a FASTA file of any size, into HDF5.

    prottrans-embed (--server HOST:PORT --model NAME | --saved-model DIR) IN.fasta[.gz] OUT.h5
        [--per-residue] [--per-protein] [--float16]

The FASTA is streamed in chunks, so memory does not grow with the file. The HDF5 file holds one dataset per
protein, keyed by its id (the header's first word; a ``/`` in it is written as ``%2F``), as bio_embeddings and
ProtTrans write them: ``[length, hidden]`` per residue or ``[hidden]`` per protein (the default); with both
flags, under the groups ``per_residue`` and ``per_protein``. Every chunk is flushed when written: rerunning an
interrupted command skips the proteins already in OUT.h5. Records that cannot be embedded (no id, empty or
illegal sequence, an id seen twice) are counted, listed in ``OUT.h5.rejects.jsonl`` and never silently dropped.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import sys
from typing import Sequence

import grpc
import h5py

from beam_jobs.fasta import read_fasta
from beam_jobs.sequences import Reject, normalise

CHUNK_RESIDUES = 200_000  # residues embedded (and written) per round


def dataset_key(record_id: str) -> str:
    return record_id.replace("%", "%25").replace("/", "%2F")


class Output:
    """OUT.h5 and its rejects file, opened for appending."""

    def __init__(self, path: str, per_residue: bool, per_protein: bool, dtype: str = "float32"):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = h5py.File(path, "a")
        self.dtype = dtype
        both = per_residue and per_protein
        self.groups = {}
        if per_residue:
            self.groups["residues"] = self.file.require_group("per_residue") if both else self.file
        if per_protein:
            self.groups["protein"] = self.file.require_group("per_protein") if both else self.file
        self.rejects = open(path + ".rejects.jsonl", "a")
        self.rejected = 0

    def done(self, key: str) -> bool:
        return all(key in group for group in self.groups.values())

    def write(self, key: str, embedding) -> None:
        for kind, group in self.groups.items():
            if key in group:
                del group[key]
            group.create_dataset(key, data=getattr(embedding, kind).astype(self.dtype))

    def reject(self, line: int, record_id: str, reason: str) -> None:
        self.rejects.write(json.dumps({"line": line, "id": record_id, "reason": reason}) + "\n")
        self.rejected += 1

    def flush(self) -> None:
        self.file.flush()
        self.rejects.flush()

    def close(self) -> None:
        self.file.close()
        self.rejects.close()


def make_embedder(args):
    """`.embed(list[str])` of the server or of a local SavedModel."""
    if args.saved_model:
        from models.export.embedders import load_embedder

        return load_embedder(args.saved_model)
    from serving.client import EmbeddingClient

    return EmbeddingClient(args.server, args.model, max_residues=args.max_residues, timeout_s=args.timeout)


def embed_file(fasta: str, output: Output, embedder, progress) -> dict[str, int]:
    counts = {"embedded": 0, "skipped_done": 0, "rejected": 0}
    seen: set[str] = set()
    chunk: list[tuple[str, str]] = []

    def flush_chunk():
        if not chunk:
            return
        for (key, _), embedding in zip(chunk, embedder.embed([sequence for _, sequence in chunk])):
            output.write(key, embedding)
        output.flush()
        counts["embedded"] += len(chunk)
        progress.update(len(chunk))
        chunk.clear()

    for record in read_fasta(fasta):
        if not record.id:
            output.reject(record.line, "", "missing id")
            continue
        key = dataset_key(record.id)
        if key in seen:
            output.reject(record.line, record.id, "duplicate id (the first record with it was embedded)")
            continue
        seen.add(key)
        if output.done(key):
            counts["skipped_done"] += 1
            progress.update(1)
            continue
        normalised = normalise(record.sequence.encode("ascii", errors="replace"))
        if isinstance(normalised, Reject):
            output.reject(record.line, record.id, normalised.detail or normalised.reason)
            continue
        chunk.append((key, normalised.sequence.decode("ascii")))
        if sum(len(s) for _, s in chunk) >= CHUNK_RESIDUES:
            flush_chunk()
    flush_chunk()
    counts["rejected"] = output.rejected
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prottrans-embed", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", metavar="HOST:PORT", help="TF Serving (or prottrans-serve) gRPC address")
    source.add_argument("--saved-model", metavar="DIR", help="a SavedModel (or model folder) run in this process")
    parser.add_argument("--model", help="model name on the server (with --server)")
    parser.add_argument("--max-residues", type=int, default=None,
                        help="with --server: the model's limit; longer sequences are embedded in pieces")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (deadline)")
    parser.add_argument("input", metavar="IN.fasta")
    parser.add_argument("output", metavar="OUT.h5")
    parser.add_argument("--per-residue", action="store_true")
    parser.add_argument("--per-protein", action="store_true")
    parser.add_argument("--float16", action="store_true", help="store half-precision embeddings (half the size)")
    args = parser.parse_args(argv)
    if args.server and not args.model:
        parser.error("--server needs --model NAME")
    per_protein = args.per_protein or not args.per_residue
    from tqdm import tqdm

    try:
        embedder = make_embedder(args)
        output = Output(args.output, args.per_residue, per_protein, "float16" if args.float16 else "float32")
    except (ValueError, OSError) as error:
        print(f"prottrans-embed: error: {error}", file=sys.stderr)
        return 2
    try:
        with tqdm(unit=" proteins", file=sys.stderr, disable=None) as progress:
            counts = embed_file(args.input, output, embedder, progress)
    except (ValueError, OSError) as error:  # the reader's errors name the file and line
        print(f"prottrans-embed: error: {error}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        print(f"prottrans-embed: error: the server answered {error.code().name}: {error.details()} "
              "(rerun to resume; for over-long sequences pass --max-residues)", file=sys.stderr)
        return 1
    finally:
        output.close()
    print(f"embedded {counts['embedded']:,}; already in {args.output}: {counts['skipped_done']:,}; "
          f"rejected {counts['rejected']:,} (see {args.output}.rejects.jsonl)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
