"""`prottrans-score`: variant-effect scores of mutants from a model's own head.

    prottrans-score (--server HOST:PORT --model NAME | --saved-model DIR) PROTEINS.fasta MUTANTS.csv OUT.csv

MUTANTS.csv uses ProteinGym's notation: a ``mutant`` column of substitutions such as ``A23C`` or ``A23C:D25E``
(wild-type residue, 1-based position, mutant residue; several joined by ``:``), and a ``protein`` column naming
the FASTA record when the FASTA holds more than one protein. Each mutant's score, by what the model serves:

- ``masked_marginals`` (ProtBert, ProtAlbert, ProtT5 with its decoder): Σ over the mutated positions of
  log p(mutant residue) − log p(wild-type residue), each position masked alone (the masked-marginal score of
  ESM-1v and VESPA);
- ``log_likelihood`` (ProtTXL, ProtXLNet): log p(mutant sequence) − log p(wild-type sequence), since a change
  moves every later conditional.

OUT.csv holds the CSV's columns plus ``score``, one row per mutant scored, in input order. A mutant that cannot be
scored (bad notation, a position outside its protein, a wild-type residue that is not the protein's, a protein
the FASTA does not hold or could not read) goes to ``OUT.csv.rejects.jsonl`` with its line and the reason; FASTA
records that cannot be read are listed there too. The counts reconcile: mutants read = scored + rejected.
"""

from __future__ import annotations

from beam_jobs.console import guarded, quiet_start

quiet_start()  # before TensorFlow is imported

import argparse
import csv
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

import grpc
import numpy as np

from beam_jobs.sequences import STANDARD_RESIDUES
from serving.model_input import (OutputFile, RejectsFile, add_model_source, model_refusal, run_holding,
                                 screened_records, server_refusal)

MUTANT_COLUMN, PROTEIN_COLUMN, SCORE_COLUMN = "mutant", "protein", "score"
SUBSTITUTION = re.compile(rf"^([{STANDARD_RESIDUES}])([1-9][0-9]*)([{STANDARD_RESIDUES}])$")
RESIDUES_PER_CALL = 16_384  # residues of masked copies (or of sequences) per model call

# What the model runs: (signature, sequences, positions or None) → outputs
Run = Callable[[str, list[str], "np.ndarray | None"], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Mutant:
    line: int  # in the CSV (the header is line 1)
    row: dict[str, str]
    protein: str
    substitutions: tuple[tuple[str, int, str], ...]  # (wild type, 1-based position, mutant)

    def applied_to(self, sequence: str) -> str:
        residues = list(sequence)
        for _, position, mutant in self.substitutions:
            residues[position - 1] = mutant
        return "".join(residues)


def parse_substitutions(text: str, sequence: str) -> tuple[tuple[str, int, str], ...]:
    """``A23C:D25E`` checked against `sequence`; ValueError with the reason."""
    substitutions = []
    for part in text.strip().split(":"):
        match = SUBSTITUTION.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a substitution such as A23C (wild-type residue, 1-based position, "
                             f"mutant residue; the 20 standard residues)")
        wild_type, position, mutant = match.group(1), int(match.group(2)), match.group(3)
        if position > len(sequence):
            raise ValueError(f"{part}: position {position} is past the protein's {len(sequence)} residues")
        if sequence[position - 1] != wild_type:
            raise ValueError(f"{part}: the protein has {sequence[position - 1]} at {position}, not {wild_type}")
        substitutions.append((wild_type, position, mutant))
    if len({position for _, position, _ in substitutions}) != len(substitutions):
        raise ValueError(f"{text}: a position is mutated twice")
    return tuple(substitutions)


def read_mutants(path: str, proteins: dict[str, str], unread: dict[str, str],
                 reject: Callable[[int, str, str, str], None]) -> tuple[list[str], list[Mutant]]:
    """The CSV's columns and its mutants that can be scored; the others go to ``reject(line, protein, mutant,
    reason)``."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        if MUTANT_COLUMN not in columns:
            raise ValueError(f"{path}: no {MUTANT_COLUMN!r} column (columns: {columns})")
        if PROTEIN_COLUMN not in columns and len(proteins) + len(unread) > 1:
            raise ValueError(f"{path}: the FASTA holds {len(proteins) + len(unread)} proteins: add a "
                             f"{PROTEIN_COLUMN!r} column naming each mutant's")
        only = next(iter(proteins), next(iter(unread), ""))
        mutants = []
        for line, row in enumerate(reader, start=2):
            protein = row.get(PROTEIN_COLUMN) or only
            text = row.get(MUTANT_COLUMN) or ""
            if protein in proteins:
                try:
                    mutants.append(Mutant(line, row, protein, parse_substitutions(text, proteins[protein])))
                except ValueError as error:
                    reject(line, protein, text, str(error))
            elif protein in unread:
                reject(line, protein, text, f"its protein was not read from the FASTA: {unread[protein]}")
            else:
                reject(line, protein, text, f"no protein {protein!r} in the FASTA")
    return columns, mutants


def masked_marginal_scores(run: Run, sequence: str, mutants: list[Mutant]) -> list[float]:
    """Σ log p(mutant) − log p(wild type) at each mutated position of one protein's mutants, each position masked
    alone; one masked copy per distinct position, however many mutants share it."""
    from models.objectives.scoring import LOG_PROBS, MASKED_MARGINALS

    column = {residue: index for index, residue in enumerate(STANDARD_RESIDUES)}
    wanted = sorted({position for mutant in mutants for _, position, _ in mutant.substitutions})
    per_call = max(1, RESIDUES_PER_CALL // max(len(sequence), 1))
    log_probs: dict[int, np.ndarray] = {}
    for start in range(0, len(wanted), per_call):
        chunk = wanted[start:start + per_call]
        outputs = run(MASKED_MARGINALS, [sequence], np.array([chunk], np.int32))
        log_probs.update({position: outputs[LOG_PROBS][0, position - 1] for position in chunk})
    return [float(sum(log_probs[position][column[new]] - log_probs[position][column[old]]
                      for old, position, new in mutant.substitutions)) for mutant in mutants]


def likelihood_ratio_scores(run: Run, sequence: str, mutants: list[Mutant]) -> list[float]:
    """log p(mutant sequence) − log p(wild-type sequence) for one protein's mutants, in batches."""
    from models.objectives.scoring import LOG_LIKELIHOOD

    sequences = [sequence] + [mutant.applied_to(sequence) for mutant in mutants]
    per_call = max(1, RESIDUES_PER_CALL // max(len(sequence), 1))
    scores = [float(value) for start in range(0, len(sequences), per_call)
              for value in run(LOG_LIKELIHOOD, sequences[start:start + per_call], None)[LOG_LIKELIHOOD]]
    return [score - scores[0] for score in scores[1:]]


def group_by_protein(mutants: list[Mutant]) -> dict[str, list[Mutant]]:
    groups: dict[str, list[Mutant]] = defaultdict(list)
    for mutant in mutants:
        groups[mutant.protein].append(mutant)
    return groups


def load_model(args) -> tuple[Run, list[str]]:
    """What runs the model (a local SavedModel or the server), and the signatures it serves."""
    if args.saved_model:
        import tensorflow as tf

        from models.export.embedders import saved_model_path

        signatures = tf.saved_model.load(saved_model_path(args.saved_model)).signatures

        def run_local(signature: str, sequences: list[str], positions: np.ndarray | None) -> dict[str, np.ndarray]:
            inputs = {"sequences": tf.constant(sequences)}
            if positions is not None:
                inputs["positions"] = tf.constant(positions)
            return {name: value.numpy() for name, value in signatures[signature](**inputs).items()}

        return run_local, sorted(signatures)
    from serving.client import EmbeddingClient

    client = EmbeddingClient(args.server, args.model, timeout_s=args.timeout)
    client.pin_version()

    def run_remote(signature: str, sequences: list[str], positions: np.ndarray | None) -> dict[str, np.ndarray]:
        return client.predict(sequences, signature, inputs=None if positions is None else {"positions": positions})

    return run_remote, client.signature_names


def scorer(signatures: list[str]) -> Callable[[Run, str, list[Mutant]], list[float]]:
    from models.objectives.scoring import LOG_LIKELIHOOD, MASKED_MARGINALS

    if MASKED_MARGINALS in signatures:
        return masked_marginal_scores
    if LOG_LIKELIHOOD in signatures:
        return likelihood_ratio_scores
    raise ValueError(f"the model serves neither {MASKED_MARGINALS!r} nor {LOG_LIKELIHOOD!r} (signatures: "
                     f"{signatures}): export it with its head — prottrans-import or prottrans-train --export-dir, "
                     "in float32")


class Rejects(RejectsFile):
    """``OUT.rejects.jsonl``: each mutant or FASTA record not scored, with its file, line and the reason;
    `mutants` counts the mutants."""

    def __init__(self, output: str):
        super().__init__(output)
        self.mutants = 0

    def mutant(self, line: int, protein: str, mutant: str, reason: str) -> None:
        self.write(file="mutants", line=line, protein=protein, mutant=mutant, reason=reason)
        self.mutants += 1

    def record(self, line: int, record_id: str, reason: str) -> None:
        self.write(file="fasta", line=line, id=record_id, reason=reason)


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("prottrans-score", lambda: _main(argv), argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prottrans-score", description=__doc__.split("\n\n")[0])
    add_model_source(parser)
    parser.add_argument("proteins", metavar="PROTEINS.fasta")
    parser.add_argument("mutants", metavar="MUTANTS.csv")
    parser.add_argument("output", metavar="OUT.csv")
    args = parser.parse_args(argv)
    if args.server and not args.model:
        parser.error("--server needs --model NAME")
    return run_holding(args.output, "prottrans-score", lambda: _score(args))


def _score(args: argparse.Namespace) -> int:
    rejects = Rejects(args.output)
    try:
        unread: dict[str, str] = {}

        def unreadable(line: int, record_id: str, reason: str) -> None:
            rejects.record(line, record_id, reason)
            if record_id:
                unread.setdefault(record_id, reason)

        proteins = {record.id: record.sequence for record in screened_records(args.proteins, unreadable)}
        columns, mutants = read_mutants(args.mutants, proteins, unread, rejects.mutant)
        run, signatures = load_model(args)
        score = scorer(signatures)
        scored: dict[int, float] = {}
        for protein, own in group_by_protein(mutants).items():
            try:
                scored.update(zip((mutant.line for mutant in own), score(run, proteins[protein], own)))
            except Exception as error:  # noqa: BLE001 — the model's refusal of this protein is a reject
                reason = model_refusal(error)
                if reason is None:
                    raise
                for mutant in own:
                    rejects.mutant(mutant.line, protein, mutant.row.get(MUTANT_COLUMN, ""),
                                   f"the model refused its protein: {reason}")
    except (ValueError, OSError, grpc.RpcError) as error:
        message = server_refusal(error) if isinstance(error, grpc.RpcError) else str(error)
        print(f"prottrans-score: error: {message}", file=sys.stderr)
        return 2
    finally:
        rejects.close()
    output, complete = OutputFile(args.output, newline=""), False
    try:
        writer = csv.DictWriter(output, fieldnames=[*columns, SCORE_COLUMN], extrasaction="ignore")
        writer.writeheader()
        for mutant in mutants:
            if mutant.line in scored:
                writer.writerow({**mutant.row, SCORE_COLUMN: f"{scored[mutant.line]:.6f}"})
        complete = True
    finally:
        output.close(complete)
    read = len(scored) + rejects.mutants
    print(f"mutants read {read:,}: scored {len(scored):,}, rejected {rejects.mutants:,} "
          f"(see {args.output}.rejects.jsonl)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
