"""Serving: the SavedModel TF Serving loads (core ops only, warm-up requests, server configs), the development
gRPC server speaking TF Serving's protocol, the typed client and the `prottrans-embed` CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import h5py
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from models.export import embedding
from models.registry import build_backbone
from models.export.signatures import export_saved_model

PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "ACDEFGHIKLMNPQRSTVWY" * 3]
MAX_RESIDUES = 62


def tiny_backbone(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    backbone = build_backbone("protbert", "tiny", max_sequence_length=MAX_RESIDUES + 2)
    backbone(tf.constant([[2, 5, 3]]))
    return backbone


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving") / "protbert"
    backbone = tiny_backbone(0)
    export_saved_model(backbone, str(folder), 1)
    return folder, backbone


class ModelServer:
    """`tensorflow_model_server` where it is on PATH (the integration tests then check the real thing), else
    the development server."""

    def __init__(self, folder: Path):
        binary = shutil.which("tensorflow_model_server")
        self.kind = "tensorflow_model_server" if binary else "dev"
        if binary:
            import socket

            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            self._process = subprocess.Popen([binary, f"--port={self.port}", "--model_name=protbert",
                                              f"--model_base_path={folder}", "--file_system_poll_wait_seconds=1",
                                              "--enable_model_warmup=true"])
            self._wait_until_available()
        else:
            from serving.dev_server import DevServer

            self._dev = DevServer(str(folder), "protbert", port=0, host="127.0.0.1", poll_s=0.2).start()
            self.port = self._dev.port

    def _wait_until_available(self, timeout: float = 60) -> None:
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{self.port}"))
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "protbert"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if stub.GetModelStatus(status, timeout=2).model_version_status:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
        raise TimeoutError("tensorflow_model_server did not load the model")

    def stop(self) -> None:
        if self.kind == "dev":
            self._dev.stop()
        else:
            self._process.terminate()
            self._process.wait(30)


@pytest.fixture(scope="module")
def server(model_folder):
    folder, _ = model_folder
    running = ModelServer(folder)
    yield running
    running.stop()


def stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))


def request(values, dtype=tf.string, name="protbert", input_name="sequences"):
    message = predict_pb2.PredictRequest()
    message.model_spec.name = name
    message.inputs[input_name].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    return message


def _declaring(message, size: int):
    """`message` with its input's declared batch size changed to `size` (the data unchanged)."""
    message.inputs["sequences"].tensor_shape.dim[0].size = size
    return message


def test_the_saved_model_needs_no_custom_ops_and_carries_warmup_requests(model_folder):
    folder, _ = model_folder
    version = folder / "1"
    # A fresh interpreter without tensorflow_text: every op in the graph must be a core TF op.
    script = (
        "import sys, tensorflow as tf\n"
        "from tensorflow.core.protobuf import saved_model_pb2\n"
        "from tensorflow.python.framework import op_def_registry\n"
        f"saved = saved_model_pb2.SavedModel.FromString(open({str(version / 'saved_model.pb')!r}, 'rb').read())\n"
        "graph = saved.meta_graphs[0].graph_def\n"
        "ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}\n"
        "missing = sorted(op for op in ops if op_def_registry.get(op) is None)\n"
        "assert 'tensorflow_text' not in sys.modules\n"
        "print(missing)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    cli = subprocess.run([str(Path(sys.executable).parent / "saved_model_cli"), "show", "--dir", str(version), "--all"],
                         capture_output=True, text=True, timeout=120)
    assert "signature_def['serving_default']" in cli.stdout and "sequences" in cli.stdout
    assert (version / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    info = json.loads((version / "assets.extra" / "prottrans_model.json").read_text())
    assert info["max_residues"] is None  # any length: windows of the position table's size, stitched in the graph
    assert info["window"] == {"residues": MAX_RESIDUES, "overlap": MAX_RESIDUES // 4, "stitch": "central"}


def test_server_configs_name_every_model_and_label(tmp_path):
    from serving.server_config import write_server_configs

    files = write_server_configs(str(tmp_path), {"protbert": {"stable": 1, "canary": 2}, "protalbert": {}})
    text = Path(files["models.config"]).read_text()
    assert 'name: "protbert"' in text and 'base_path: "/models/protbert"' in text and 'name: "protalbert"' in text
    assert 'key: "canary"' in text and "value: 2" in text
    assert "max_batch_size { value: 32 }" in Path(files["batching.config"]).read_text()
    assert "prometheus_config" in Path(files["monitoring.config"]).read_text()


def test_served_embeddings_equal_the_in_process_model(server, model_folder):
    _, backbone = model_folder
    response = stub(server).Predict(request(PROTEINS), timeout=30)
    expected = embedding.embed_strings(backbone, tf.constant(PROTEINS))
    for name in ("residue_embeddings", "protein_embeddings", "lengths"):
        np.testing.assert_allclose(tf.make_ndarray(response.outputs[name]), expected[name].numpy(), atol=1e-5)
    assert response.model_spec.version.value == 1


def test_metadata_and_status_describe_the_loaded_version(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata_request.model_spec.name = "protbert"
    metadata = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(metadata_request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def["serving_default"].outputs) == {
        "residue_embeddings", "protein_embeddings", "lengths"}
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "protbert"
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request)
    assert [(s.version, s.state) for s in status.model_version_status][0][1] == \
        get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.mark.parametrize("bad, message", [
    (request([1.0, 2.0], dtype=tf.float32), "must be DT_STRING"),
    (request([], dtype=tf.string), "empty batch"),
    (request(["MKT1AY"]), "not residues (allowed: the 20 amino acids, X, U, Z, O, B; upper or lower case): "
                          "sequence 0 has 1"),
    (request(["MKT", "MKJ"]), "sequence 1 has J"),
    (request([["MKT"]]), "must be a vector"),
    (request(["MKT"], input_name="seqs"), "'serving_default' takes the inputs ['sequences'], got ['seqs']"),
    (_declaring(request(["MKT", "MKV"]), 5), "declares shape [5] but holds 2 strings"),
    (request(["MKÉTα"]), "sequence 0 has Éα"),
])
def test_bad_requests_get_invalid_argument_naming_the_problem_and_the_server_keeps_serving(server, bad, message):
    with pytest.raises(grpc.RpcError) as error:
        stub(server).Predict(bad, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    if server.kind == "dev":  # the stock server frames the graph's messages its own way
        assert message in error.value.details()
    assert stub(server).Predict(request(["MKT"]), timeout=30).outputs["lengths"].int_val == [3]


def test_an_unknown_model_is_not_found(server):
    with pytest.raises(grpc.RpcError) as error:
        stub(server).Predict(request(["MKT"], name="esm"), timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_served_model_embeds_long_sequences_in_its_windows_and_the_client_batches_by_residues(server,
                                                                                                 model_folder):
    from serving.client import EmbeddingClient

    _, backbone = model_folder
    sequences = PROTEINS + ["MKTAYIAKQR" * 15]  # 150 residues: over the 62-residue limit, so in windows
    with EmbeddingClient(f"127.0.0.1:{server.port}", "protbert", residues_per_request=100) as client:
        served = client.embed(sequences)
    local = embedding.embed(backbone, sequences)
    assert served[-1].residues.shape == (150, 32)
    for got, want in zip(served, local):
        np.testing.assert_allclose(got.residues, want.residues, atol=1e-5)
        np.testing.assert_allclose(got.protein, want.protein, atol=1e-5)


def test_the_client_cuts_requests_so_64_proteins_of_1000_residues_come_back_per_residue(server, model_folder):
    from serving.client import EmbeddingClient

    _, backbone = model_folder
    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 1000)) for _ in range(64)]
    limit = 4 << 20  # gRPC's default message limit: the 64 × 1,000 × 32 float32 residue embeddings are 8 MiB
    with pytest.raises(grpc.RpcError) as error:  # sent at once, the response cannot come back
        EmbeddingClient(f"127.0.0.1:{server.port}", "protbert", max_message_bytes=limit).predict(sequences)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with EmbeddingClient(f"127.0.0.1:{server.port}", "protbert", residues_per_request=1 << 20,
                         max_message_bytes=limit) as client:
        served = client.embed(sequences)
        assert client.requests_sent >= 3  # the width probe and at least two parts
    with EmbeddingClient(f"127.0.0.1:{server.port}", "protbert", residue_dtype="float16") as client:
        half = client.embed(sequences[:4])
    local = embedding.embed(backbone, sequences)
    assert len(served) == 64 and all(item.residues.shape == (1000, 32) for item in served)
    for got, want in zip(served, local):
        np.testing.assert_allclose(got.residues, want.residues, atol=1e-5)
    assert half[0].residues.dtype == np.float16 and half[0].protein.dtype == np.float32
    np.testing.assert_allclose(half[0].residues, local[0].residues, atol=2e-2, rtol=1e-2)


def test_protein_vectors_alone_leave_the_residue_embeddings_on_the_server(server, model_folder):
    from serving.client import EmbeddingClient

    _, backbone = model_folder
    with EmbeddingClient(f"127.0.0.1:{server.port}", "protbert", per_residue=False) as client:
        [served] = client.embed([PROTEINS[0]])
    assert served.residues.shape == (len(PROTEINS[0]), 0)
    np.testing.assert_allclose(served.protein, embedding.embed(backbone, [PROTEINS[0]])[0].protein, atol=1e-5)


@pytest.mark.slow
def test_a_new_version_swaps_in_under_concurrent_load_without_a_failed_request(tmp_path):
    from serving.client import EmbeddingClient

    folder = tmp_path / "protbert"
    export_saved_model(tiny_backbone(0), str(folder), 1)
    running = ModelServer(folder)
    failures, versions = [], set()

    def client_loop():
        # 50 requests each, and on until this client has been answered by version 2 (bounded).
        seen, sent, deadline = set(), 0, time.monotonic() + 120
        with EmbeddingClient(f"127.0.0.1:{running.port}", "protbert") as client:
            while (sent < 50 or 2 not in seen) and time.monotonic() < deadline:
                try:
                    response = client._stub.Predict(client.request(PROTEINS[:2]), timeout=30)
                    seen.add(response.model_spec.version.value)
                except grpc.RpcError as error:  # noqa: PERF203
                    failures.append(error)
                sent += 1
        versions.update(seen)

    try:
        threads = [threading.Thread(target=client_loop) for _ in range(8)]
        for thread in threads:
            thread.start()
        staged = tmp_path / "staged"
        export_saved_model(tiny_backbone(1), str(staged), 2)
        shutil.move(str(staged / "2"), str(folder / "2"))  # a complete version appears at once, as the Pusher's
        for thread in threads:
            thread.join()
    finally:
        running.stop()
    assert failures == []
    assert versions == {1, 2}


def _write_fasta(path: Path, records: list[tuple[str, str]]) -> None:
    path.write_text("".join(f">{name} description\n{sequence}\n" for name, sequence in records))


@pytest.mark.parametrize("backend", ["server", "saved-model"])
def test_embed_cli_writes_hdf5_keyed_by_id_and_reports_rejects(server, model_folder, tmp_path, backend):
    from serving import embed

    folder, backbone = model_folder
    fasta = tmp_path / "in.fasta"
    _write_fasta(fasta, [("P1", PROTEINS[0]), ("sp/P2", PROTEINS[1]), ("BAD", "MK1T"), ("P1", PROTEINS[2])])
    source = ["--server", f"127.0.0.1:{server.port}", "--model", "protbert"] if backend == "server" \
        else ["--saved-model", str(folder)]
    out = tmp_path / "out.h5"
    assert embed.main([*source, str(fasta), str(out), "--per-residue", "--per-protein"]) == 0
    half = tmp_path / "half.h5"
    assert embed.main([*source, str(fasta), str(half), "--float16"]) == 0
    with h5py.File(half) as handle:
        assert handle["P1"].dtype == np.float16
    with h5py.File(out) as handle:
        assert sorted(handle["per_protein"]) == ["P1", "sp%2FP2"]
        expected = embedding.embed(backbone, [PROTEINS[0]])[0]
        np.testing.assert_allclose(handle["per_residue"]["P1"][()], expected.residues, atol=1e-5)
        np.testing.assert_allclose(handle["per_protein"]["P1"][()], expected.protein, atol=1e-5)
    rejects = [json.loads(line) for line in Path(str(out) + ".rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"].split(" ")[0]) for r in rejects] == [("BAD", "illegal"), ("P1", "duplicate")]


def test_embed_cli_resumes_an_interrupted_file(model_folder, tmp_path, capsys):
    from serving import embed

    folder, _ = model_folder
    first, both = tmp_path / "first.fasta", tmp_path / "both.fasta"
    _write_fasta(first, [("P1", PROTEINS[0]), ("BAD", "MK1T")])
    _write_fasta(both, [("P1", PROTEINS[0]), ("BAD", "MK1T"), ("P2", PROTEINS[1])])
    out = tmp_path / "out.h5"
    assert embed.main(["--saved-model", str(folder), str(first), str(out)]) == 0
    capsys.readouterr()
    assert embed.main(["--saved-model", str(folder), str(both), str(out)]) == 0
    assert "embedded 1; already in" in capsys.readouterr().out
    with h5py.File(out) as handle:
        assert sorted(handle) == ["P1", "P2"] and handle["P2"].shape == (32,)
    rejects = Path(str(out) + ".rejects.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in rejects] == ["BAD"]  # a rerun lists each reject once


def test_embed_cli_restarts_a_partial_file_left_unreadable_by_a_kill(model_folder, tmp_path, capsys):
    from serving import embed

    folder, _ = model_folder
    fasta, out = tmp_path / "in.fasta", tmp_path / "out.h5"
    _write_fasta(fasta, [("P1", PROTEINS[0])])
    Path(str(out) + ".partial").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40)  # killed before the first flush
    assert embed.main(["--saved-model", str(folder), str(fasta), str(out)]) == 0
    assert "left unreadable by an interrupted run" in capsys.readouterr().err
    with h5py.File(out) as handle:
        assert sorted(handle) == ["P1"]
    assert not Path(str(out) + ".partial").exists()


def test_embed_cli_names_an_unreadable_output_file(model_folder, tmp_path, capsys):
    from serving import embed

    folder, _ = model_folder
    fasta, out = tmp_path / "in.fasta", tmp_path / "out.h5"
    _write_fasta(fasta, [("P1", PROTEINS[0])])
    out.write_bytes(b"not hdf5 at all")
    assert embed.main(["--saved-model", str(folder), str(fasta), str(out)]) == 2
    error = capsys.readouterr().err
    assert str(out) in error and "not a readable HDF5 file" in error and out.read_bytes() == b"not hdf5 at all"


def test_embed_cli_embeds_damaged_entries_again(model_folder, tmp_path, capsys):
    from serving import embed

    folder, backbone = model_folder
    fasta, out = tmp_path / "in.fasta", tmp_path / "out.h5"
    _write_fasta(fasta, [("P1", PROTEINS[0]), ("P2", PROTEINS[1])])
    assert embed.main(["--saved-model", str(folder), str(fasta), str(out), "--per-residue"]) == 0
    with h5py.File(out) as handle:
        offset = handle["P2"].id.get_chunk_info(0).byte_offset
    with open(out, "r+b") as raw:  # bytes changed inside the stored data, as a bad disk or a stray write would
        raw.seek(offset + 8)
        raw.write(b"\xff\xff\xff\xff")
    capsys.readouterr()
    assert embed.main(["--saved-model", str(folder), str(fasta), str(out), "--per-residue"]) == 0
    assert "already in" in (printed := capsys.readouterr().out) and "damaged and embedded again: 1" in printed
    with h5py.File(out) as handle:
        expected = embedding.embed(backbone, [PROTEINS[1]])[0]
        np.testing.assert_allclose(handle["P2"][()], expected.residues, atol=1e-5)


def test_embed_cli_resumes_on_id_and_sequence_never_keeping_an_entry_of_another_sequence(model_folder, tmp_path,
                                                                                         capsys):
    from serving import embed
    from serving.embedding_file import SEQUENCE_DIGEST

    folder, backbone = model_folder
    fasta, out = tmp_path / "in.fasta", tmp_path / "out.h5"
    _write_fasta(fasta, [("P1", PROTEINS[0]), ("P2", PROTEINS[1]), ("P3", PROTEINS[2])])
    assert embed.main(["--saved-model", str(folder), str(fasta), str(out)]) == 0
    with h5py.File(out, "r+") as handle:
        del handle["P3"].attrs[SEQUENCE_DIGEST]  # as a file written before digests were stored
    _write_fasta(fasta, [("P1", PROTEINS[0]), ("P2", PROTEINS[2]), ("P3", PROTEINS[2])])  # P2's sequence changed
    capsys.readouterr()
    assert embed.main(["--saved-model", str(folder), str(fasta), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "embedded 2; already in" in printed and "sequence differs from the stored entry's" in printed
    with h5py.File(out) as handle:
        np.testing.assert_allclose(handle["P2"][()], embedding.embed(backbone, [PROTEINS[2]])[0].protein, atol=1e-5)
        assert handle["P2"].attrs[SEQUENCE_DIGEST] == handle["P3"].attrs[SEQUENCE_DIGEST]


def test_embed_cli_rejects_ids_an_output_cannot_hold_exactly_and_never_merges_two(model_folder, tmp_path):
    from serving import embed

    folder, _ = model_folder
    fasta, out = tmp_path / "in.fasta", tmp_path / "out.h5"
    fasta.write_bytes(b">P\x001\n" + PROTEINS[0].encode() + b"\n>P\xff\n" + PROTEINS[1].encode()
                      + b"\n>P\xfe\n" + PROTEINS[2].encode() + b"\n>P\n" + PROTEINS[2].encode() + b"\n")
    assert embed.main(["--saved-model", str(folder), str(fasta), str(out)]) == 0
    with h5py.File(out) as handle:
        assert sorted(handle) == ["P"]
    rejects = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects] == [
        ("P\\x001", "the id holds a control character (such as NUL)"),
        ("P\\udcff", "the id is not valid UTF-8"), ("P\\udcfe", "the id is not valid UTF-8")]


def test_embed_cli_reads_an_endless_line_in_bounded_memory_and_rejects_an_oversized_record(model_folder, tmp_path,
                                                                                           capsys, monkeypatch):
    import resource

    from beam_jobs import fasta as fasta_reader
    from serving import embed

    folder, _ = model_folder
    out = tmp_path / "out.h5"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert embed.main(["--saved-model", str(folder), "/dev/zero", str(out)]) == 1
    assert "/dev/zero:1: residues before the first '>' header: not FASTA" in capsys.readouterr().err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1 << 20  # KiB: under 1 GiB more

    monkeypatch.setattr(fasta_reader, "DEFAULT_MAX_RECORD_CHARS", 64)
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">big\n{'M' * 40}\n{'K' * 40}\n>long_line\n{'A' * 500}\n>P1\n{PROTEINS[1]}\n")
    assert embed.main(["--saved-model", str(folder), str(fasta), str(out)]) == 0
    with h5py.File(out) as handle:
        assert sorted(handle) == ["P1"]
    rejects = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["line"], r["reason"]) for r in rejects] == [
        ("big", 1, "record larger than 64 characters"), ("long_line", 4, "record larger than 64 characters")]


@pytest.mark.parametrize("change", ["layout", "dtype", "model"])
def test_embed_cli_refuses_to_mix_models_layouts_or_dtypes_in_one_file(model_folder, tmp_path, capsys, change):
    from serving import embed

    folder, _ = model_folder
    fasta, out = tmp_path / "in.fasta", tmp_path / "out.h5"
    _write_fasta(fasta, [("P1", PROTEINS[0])])
    assert embed.main(["--saved-model", str(folder), str(fasta), str(out)]) == 0
    other = folder
    if change == "model":
        other = tmp_path / "other"
        export_saved_model(tiny_backbone(1), str(other), 1)
    flags = {"layout": ["--per-residue"], "dtype": ["--float16"], "model": []}[change]
    assert embed.main(["--saved-model", str(other), str(fasta), str(out), *flags]) == 2
    error = capsys.readouterr().err
    assert str(out) in error and "holds other embeddings" in error
    assert {"layout": "layout", "dtype": "dtype", "model": "model"}[change] + " " in error


def test_embed_cli_stores_any_id_under_a_safe_name(model_folder, tmp_path):
    from serving import embed

    folder, _ = model_folder
    fasta, out = tmp_path / "in.fasta", tmp_path / "out.h5"
    _write_fasta(fasta, [(".", PROTEINS[0]), ("..", PROTEINS[1]), ("a/b%", PROTEINS[2])])
    assert embed.main(["--saved-model", str(folder), str(fasta), str(out)]) == 0
    with h5py.File(out) as handle:
        assert sorted(handle) == ["%2E", "%2E.", "a%2Fb%25"]
        assert sorted(handle[key].attrs["id"] for key in handle) == [".", "..", "a/b%"]


def test_embed_cli_refuses_a_file_that_is_not_fasta(model_folder, tmp_path, capsys):
    from serving import embed

    folder, _ = model_folder
    bad = tmp_path / "bad.fasta"
    bad.write_text("MKTAYIAK\n>P1\nMKT\n")
    assert embed.main(["--saved-model", str(folder), str(bad), str(tmp_path / "o.h5")]) == 1
    assert "residues before the first '>' header" in capsys.readouterr().err


def test_embed_cli_explains_a_server_refusal(server, tmp_path, capsys):
    from serving import embed

    fasta = tmp_path / "in.fasta"
    _write_fasta(fasta, [("LONG", "A" * (MAX_RESIDUES * 3))])
    code = embed.main(["--server", f"127.0.0.1:{server.port}", "--model", "esm", str(fasta), str(tmp_path / "o.h5")])
    assert code == 2
    assert "the server answered NOT_FOUND: no model named 'esm'" in capsys.readouterr().err
    assert embed.main(["--server", f"127.0.0.1:{server.port}", "--model", "protbert", "--per-residue", str(fasta),
                       str(tmp_path / "o.h5")]) == 0
    with h5py.File(tmp_path / "o.h5") as handle:
        assert handle["LONG"].shape == (MAX_RESIDUES * 3, 32)  # beyond the limit: in the model's windows


@pytest.mark.parametrize("sequences, message", [
    ([], "empty batch"),
    (["MKT1AY"], "characters that are not residues"),
    (["MKT", "MKJ"], re.escape("sequence] [1] [has] [J]")),
])
def test_the_saved_model_itself_refuses_bad_sequences_so_any_server_does(model_folder, sequences, message):
    folder, _ = model_folder
    signature = tf.saved_model.load(str(folder / "1")).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        signature(sequences=tf.constant(sequences, dtype=tf.string))


def test_concurrent_requests_are_batched_into_fewer_model_calls(model_folder):
    from concurrent.futures import ThreadPoolExecutor

    from serving.dev_server import DevServer

    folder, backbone = model_folder
    running = DevServer(str(folder), "protbert", port=0, host="127.0.0.1", batch_timeout_s=0.2).start()
    try:
        before = running.batcher.model_calls
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda s: stub(running).Predict(request([s]), timeout=30), PROTEINS * 4))
        calls = running.batcher.model_calls - before
    finally:
        running.stop()
    assert calls < len(responses)
    expected = embedding.embed_strings(backbone, tf.constant(PROTEINS))["protein_embeddings"].numpy()
    for index, response in enumerate(responses):  # each caller gets its own rows back
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["protein_embeddings"])[0],
                                   expected[index % len(PROTEINS)], atol=1e-5)


def test_the_client_retries_while_the_server_is_unavailable(model_folder):
    import socket

    from serving.client import EmbeddingClient
    from serving.dev_server import DevServer

    folder, _ = model_folder
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    servers = []
    starter = threading.Timer(1.0, lambda: servers.append(
        DevServer(str(folder), "protbert", port=port, host="127.0.0.1").start()))
    starter.start()
    try:
        with EmbeddingClient(f"127.0.0.1:{port}", "protbert", retries=8) as client:
            (result,) = client.embed(["MKTAYIAKQR"])  # sent before the server is up
        assert result.residues.shape == (10, 32)
    finally:
        starter.join()
        for server in servers:
            server.stop()


def test_the_development_server_listens_on_loopback_unless_opened():
    from serving.dev_server import parse_args

    assert parse_args(["--model-base-path", "m", "--model-name", "p"]).host == "127.0.0.1"
    assert parse_args(["--model-base-path", "m", "--model-name", "p", "--host", "0.0.0.0"]).host == "0.0.0.0"


def test_a_large_request_runs_in_batch_sized_parts_and_a_too_large_one_is_refused(model_folder):
    from serving.dev_server import DevServer

    folder, backbone = model_folder
    sequences = [PROTEINS[i % 3][: 5 + i] for i in range(20)]
    running = DevServer(str(folder), "protbert", port=0, max_batch_size=8, max_request_residues=400,
                        max_sequence_residues=100).start()
    try:
        calls = running.batcher.model_calls
        response = stub(running).Predict(request(sequences), timeout=60)
        assert running.batcher.model_calls - calls == 3  # 8 + 8 + 4: other callers interleave between parts
        expected = embedding.embed_strings(backbone, tf.constant(sequences))
        for name in ("residue_embeddings", "protein_embeddings"):
            np.testing.assert_allclose(tf.make_ndarray(response.outputs[name]), expected[name].numpy(), atol=1e-5)
        with pytest.raises(grpc.RpcError) as error:
            stub(running).Predict(request([PROTEINS[2]] * 7), timeout=60)  # 7 × 60 = 420 residues
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "420 residues in 7 sequences" in error.value.details()
        with pytest.raises(grpc.RpcError) as error:  # one sequence alone is bounded too
            stub(running).Predict(request(["M" * 101]), timeout=60)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "sequence 0 holds 101 characters; this server takes at most 100 per sequence" in error.value.details()
    finally:
        running.stop()


def test_the_server_speaks_tls_when_given_a_certificate(model_folder, tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from serving.client import EmbeddingClient
    from serving.dev_server import DevServer, check_key_pair

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                   .sign(key, hashes.SHA256()))
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    folder, _ = model_folder
    other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "other.key").write_bytes(other_key)
    with pytest.raises(ValueError, match="cert.pem and --tls-key .*other.key are not a certificate and its private "
                                         "key .*KEY_VALUES_MISMATCH"):
        check_key_pair(str(tmp_path / "cert.pem"), str(tmp_path / "other.key"))
    running = DevServer(str(folder), "protbert", port=0, tls=(pem, key_pem)).start()
    try:
        with EmbeddingClient(f"localhost:{running.port}", "protbert", tls_root_certificates=pem) as client:
            (result,) = client.embed(["MKTAYIAKQR"])
        assert result.residues.shape == (10, 32)
        with pytest.raises(grpc.RpcError):  # plaintext is not answered
            stub(running).Predict(request(["MKT"]), timeout=5)
    finally:
        running.stop()


def test_the_beam_job_writes_what_the_single_process_command_writes(model_folder, tmp_path, capsys):
    from serving import beam_embed, embed

    folder, _ = model_folder
    fasta = tmp_path / "in.fasta"
    _write_fasta(fasta, [("P1", PROTEINS[0]), ("P2", PROTEINS[1]), ("BAD", "MK1T"), ("P1", PROTEINS[2]),
                         ("LONG", "MKTAYIAKQR" * 20), ("a/b", PROTEINS[2])])
    with fasta.open("a") as handle:
        handle.write(">\nMKT\n>nul\x00id\nMKT\n")  # no id; an id an HDF5 name would cut at the NUL
    single, sharded = tmp_path / "single.h5", tmp_path / "sharded"
    flags = ["--saved-model", str(folder), "--per-residue", "--per-protein", "--float16"]
    assert embed.main([*flags, str(fasta), str(single)]) == 0
    assert embed.main([*flags, "--beam", "--num-shards", "6", str(fasta), str(sharded)]) == 0
    assert "read 8; embedded 4 into 6 shards; rejected 4" in capsys.readouterr().out  # empty shards are files too
    manifest = json.loads((sharded / "manifest.json").read_text())
    assert manifest["counts"] == {"read": 8, "embedded": 4, "rejected": 4, "reconciled": True, "rejected_by_reason": {
        "duplicate_id": 1, "illegal_characters": 1, "invalid_id": 1, "missing_id": 1}}
    assert sum(count for _, count in manifest["shards"]["embeddings"]) == 4
    assert sorted(path.name for path in sharded.glob("embeddings-*.h5")) == [
        f"embeddings-{shard:05d}-of-00006.h5" for shard in range(6)]
    beam_rejects = [json.loads(line) for path in manifest["shards"]["rejects"]
                    for line in (sharded / path).read_text().splitlines()]
    single_rejects = [json.loads(line) for line in Path(str(single) + ".rejects.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in beam_rejects) == sorted(r["id"] for r in single_rejects) == [
        "", "BAD", "P1", "nul\\x00id"]
    found = beam_embed.read_embeddings(str(sharded))
    with h5py.File(single) as handle:
        assert json.loads(handle.attrs["prottrans_embed"]) == manifest["prottrans_embed"]
        for kind in ("per_residue", "per_protein"):
            stored = {handle[kind][key].attrs["id"]: handle[kind][key][()] for key in handle[kind]}
            assert sorted(stored) == sorted(found) == ["LONG", "P1", "P2", "a/b"]
            for record_id, value in stored.items():
                assert found[record_id][kind].dtype == np.float16
                np.testing.assert_allclose(found[record_id][kind], value, atol=2e-3)
        digests = {handle["per_protein"][key].attrs["id"]: handle["per_protein"][key].attrs["sequence_sha256"]
                   for key in handle["per_protein"]}
    shard_digests = {}
    for shard in sharded.glob("embeddings-*.h5"):
        with h5py.File(shard) as handle:
            shard_digests.update({handle["per_protein"][key].attrs["id"]: handle["per_protein"][key].attrs[
                "sequence_sha256"] for key in handle["per_protein"]})
    assert shard_digests == digests  # what each entry was embedded from, as a resumed run checks it
    assert embed.main([*flags, "--beam", str(fasta), str(sharded)]) == 2  # a second run does not overwrite
    assert "already holds embeddings" in capsys.readouterr().err


def test_the_beam_job_refuses_a_saved_model_without_the_serving_signature_before_it_runs(tmp_path, capsys):
    from serving import embed

    module = tf.Module()
    module.f = tf.function(lambda x: x, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "other"), signatures={"serving_default": module.f})
    _write_fasta(tmp_path / "in.fasta", [("P1", PROTEINS[0])])
    out = tmp_path / "out"
    assert embed.main(["--saved-model", str(tmp_path / "other"), "--beam", str(tmp_path / "in.fasta"), str(out)]) == 2
    assert "no 'serving_default' signature taking 'sequences'" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_the_server_passes_sequences_through_so_the_model_owns_its_alphabet(tmp_path):
    from serving.client import EmbeddingClient
    from serving.dev_server import DevServer
    from tests.foreign_models import CompositionModel

    CompositionModel.export(tmp_path / "letters" / "1")  # one-hot of every letter A-Z, as typed: U is not X for it
    server = DevServer(str(tmp_path / "letters"), "letters", port=0).start()
    try:
        with EmbeddingClient(f"127.0.0.1:{server.port}", "letters") as client:
            [served] = client.embed(["mkUZJ"])
    finally:
        server.stop()
    assert "".join(chr(ord("A") + int(np.argmax(row))) for row in served.residues) == "MKUZJ"


def test_the_saved_model_embeds_3000_residues_in_windows_and_a_short_protein_as_without_them(model_folder):
    folder, backbone = model_folder
    signature = tf.saved_model.load(str(folder / "1")).signatures["serving_default"]
    outputs = signature(sequences=tf.constant(["MKTAYIAKQR" * 300, "MKT"]))
    assert outputs["residue_embeddings"].shape == (2, 3000, 32) and list(outputs["lengths"].numpy()) == [3000, 3]
    assert np.isfinite(outputs["residue_embeddings"].numpy()).all()
    from models import vocabulary

    alone = backbone(vocabulary.encode(tf.constant(["MKT"]))[0])  # [CLS] M K T [SEP] through the plain backbone
    np.testing.assert_allclose(outputs["residue_embeddings"][1, :3].numpy(), alone[0, 1:4].numpy(), atol=1e-5)
