"""`prottrans-serve`: a development gRPC server speaking TF Serving's API for our models.

FOR LOCAL DEVELOPMENT AND TESTS ONLY. Production serving is the stock ``tensorflow/serving`` image (see
docs/serving.md); its ``tensorflow_model_server`` binary is not in the package registries our machines reach, so this
server implements the parts of its protocol our clients use, from the ``tensorflow-serving-api`` protos:
``PredictionService.Predict`` and ``GetModelMetadata``, and ``ModelService.GetModelStatus``, over the same model
base path layout (``<base>/<version>/saved_model.pb``). Like TF Serving it polls the base path for new
versions, loads each (replaying its ``assets.extra/tf_serving_warmup_requests``) before switching to it, serves
the latest (or a version/label a request names), and batches concurrent Predict calls. Bad requests get
``INVALID_ARGUMENT`` naming the problem; the server keeps serving.
"""

from __future__ import annotations

import os

from beam_jobs.console import VERBOSE_FLAG, VERBOSE_HELP, quiet_start

quiet_start()  # before TensorFlow is imported

import argparse
import queue
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Sequence

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from beam_jobs.sequences import Reject, normalise
from models.export.signatures import INPUT, OUTPUTS, SIGNATURE, WARMUP_FILE, read_model_info


class BadRequest(ValueError):
    """A request the server refuses with INVALID_ARGUMENT."""


@dataclass
class LoadedVersion:
    version: int
    path: str
    signature: object
    signature_def: meta_graph_pb2.SignatureDef
    max_residues: int | None


def _load_version(path: str, version: int) -> LoadedVersion:
    signature = tf.saved_model.load(path).signatures[SIGNATURE]
    with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
        saved = saved_model_pb2.SavedModel.FromString(handle.read())
    info = read_model_info(path)
    loaded = LoadedVersion(version, path, signature, saved.meta_graphs[0].signature_def[SIGNATURE],
                           info["max_residues"] if info else None)
    warmup = os.path.join(path, "assets.extra", WARMUP_FILE)
    if os.path.exists(warmup):
        for record in tf.data.TFRecordDataset(warmup).as_numpy_iterator():
            request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            signature(sequences=tf.make_ndarray(request.inputs[INPUT]))
    return loaded


class ModelVersions:
    """The loaded versions of one model, refreshed from its base path."""

    def __init__(self, name: str, base_path: str, labels: dict[str, int] | None = None, keep: int = 1):
        self.name = name
        self.base_path = base_path
        self.labels = dict(labels or {})
        self.keep = keep  # newest versions kept loaded (labelled ones are kept too)
        self._versions: dict[int, LoadedVersion] = {}
        self._lock = threading.Lock()

    def available(self) -> dict[int, LoadedVersion]:
        with self._lock:
            return dict(self._versions)

    def refresh(self) -> list[int]:
        """Load versions that appeared (complete ones: ``saved_model.pb`` present), drop old ones; returns the
        versions loaded now."""
        on_disk = sorted(int(name) for name in os.listdir(self.base_path) if name.isdigit()
                         and os.path.exists(os.path.join(self.base_path, name, "saved_model.pb")))
        wanted = set(on_disk[-self.keep:]) | (set(self.labels.values()) & set(on_disk))
        loaded = []
        for version in sorted(wanted - set(self.available())):
            fresh = _load_version(os.path.join(self.base_path, str(version)), version)
            with self._lock:
                self._versions[version] = fresh
            loaded.append(version)
        with self._lock:  # requests holding an old version finish with it; new ones get the new latest
            for version in set(self._versions) - wanted:
                del self._versions[version]
        return loaded

    def resolve(self, version: int | None, label: str | None) -> LoadedVersion:
        versions = self.available()
        if label:
            if label not in self.labels:
                raise KeyError(f"model {self.name!r} has no version label {label!r}")
            version = self.labels[label]
        if version is None:
            if not versions:
                raise LookupError(f"model {self.name!r} has no version loaded yet")
            return versions[max(versions)]
        if version not in versions:
            raise KeyError(f"model {self.name!r} version {version} is not loaded (loaded: {sorted(versions)})")
        return versions[version]


@dataclass
class _Pending:
    model: LoadedVersion
    sequences: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict | None = None
    error: Exception | None = None


class Batcher:
    """Runs concurrent Predict calls of one version together: up to `max_batch_size` sequences, waiting at
    most `timeout_s` for company."""

    def __init__(self, max_batch_size: int = 32, timeout_s: float = 0.002):
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self.model_calls = 0  # batched calls of the model so far (for monitoring and tests)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="batcher")
        self._thread.start()

    def run(self, model: LoadedVersion, sequences: list[str]) -> dict:
        """The outputs for `sequences`. A request larger than a batch runs as batch-sized parts, one after another,
        so that other callers' requests interleave with it instead of waiting for all of it."""
        parts = []
        for start in range(0, len(sequences), self.max_batch_size):
            pending = _Pending(model, sequences[start : start + self.max_batch_size])
            self._queue.put(pending)
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            parts.append(pending.outputs)
        if len(parts) == 1:
            return parts[0]
        width = max(part["residue_embeddings"].shape[1] for part in parts)
        return {
            "residue_embeddings": np.concatenate([np.pad(part["residue_embeddings"],
                                                         ((0, 0), (0, width - part["residue_embeddings"].shape[1]),
                                                          (0, 0))) for part in parts]),
            "protein_embeddings": np.concatenate([part["protein_embeddings"] for part in parts]),
            "lengths": np.concatenate([part["lengths"] for part in parts]),
        }

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            group, size = [first], len(first.sequences)
            deadline = time.monotonic() + self.timeout_s
            leftovers = []
            while size < self.max_batch_size:
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if item.model is first.model and size + len(item.sequences) <= self.max_batch_size:
                    group.append(item)
                    size += len(item.sequences)
                else:
                    leftovers.append(item)
            for item in leftovers:
                self._queue.put(item)
            self.model_calls += 1
            self._run_group(group)

    @staticmethod
    def _run_group(group: list[_Pending]) -> None:
        try:
            batch = [sequence for item in group for sequence in item.sequences]
            outputs = {k: v.numpy() for k, v in group[0].model.signature(sequences=tf.constant(batch)).items()}
            start = 0
            for item in group:
                stop = start + len(item.sequences)
                lengths = outputs["lengths"][start:stop]
                width = int(lengths.max()) if len(lengths) else 0
                item.outputs = {
                    "residue_embeddings": outputs["residue_embeddings"][start:stop, :width],
                    "protein_embeddings": outputs["protein_embeddings"][start:stop],
                    "lengths": lengths,
                }
                start = stop
        except Exception as error:  # noqa: BLE001 — handed to each waiting request
            for item in group:
                item.error = error
        for item in group:
            item.done.set()


class TooLarge(ValueError):
    """A request the server refuses with RESOURCE_EXHAUSTED."""


def validate_sequences(tensor, max_residues: int | None, max_request_residues: int | None = None) -> list[str]:
    """The request's `sequences` input as normalised strings, or BadRequest naming the problem (TooLarge when the
    request holds more than `max_request_residues` residues in more than one sequence)."""
    from tensorflow.core.framework import types_pb2

    if tensor.dtype != types_pb2.DT_STRING:
        raise BadRequest(f"input {INPUT!r} must be DT_STRING (protein sequences), not "
                         f"{types_pb2.DataType.Name(tensor.dtype)}")
    dims = [d.size for d in tensor.tensor_shape.dim]
    if len(dims) != 1:
        raise BadRequest(f"input {INPUT!r} must be a vector [batch] of sequences, not shape {dims}")
    values = list(tensor.string_val)
    if dims[0] != len(values):
        raise BadRequest(f"input {INPUT!r} declares shape [{dims[0]}] but holds {len(values)} strings")
    if not values:
        raise BadRequest("empty batch: send at least one sequence")
    sequences = []
    for index, raw in enumerate(values):
        result = normalise(raw)
        if isinstance(result, Reject):
            raise BadRequest(f"sequence {index}: {result.detail or result.reason.replace('_', ' ')}")
        if max_residues is not None and len(result.sequence) > max_residues:
            raise BadRequest(f"sequence {index} has {len(result.sequence)} residues; this model takes at most "
                             f"{max_residues} (split it, or embed with chunking)")
        sequences.append(result.sequence.decode("ascii"))
    total = sum(map(len, sequences))
    if max_request_residues is not None and len(sequences) > 1 and total > max_request_residues:
        raise TooLarge(f"the request holds {total:,} residues in {len(sequences)} sequences; this server takes at "
                       f"most {max_request_residues:,} per request: send fewer sequences per request (the Python "
                       "client splits by residues_per_request)")
    return sequences


class _Service(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):

    def __init__(self, models: ModelVersions, batcher: Batcher, max_request_residues: int | None):
        self.models = models
        self.batcher = batcher
        self.max_request_residues = max_request_residues

    def _version(self, spec, context) -> LoadedVersion:
        if spec.name != self.models.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no model named {spec.name!r} (this server serves "
                                                     f"{self.models.name!r})")
        try:
            return self.models.resolve(spec.version.value if spec.HasField("version") else None,
                                       spec.version_label or None)
        except KeyError as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error.args[0]))
        except LookupError as error:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(error))

    def Predict(self, request, context):
        model = self._version(request.model_spec, context)
        if request.model_spec.signature_name not in ("", SIGNATURE):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no signature {request.model_spec.signature_name!r}; "
                                                            f"this model has {SIGNATURE!r}")
        unknown = set(request.inputs) - {INPUT}
        if unknown or INPUT not in request.inputs:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expected exactly one input {INPUT!r}, got "
                                                            f"{sorted(request.inputs)}")
        wanted = list(request.output_filter) or list(OUTPUTS)
        if set(wanted) - set(OUTPUTS):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown outputs {sorted(set(wanted) - set(OUTPUTS))}; "
                                                            f"outputs: {list(OUTPUTS)}")
        try:
            sequences = validate_sequences(request.inputs[INPUT], model.max_residues, self.max_request_residues)
            outputs = self.batcher.run(model, sequences)
        except BadRequest as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except TooLarge as error:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except tf.errors.InvalidArgumentError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message.split("\n")[0])
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.models.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = SIGNATURE
        for name in wanted:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(np.ascontiguousarray(outputs[name])))
        return response

    def GetModelMetadata(self, request, context):
        model = self._version(request.model_spec, context)
        if list(request.metadata_field) not in ([], ["signature_def"]):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "only metadata_field 'signature_def' is supported")
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signatures.signature_def[SIGNATURE].CopyFrom(model.signature_def)
        packed = any_pb2.Any()
        packed.Pack(signatures)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.models.name
        response.model_spec.version.value = model.version
        response.metadata["signature_def"].CopyFrom(packed)
        return response

    def GetModelStatus(self, request, context):
        if request.model_spec.name != self.models.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no model named {request.model_spec.name!r}")
        versions = self.models.available()
        if request.model_spec.HasField("version"):
            versions = {v: m for v, m in versions.items() if v == request.model_spec.version.value}
            if not versions:
                context.abort(grpc.StatusCode.NOT_FOUND, f"version {request.model_spec.version.value} not loaded")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(versions):
            response.model_version_status.add(version=version,
                                              state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
        return response


# Residues one request may hold (more than one sequence): a 200 × 1,000-residue request once took 3.2 GB.
MAX_REQUEST_RESIDUES = 131_072


class DevServer:
    """The server, started on `port` (0: any free port; see `.port`) of `host` (loopback unless opened), polling
    every `poll_s` seconds; with `tls` (certificate chain and private key, PEM bytes), over TLS only."""

    def __init__(self, model_base_path: str, model_name: str, port: int = 8500, host: str = "127.0.0.1",
                 poll_s: float = 1.0, max_batch_size: int = 32, batch_timeout_s: float = 0.002,
                 labels: dict[str, int] | None = None, workers: int = 16,
                 max_request_residues: int | None = MAX_REQUEST_RESIDUES, tls: tuple[bytes, bytes] | None = None):
        if not os.path.isdir(model_base_path):
            raise FileNotFoundError(f"model base path {model_base_path} does not exist")
        self.models = ModelVersions(model_name, model_base_path, labels)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                   options=[("grpc.max_send_message_length", 512 << 20),
                                            ("grpc.max_receive_message_length", 512 << 20)])
        self.batcher = Batcher(max_batch_size, batch_timeout_s)
        service = _Service(self.models, self.batcher, max_request_residues)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(service, self._server)
        if tls is None:
            self.port = self._server.add_insecure_port(f"{host}:{port}")
        else:
            certificate, key = tls
            self.port = self._server.add_secure_port(f"{host}:{port}",
                                                     grpc.ssl_server_credentials([(key, certificate)]))
        self._poller = threading.Thread(target=self._poll, daemon=True, name="version-poller")

    def start(self) -> "DevServer":
        self.models.refresh()
        self._server.start()
        self._poller.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                for version in self.models.refresh():
                    print(f"prottrans-serve: loaded {self.models.name} version {version}", flush=True)
            except Exception as error:  # noqa: BLE001 — a half-written or broken version must not stop serving
                print(f"prottrans-serve: could not load a new version: {error}", file=sys.stderr, flush=True)

    def stop(self, grace: float = 1.0) -> None:
        self._stop.set()
        self._server.stop(grace).wait()

    def wait(self) -> None:
        self._server.wait_for_termination()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prottrans-serve", description=__doc__.split("\n\n")[0])
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--model-base-path", required=True, help="folder of numbered SavedModel versions")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default: loopback only; 0.0.0.0 opens it to the network, where "
                        "authentication belongs in front of the server, as for TF Serving)")
    parser.add_argument("--tls-cert", metavar="PEM", help="certificate chain: serve over TLS (with --tls-key)")
    parser.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    parser.add_argument("--max-batch-size", type=int, default=32,
                        help="sequences per batched model call; larger requests run in parts of this size")
    parser.add_argument("--max-request-residues", type=int, default=MAX_REQUEST_RESIDUES,
                        help="residues one request may hold (a single sequence is always taken up to the model's "
                        "limit); larger requests get RESOURCE_EXHAUSTED")
    parser.add_argument("--batch-timeout-ms", type=float, default=2.0)
    parser.add_argument("--label", action="append", default=[], metavar="LABEL=VERSION",
                        help="a version label (repeatable), e.g. --label stable=3")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        labels = {label: int(version) for label, _, version in (item.partition("=") for item in args.label)}
        tls = None
        if args.tls_cert:
            with open(args.tls_cert, "rb") as certificate, open(args.tls_key, "rb") as key:
                tls = (certificate.read(), key.read())
        server = DevServer(args.model_base_path, args.model_name, args.port, args.host, args.poll_seconds,
                           args.max_batch_size, args.batch_timeout_ms / 1000, labels,
                           max_request_residues=args.max_request_residues, tls=tls).start()
    except (OSError, ValueError) as error:
        print(f"prottrans-serve: error: {error}", file=sys.stderr)
        return 2
    versions = sorted(server.models.available())
    print(f"prottrans-serve: serving {args.model_name} (versions {versions}) on {args.host}:{server.port}"
          f"{' over TLS' if tls else ''} "
          "— development server; use tensorflow/serving in production", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
