"""`prottrans-score`: mutants in ProteinGym's notation scored from the model's own head — masked marginals or a
likelihood ratio — locally or through the server; every mutant scored or rejected with its reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.objectives import scoring
from serving import score

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"
PROTEINS = {"P1": "MKTAYIAKQRQISFVKSHFSRQ", "P2": "ACDEFGHIKLMNPQRSTVWY"}
MUTANTS = [  # (protein, mutant, scored or the reason it is not)
    ("P1", "M1A", True), ("P1", "K2R:Q9E", True), ("P2", "W19F", True), ("P1", "K2A", True),
    ("P1", "T3", "not a substitution"), ("P1", "A3C", "the protein has T at 3, not A"),
    ("P2", "Y30C", "position 30 is past the protein's 20 residues"), ("P3", "M1A", "no protein 'P3'"),
    ("P1", "K2R:K2A", "mutated twice"), ("P2", "C2X", "not a substitution"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """SavedModels with their heads: a masked LM (ProtBert fixture) and a permutation LM (ProtXLNet fixture)."""
    from models.cli import import_checkpoint

    root = tmp_path_factory.mktemp("models")
    for family, folder in (("protbert", "protbert"), ("protxlnet", "protxlnet_checkpoint")):
        assert import_checkpoint.main(["--from-hf", str(FIXTURES / folder), "--family", family,
                                       "--output", str(root / family)]) == 0
    return root


def write_inputs(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    fasta, table = folder / "proteins.fasta", folder / "mutants.csv"
    fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in PROTEINS.items()) + ">P4\nMKJ\n")
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["protein", "mutant", "DMS_score"])
        writer.writerows([protein, mutant, index] for index, (protein, mutant, _) in enumerate(MUTANTS))
        writer.writerow(["P4", "M1A", 99])  # a protein the FASTA holds but could not read
    return fasta, table


def run_score(tmp_path: Path, *source: str, capsys) -> tuple[list[dict], list[dict], str]:
    fasta, table = write_inputs(tmp_path)
    output = tmp_path / "scores.csv"
    assert score.main([*source, str(fasta), str(table), str(output)]) == 0
    with open(output, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rejects = [json.loads(line) for line in Path(f"{output}.rejects.jsonl").read_text().splitlines()]
    return rows, rejects, capsys.readouterr().out


def expected_masked_marginal(signatures, protein: str, mutant: str) -> float:
    """From the signature, one position at a time (independently of the command's batching)."""
    total = 0.0
    for part in mutant.split(":"):
        old, position, new = part[0], int(part[1:-1]), part[-1]
        log_probs = signatures[scoring.MASKED_MARGINALS](
            sequences=tf.constant([PROTEINS[protein]]), positions=tf.constant([[position]]))[scoring.LOG_PROBS]
        row = log_probs.numpy()[0, position - 1]
        total += row["ACDEFGHIKLMNPQRSTVWY".index(new)] - row["ACDEFGHIKLMNPQRSTVWY".index(old)]
    return total


def test_masked_marginal_scores_and_every_reject_with_its_reason(models, tmp_path, capsys):
    rows, rejects, out = run_score(tmp_path, "--saved-model", str(models / "protbert"), capsys=capsys)
    scored = [(protein, mutant) for protein, mutant, ok in MUTANTS if ok is True]
    assert [(row["protein"], row["mutant"]) for row in rows] == scored  # input order, input columns kept
    assert [row["DMS_score"] for row in rows] == ["0", "1", "2", "3"]
    signatures = tf.saved_model.load(str(models / "protbert" / "1")).signatures
    for row in rows:
        assert float(row["score"]) == pytest.approx(expected_masked_marginal(signatures, row["protein"],
                                                                             row["mutant"]), abs=1e-4)
    mutant_rejects = [r for r in rejects if r["file"] == "mutants"]
    for (protein, mutant, reason), reject in zip([m for m in MUTANTS if m[2] is not True], mutant_rejects):
        assert (reject["protein"], reject["mutant"]) == (protein, mutant) and reason in reject["reason"]
    assert mutant_rejects[-1]["protein"] == "P4" and "not read from the FASTA" in mutant_rejects[-1]["reason"]
    assert [r["id"] for r in rejects if r["file"] == "fasta"] == ["P4"]
    assert "mutants read 11: scored 4, rejected 7" in out


def test_a_left_to_right_model_scores_the_likelihood_ratio(models, tmp_path, capsys):
    rows, _, out = run_score(tmp_path, "--saved-model", str(models / "protxlnet"), capsys=capsys)
    log_likelihood = tf.saved_model.load(str(models / "protxlnet" / "1")).signatures[scoring.LOG_LIKELIHOOD]
    for row in rows:
        wild_type = PROTEINS[row["protein"]]
        mutated = list(wild_type)
        for part in row["mutant"].split(":"):
            mutated[int(part[1:-1]) - 1] = part[-1]
        both = log_likelihood(sequences=tf.constant([wild_type, "".join(mutated)]))[scoring.LOG_LIKELIHOOD].numpy()
        assert float(row["score"]) == pytest.approx(both[1] - both[0], abs=1e-3)
    assert "scored 4, rejected 7" in out


def test_through_the_server_the_scores_are_the_same(models, tmp_path, capsys):
    from serving.dev_server import DevServer

    local, _, _ = run_score(tmp_path / "local", "--saved-model", str(models / "protbert"), capsys=capsys)
    server = DevServer(str(models / "protbert"), "protbert", port=0).start()
    try:
        served, _, _ = run_score(tmp_path / "served", "--server", f"127.0.0.1:{server.port}", "--model", "protbert",
                                 capsys=capsys)
    finally:
        server.stop()
    np.testing.assert_allclose([float(r["score"]) for r in served], [float(r["score"]) for r in local], atol=1e-5)


def test_the_server_counts_masked_copies_against_its_residue_cap(models):
    import grpc

    from serving.client import EmbeddingClient
    from serving.dev_server import DevServer

    server = DevServer(str(models / "protbert"), "protbert", port=0, max_request_residues=100).start()
    try:
        with EmbeddingClient(f"127.0.0.1:{server.port}", "protbert") as client:
            one = client.predict([PROTEINS["P1"]], scoring.MASKED_MARGINALS,
                                 inputs={scoring.POSITIONS: np.array([[1, 2, 3, 4]], np.int32)})  # 4 × 22 residues
            assert one[scoring.LOG_PROBS].shape == (1, 22, 20)
            with pytest.raises(grpc.RpcError) as error:  # every residue masked: 22 copies of 22
                client.predict([PROTEINS["P1"]], scoring.MASKED_MARGINALS,
                               inputs={scoring.POSITIONS: np.zeros([1, 0], np.int32)})
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "masks 22 copies" in error.value.details()
            with pytest.raises(grpc.RpcError) as error:
                client.predict([PROTEINS["P1"]], scoring.MASKED_MARGINALS)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "positions" in error.value.details()
    finally:
        server.stop()


def test_a_protein_the_model_cannot_take_rejects_its_mutants_with_the_model_s_reason(models, tmp_path, capsys):
    fasta, table = tmp_path / "long.fasta", tmp_path / "long.csv"
    fasta.write_text(">long\n" + "A" * 70 + "\n")  # the ProtBert fixture takes 62 residues in one pass
    table.write_text("mutant\nA5C\n")
    assert score.main(["--saved-model", str(models / "protbert"), str(fasta), str(table),
                       str(tmp_path / "out.csv")]) == 0
    [reject] = [json.loads(line) for line in Path(f"{tmp_path / 'out.csv'}.rejects.jsonl").read_text().splitlines()]
    assert "the model refused its protein" in reject["reason"] and "longer than the 62 residues" in reject["reason"]
    assert "scored 0, rejected 1" in capsys.readouterr().out


def test_a_model_without_a_scoring_head_is_named(tmp_path, capsys):
    from models.export.signatures import export_saved_model
    from models.registry import FAMILIES

    backbone = FAMILIES["protbert"].import_checkpoint(str(FIXTURES / "protbert"), log=lambda _: None).backbone
    export_saved_model(backbone, str(tmp_path / "embeddings_only"))
    fasta, table = write_inputs(tmp_path)
    assert score.main(["--saved-model", str(tmp_path / "embeddings_only"), str(fasta), str(table),
                       str(tmp_path / "out.csv")]) == 2
    assert "serves neither 'masked_marginals' nor 'log_likelihood'" in capsys.readouterr().err
