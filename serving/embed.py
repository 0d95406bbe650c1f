"""`prottrans-embed`: embeddings for a FASTA file of any size, into HDF5 — in this process, or as a Beam job.

    prottrans-embed (--server HOST:PORT --model NAME | --saved-model DIR) IN.fasta[.gz] OUT.h5
        [--per-residue] [--per-protein] [--float16]
    prottrans-embed --beam --saved-model DIR 'IN*.fasta.gz' OUT_DIR [--num-shards N] [--overwrite] [Beam options]

With ``--beam`` the job runs on any Beam runner (``serving/beam_embed.py``: RunInference, sharded HDF5 files of
the same format, rejects, a manifest); what follows describes the single-process file.

The FASTA is streamed in chunks, so memory does not grow with the file. The output is the resumable HDF5 file of
``serving/embedding_file.py``: one dataset per protein keyed by its id, ``[length, hidden]`` per residue or
``[hidden]`` per protein (the default), both under groups with both flags. Rerunning the command resumes it.
Records that cannot be embedded (no id, empty or illegal sequence, an id seen twice) are counted and listed in
``OUT.h5.rejects.jsonl``.
"""

from __future__ import annotations

import os

from beam_jobs.console import guarded, quiet_start, whole_number

quiet_start()  # before TensorFlow is imported

import argparse
import sys
from typing import Iterator, Sequence

import grpc

from serving.embedding_file import Output, dataset_key
from serving.model_input import (ScreenedRecord, add_model_source, chunks_of, make_embedder, run_holding,
                                 run_or_reject, screened_records, server_refusal)

CHUNK_RESIDUES = 200_000  # residues embedded (and written) per round


def embed_file(fasta: str, output: Output, embedder, progress) -> dict[str, int]:
    counts = {"embedded": 0, "skipped_done": 0}

    def to_embed() -> Iterator[ScreenedRecord]:
        for record in screened_records(fasta, output.reject, key=dataset_key):
            if output.done(dataset_key(record.id), record.id, record.sequence):
                counts["skipped_done"] += 1
                progress.update(1)
            else:
                yield record

    for chunk in chunks_of(to_embed(), CHUNK_RESIDUES, lambda record: len(record.sequence)):
        embedded = run_or_reject(lambda records: embedder.embed([record.sequence for record in records]), chunk,
                                 lambda record, reason: output.reject(record.line, record.id, reason))
        for record, embedding in embedded:
            output.write(dataset_key(record.id), record.id, record.sequence, embedding)
        output.flush()
        counts["embedded"] += len(embedded)
        progress.update(len(chunk))
    counts["rejected"], counts["repaired"], counts["changed"] = output.rejects.count, output.repaired, output.changed
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("prottrans-embed", lambda: _main(argv), argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prottrans-embed", description=__doc__.split("\n\n")[0])
    add_model_source(parser)
    parser.add_argument("--max-residues", type=whole_number(1), default=None,
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
    beam_group.add_argument("--num-shards", type=whole_number(1), default=4, help="HDF5 files written (default 4)")
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
        return _run_beam(args, beam_args, per_protein)
    return run_holding(args.output, "prottrans-embed", lambda: _embed(args, per_protein))


def _embed(args: argparse.Namespace, per_protein: bool) -> int:
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
    if counts["changed"]:
        repaired += (f"; embedded again because the id's sequence differs from the stored entry's (or the entry "
                     f"has no sequence digest): {counts['changed']:,}")
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
