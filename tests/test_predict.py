"""Served prediction heads: the `predict` signature (a model's trained probes served with it), through a SavedModel
in process and through the server, and the `prottrans-predict` command, on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf

from models.export.predict import LABELS, PREDICT_SIGNATURE, read_heads, write_predictor
from models.export.signatures import export_saved_model
from models.registry import build_backbone

PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MSTNPKPQ", "ACDEFGHIKLMNPQRSTVWY" * 4]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """A model folder whose version 1 serves a tiny ProtBert with probes trained for one epoch on 20 proteins."""
    from models.export.embedders import load_embedder
    from models.probes import probe
    from models.probes.datasets import SAMPLE_DATA_DIR

    root = tmp_path_factory.mktemp("predict")
    keras.utils.set_random_seed(0)
    embedding_model = export_saved_model(build_backbone("protbert", "tiny", max_sequence_length=66),
                                         str(root / "embedding"), 1)
    heads: dict = {}
    probe.probe_model(load_embedder(embedding_model), SAMPLE_DATA_DIR, "all", str(root / "report"),
                      probe.ProbeSettings(epochs=1), limit=20, baseline=False, maps=False, heads=heads)
    return Path(write_predictor(embedding_model, heads, str(root / "protbert" / "1"))), heads


def _predict(path, sequences):
    signature = tf.saved_model.load(str(path)).signatures[PREDICT_SIGNATURE]
    return {name: value.numpy() for name, value in signature(sequences=tf.constant(sequences)).items()}


def test_predict_returns_labels_from_the_alphabets_and_probabilities_that_sum_to_one(predictor):
    path, _ = predictor
    out = _predict(path, PROTEINS)
    longest = max(map(len, PROTEINS))
    assert list(out["lengths"]) == [len(p) for p in PROTEINS]
    for name, states in (("ss3", 3), ("ss8", 8)):
        assert out[name].shape == (3, longest) and out[f"{name}_probabilities"].shape == (3, longest, states)
        for row, protein in enumerate(PROTEINS):
            labels = out[name][row]
            assert set(labels[: len(protein)]) <= {s.encode() for s in LABELS[name]} and not any(labels[len(protein):])
            np.testing.assert_allclose(out[f"{name}_probabilities"][row, : len(protein)].sum(-1), 1.0, atol=1e-5)
            assert labels[0].decode() == LABELS[name][int(np.argmax(out[f"{name}_probabilities"][row, 0]))]
    for name, classes in (("location", 10), ("membrane", 2)):
        assert out[name].shape == (3,) and out[f"{name}_probabilities"].shape == (3, classes)
        assert {label.decode() for label in out[name]} <= set(LABELS[name])
        np.testing.assert_allclose(out[f"{name}_probabilities"].sum(-1), 1.0, atol=1e-5)
    assert read_heads(str(path))["labels"]["location"] == LABELS["location"]


def test_predict_is_the_probes_on_the_model_s_own_embeddings(predictor):
    path, heads = predictor
    loaded = tf.saved_model.load(str(path))
    embedded = loaded.signatures["serving_default"](sequences=tf.constant(PROTEINS))
    expected = tf.nn.softmax(heads["localization"](embedded["protein_embeddings"])["location"]).numpy()
    np.testing.assert_allclose(_predict(path, PROTEINS)["location_probabilities"], expected, atol=1e-5)
    alone = _predict(path, PROTEINS[1:2])  # a protein's predictions do not depend on its batch
    np.testing.assert_allclose(alone["ss3_probabilities"][0], _predict(path, PROTEINS)["ss3_probabilities"][1, :8],
                               atol=1e-5)


def test_predict_refuses_illegal_residues(predictor):
    path, _ = predictor
    with pytest.raises(tf.errors.InvalidArgumentError, match="not residues"):
        _predict(path, ["MKT", "MKJT"])


def test_the_server_serves_predict_beside_the_embeddings(predictor):
    from serving.client import EmbeddingClient
    from serving.dev_server import DevServer

    path, _ = predictor
    server = DevServer(str(path.parent), "protbert", port=0).start()
    try:
        with EmbeddingClient(f"127.0.0.1:{server.port}", "protbert") as client:
            served = client.predict(PROTEINS, PREDICT_SIGNATURE)
            with pytest.raises(grpc.RpcError) as error:
                client.predict(["MKJT"], PREDICT_SIGNATURE)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sequence 0 has J" in error.value.details()
            assert len(client.embed(PROTEINS)) == 3  # the embedding signatures are unchanged
    finally:
        server.stop()
    local = _predict(path, PROTEINS)
    np.testing.assert_array_equal(served["ss8"], local["ss8"])
    np.testing.assert_allclose(served["membrane_probabilities"], local["membrane_probabilities"], atol=1e-6)


@pytest.mark.parametrize("suffix", [".jsonl", ".tsv"])
def test_predict_cli_writes_one_record_per_protein_and_lists_rejects(predictor, tmp_path, capsys, suffix):
    from serving import predict

    path, _ = predictor
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">P1 first\n{PROTEINS[0]}\n>BAD\nMK1T\n>P2\n{PROTEINS[1]}\n>P1 again\nMKT\n")
    out = tmp_path / f"out{suffix}"
    assert predict.main(["--saved-model", str(path.parent), str(fasta), str(out), "--residue-probabilities"]) == 0
    assert "predicted 2; rejected 2" in capsys.readouterr().out
    local = _predict(path, PROTEINS[:2])
    if suffix == ".jsonl":
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["id"] for r in records] == ["P1", "P2"]
        assert records[1]["ss3"] == b"".join(local["ss3"][1, :8]).decode()
        assert len(records[0]["ss8_probabilities"]) == len(PROTEINS[0])
        assert set(records[0]["location_probabilities"]) == set(LABELS["location"])
    else:
        header, *rows = [line.split("\t") for line in out.read_text().splitlines()]
        assert header == ["id", "length", "location", "location_probability", "membrane", "membrane_probability",
                          "ss3", "ss8"]
        assert [row[0] for row in rows] == ["P1", "P2"] and rows[1][2] == local["location"][1].decode()
    rejects = [json.loads(line) for line in Path(str(out) + ".rejects.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejects] == ["BAD", "P1"]


def test_predict_cli_names_a_model_without_predict(tmp_path, capsys):
    from serving import predict

    keras.utils.set_random_seed(0)
    plain = export_saved_model(build_backbone("protbert", "tiny"), str(tmp_path / "plain"), 1)
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">P1\nMKT\n")
    assert predict.main(["--saved-model", plain, str(fasta), str(tmp_path / "out.tsv")]) == 2
    assert "has no 'predict' signature" in capsys.readouterr().err
