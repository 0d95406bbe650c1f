"""Probe datasets in their public formats (files made here), and the metrics the probes report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.probes import datasets, metrics
from models.probes.datasets import DatasetError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_dssp_eight_states_map_to_three_the_standard_way():
    assert datasets.dssp8_to_dssp3("HGIEBTSC") == "HHHEECCC"
    assert datasets.dssp8_to_dssp3("-") == "C"
    with pytest.raises(ValueError, match="'X'"):
        datasets.dssp8_to_dssp3("HX")


def test_structure_tsv_reads_and_names_malformed_rows(tmp_path):
    good = tmp_path / "ss.tsv"
    good.write_text("id\tsequence\tdssp8\tdssp3\tasa\n1ABC_A\tMKTAY\tCHHGE\tCHHHE\t1 2 3 4 5\n")
    [record] = datasets.read_structure_tsv(str(good))
    assert (record.id, record.sequence, record.dssp8, record.dssp3, record.mask) == ("1ABC_A", "MKTAY", "CHHGE", "CHHHE", None)
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tsequence\tdssp8\tdssp3\tasa\n1ABC_A\tMKTAY\tCHHGE\tCHHHE\t\n2XYZ_B\tMKT\tCHHH\tCHHH\t\n")
    with pytest.raises(DatasetError, match=r"bad.tsv:3: '2XYZ_B' has 3 residues but 4 DSSP8"):
        datasets.read_structure_tsv(str(bad))
    inconsistent = tmp_path / "inconsistent.tsv"
    inconsistent.write_text("id\tsequence\tdssp8\tdssp3\n1\tMK\tGE\tCE\n")
    with pytest.raises(DatasetError, match="not the standard 3-state map"):
        datasets.read_structure_tsv(str(inconsistent))


def test_netsurfp_csv_keeps_only_resolved_and_masked_residues(tmp_path):
    path = tmp_path / "CB513.csv"
    path.write_text("input,dssp3,dssp8,disorder,cb513_mask\n"
                    "MKTAY,CHHHE,CHHGE,1.0 1.0 1.0 0.0 1.0,1.0 0.0 1.0 1.0 1.0\n")
    [record] = datasets.read_netsurfp_csv(str(path))
    assert record.sequence == "MKTAY" and record.mask == (True, False, True, False, True)
    path.write_text("input,dssp3,dssp8,disorder\nMKTAY,CHHHE,CHHGE,1.0 1.0\n")
    with pytest.raises(DatasetError, match="CB513.csv:2: .* 5 residues but 2 mask values"):
        datasets.read_netsurfp_csv(str(path))


def test_deeploc_fasta_headers_give_location_membrane_and_test_flag(tmp_path):
    path = tmp_path / "deeploc.fasta"
    path.write_text(">Q9H400 Cell.membrane-M test\nMKT\nAYI\n>P12345 Lysosome/Vacuole-S\nmkt\n>P99999 Nucleus-U\nMK\n")
    records = datasets.read_deeploc_fasta(str(path))
    assert [(r.id, r.location, r.membrane, r.is_test, r.sequence) for r in records] == [
        ("Q9H400", "Cell.membrane", "M", True, "MKTAYI"),
        ("P12345", "Lysosome/Vacuole", "S", False, "MKT"),
        ("P99999", "Nucleus", "U", False, "MK"),
    ]
    path.write_text(">Q1 Nucleus-M\nMK\n>Q2 Golgi-S\nMK\n")
    with pytest.raises(DatasetError, match=r"deeploc.fasta:3: unknown location 'Golgi'"):
        datasets.read_deeploc_fasta(str(path))


def test_localization_csv_accepts_common_column_names(tmp_path):
    path = tmp_path / "deeploc_per_protein_test.csv"
    path.write_text("ID,seq,loc,mem\nQ1,MKT,Nucleus,1\nQ2,acd,Peroxisome,soluble\n")
    records = datasets.read_localization_csv(str(path))
    assert [(r.id, r.sequence, r.location, r.membrane) for r in records] == [
        ("Q1", "MKT", "Nucleus", "M"), ("Q2", "ACD", "Peroxisome", "S")]
    path.write_text("id,sequence\nQ1,MKT\n")
    with pytest.raises(DatasetError, match="lacks a 'location' column"):
        datasets.read_localization_csv(str(path))


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside this checkout")
def test_the_shared_real_sets_read_completely():
    assert len(datasets.read_structure_tsv(str(SHARED / "ss" / "test.tsv"))) == 1500
    test = datasets.read_deeploc_fasta(str(SHARED / "localization" / "test.fasta"))
    assert len(test) == 2500 and all(r.is_test for r in test)
    assert {r.location for r in test} <= set(datasets.LOCATIONS)


def test_q3_of_a_known_prediction_equals_its_hand_count():
    labels = "HEC"
    truth = "HHHEECCCCH"
    predicted = "HHCEECCCHH"  # wrong at positions 2 and 8: 8 of 10 right
    y_true = [labels.index(s) for s in truth]
    y_pred = [labels.index(s) for s in predicted]
    result = metrics.report(y_true, y_pred, labels, groups=np.zeros(10))
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["confusion_matrix"] == [[3, 0, 1], [0, 2, 0], [1, 0, 3]]
    helix = result["per_class"]["H"]
    assert (helix["precision"], helix["recall"], helix["support"]) == (0.75, 0.75, 4)
    # One-vs-rest MCC of H: tp 3, fp 1, fn 1, tn 5 → (15 - 1) / sqrt(4·4·6·6) = 14/24.
    assert helix["mcc"] == pytest.approx(14 / 24)


def test_multiclass_mcc_is_one_for_perfect_and_zero_for_constant_predictions():
    assert metrics.report([0, 1, 2, 2], [0, 1, 2, 2], "HEC")["mcc"] == pytest.approx(1.0)
    constant = metrics.report([0, 1, 2, 2], [2, 2, 2, 2], "HEC")
    assert constant["mcc"] == 0.0
    assert constant["per_class"]["H"] == {"precision": 0.0, "recall": 0.0, "mcc": 0.0, "support": 1}  # undefined → 0


def test_intervals_contain_the_estimate_and_shrink_with_more_data():
    low, high = metrics.normal_interval(0.8, 100)
    assert low < 0.8 < high and high - low == pytest.approx(2 * 1.96 * np.sqrt(0.8 * 0.2 / 100))
    assert metrics.normal_interval(0.8, 10_000)[1] - metrics.normal_interval(0.8, 10_000)[0] < high - low
    rng = np.random.default_rng(0)
    correct = rng.random(5000) < 0.7
    groups = np.repeat(np.arange(100), 50)
    low, high = metrics.bootstrap_interval(correct, groups)
    assert low < correct.mean() < high and high - low < 0.1
