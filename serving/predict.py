"""`prottrans-predict`: secondary structure, location and membrane predictions for a FASTA file.

    prottrans-predict (--server HOST:PORT --model NAME | --saved-model DIR) IN.fasta[.gz] OUT.tsv|OUT.jsonl
        [--residue-probabilities]

The model is a SavedModel with the ``predict`` signature (what the pipeline pushes for a blessed model: its
probes served with it), run in this process or behind a server. Output, by the file's extension: JSON lines (one
object per protein: ``id``, ``length``, ``ss3`` and ``ss8`` as strings of DSSP letters, ``location`` and
``membrane`` with their probabilities by label; ``--residue-probabilities`` adds the per-residue probabilities),
or TSV (one row per protein: the labels, the probability of each predicted label, the DSSP strings). Records that
cannot be predicted (no id, an empty or illegal sequence, an id seen twice) are listed in ``OUT.rejects.jsonl``.
"""

from __future__ import annotations

from beam_jobs.console import guarded, quiet_start

quiet_start()  # before TensorFlow is imported

import argparse
import json
import sys
from typing import Callable, Sequence

import grpc
import numpy as np

from serving.model_input import (OutputFile, RejectsFile, add_model_source, chunks_of, run_holding, run_or_reject,
                                 screened_records, server_refusal)

CHUNK_RESIDUES = 50_000  # residues predicted (and written) per round
RESIDUES_PER_CALL = 16_384  # tokens per model call


def load_predict(args) -> Callable[[list[str]], dict[str, np.ndarray]]:
    """``sequences → outputs of the predict signature`` of the server or of a local SavedModel."""
    from models.export.predict import PREDICT_SIGNATURE

    if args.saved_model:
        import tensorflow as tf

        from models.export.embedders import saved_model_path

        signatures = tf.saved_model.load(saved_model_path(args.saved_model)).signatures
        if PREDICT_SIGNATURE not in signatures:
            raise ValueError(f"{args.saved_model} has no {PREDICT_SIGNATURE!r} signature (signatures: "
                             f"{sorted(signatures)}); the pipeline adds it to the models it blesses")
        signature = signatures[PREDICT_SIGNATURE]
        return lambda batch: {name: value.numpy() for name, value in signature(sequences=tf.constant(batch)).items()}
    from serving.client import EmbeddingClient

    client = EmbeddingClient(args.server, args.model, timeout_s=args.timeout)
    client.pin_version()
    return lambda batch: client.predict(batch, PREDICT_SIGNATURE)


def predictions(run: Callable[[list[str]], dict[str, np.ndarray]], sequences: Sequence[str],
                residue_probabilities: bool) -> list[dict]:
    """One record per sequence, in input order: labels, and probabilities by label."""
    from models.export.embedding import length_batches
    from models.export.predict import LABELS

    results: list[dict | None] = [None] * len(sequences)
    for batch in length_batches([len(s) for s in sequences], RESIDUES_PER_CALL):
        outputs = run([sequences[i] for i in batch])
        for row, index in enumerate(batch):
            length = int(outputs["lengths"][row])
            record: dict = {"length": length}
            for name in ("ss3", "ss8"):
                if name in outputs:
                    record[name] = b"".join(outputs[name][row, :length]).decode("ascii")
                    if residue_probabilities:
                        record[f"{name}_probabilities"] = np.round(
                            outputs[f"{name}_probabilities"][row, :length], 4).tolist()
            for name in ("location", "membrane"):
                if name in outputs:
                    record[name] = outputs[name][row].decode("utf-8")
                    record[f"{name}_probabilities"] = {label: round(float(p), 4) for label, p in
                                                       zip(LABELS[name], outputs[f"{name}_probabilities"][row])}
            results[index] = record
    return results


class Writer:
    """OUT as JSON lines or TSV (by extension), and OUT.rejects.jsonl."""

    def __init__(self, path: str):
        self.tsv = path.endswith(".tsv")
        if not (self.tsv or path.endswith((".jsonl", ".json"))):
            raise ValueError(f"{path}: the output's extension picks its format: .tsv or .jsonl")
        self.out = OutputFile(path)
        self.rejects = RejectsFile(path)
        self.reject = self.rejects.record
        self.columns: list[str] | None = None
        self.written = 0

    def write(self, record_id: str, record: dict) -> None:
        self.written += 1
        if not self.tsv:
            self.out.write(json.dumps({"id": record_id, **record}) + "\n")
            return
        row = {"id": record_id, "length": record["length"]}
        for name in ("location", "membrane"):
            if name in record:
                row[name], row[f"{name}_probability"] = record[name], record[f"{name}_probabilities"][record[name]]
        row.update({name: record[name] for name in ("ss3", "ss8") if name in record})
        if self.columns is None:
            self.columns = list(row)
            self.out.write("\t".join(self.columns) + "\n")
        self.out.write("\t".join(str(row[column]) for column in self.columns) + "\n")

    def close(self, complete: bool) -> None:
        """OUT is in place only when `complete`."""
        try:
            self.out.close(complete)
        finally:
            self.rejects.close()


def _described(error: Exception) -> str:
    return server_refusal(error) if isinstance(error, grpc.RpcError) else str(error)


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("prottrans-predict", lambda: _main(argv), argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prottrans-predict", description=__doc__.split("\n\n")[0])
    add_model_source(parser)
    parser.add_argument("--residue-probabilities", action="store_true",
                        help="JSON lines only: add the per-residue 3- and 8-state probabilities")
    parser.add_argument("input", metavar="IN.fasta")
    parser.add_argument("output", metavar="OUT.tsv|OUT.jsonl")
    args = parser.parse_args(argv)
    if args.server and not args.model:
        parser.error("--server needs --model NAME")
    return run_holding(args.output, "prottrans-predict", lambda: _predict(args))


def _predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    try:
        run = load_predict(args)
        writer = Writer(args.output)
    except (ValueError, OSError, grpc.RpcError) as error:
        print(f"prottrans-predict: error: {_described(error)}", file=sys.stderr)
        return 2
    complete = False
    try:
        with tqdm(unit=" proteins", file=sys.stderr, disable=None) as progress:
            records = screened_records(args.input, writer.reject)
            for chunk in chunks_of(records, CHUNK_RESIDUES, lambda record: len(record.sequence)):
                predicted = run_or_reject(
                    lambda part: predictions(run, [record.sequence for record in part], args.residue_probabilities),
                    chunk, lambda record, reason: writer.reject(record.line, record.id, reason))
                for record, prediction in predicted:
                    writer.write(record.id, prediction)
                progress.update(len(chunk))
        complete = True
    except (ValueError, OSError, grpc.RpcError) as error:  # the reader's errors name the file and line
        print(f"prottrans-predict: error: {_described(error)}", file=sys.stderr)
        return 1
    finally:
        writer.close(complete)
    print(f"predicted {writer.written:,}; rejected {writer.rejects.count:,} (see {args.output}.rejects.jsonl)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
