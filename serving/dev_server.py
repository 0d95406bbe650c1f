"""`prottrans-serve`: a development gRPC server speaking TF Serving's API for our models.

FOR LOCAL DEVELOPMENT AND TESTS ONLY. Production serving is the stock ``tensorflow/serving`` image (see
docs/serving.md); its ``tensorflow_model_server`` binary is not in the package registries our machines reach, so this
server implements the parts of its protocol our clients use, from the ``tensorflow-serving-api`` protos:
``PredictionService.Predict`` and ``GetModelMetadata``, and ``ModelService.GetModelStatus``, over the same model
base path layout (``<base>/<version>/saved_model.pb``). Like TF Serving it polls the base path for new
versions, loads each (replaying its ``assets.extra/tf_serving_warmup_requests``) before switching to it, serves
the latest (or a version/label a request names), and batches concurrent Predict calls. Every signature that
takes ``sequences`` (and, for ``masked_marginals``, ``positions``) is served. Bad requests get
``INVALID_ARGUMENT`` naming the problem; the server keeps serving.
"""

from __future__ import annotations

import os

from beam_jobs.console import VERBOSE_FLAG, VERBOSE_HELP, guarded, quiet_start, real_number, whole_number

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
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from models.export.signatures import INPUT, SIGNATURE, WARMUP_FILE, signature_defs
from models.objectives.scoring import POSITIONS
from serving.model_input import model_error
from serving.server_config import MAX_MESSAGE_BYTES, grpc_message_options


class BadRequest(ValueError):
    """A request the server refuses with INVALID_ARGUMENT."""


@dataclass
class LoadedVersion:
    """One loaded SavedModel version: its signatures that take `sequences` strings (and perhaps `positions`), by
    name."""

    version: int
    path: str
    signatures: dict[str, object]
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    residue_outputs: dict[str, set[str]]  # per signature: outputs with a residue axis (shape [batch, length, ...])


def _load_version(path: str, version: int) -> LoadedVersion:
    functions = tf.saved_model.load(path).signatures
    definitions = {name: definition for name, definition in signature_defs(path).items()
                   if INPUT in definition.inputs and set(definition.inputs) <= {INPUT, POSITIONS}
                   and name in functions}
    if SIGNATURE not in definitions:
        raise ValueError(f"{path}: no {SIGNATURE!r} signature taking {INPUT!r} strings")
    residue_outputs = {name: {output for output, info in definition.outputs.items()
                              if len(info.tensor_shape.dim) >= 2 and info.tensor_shape.dim[1].size == -1}
                       for name, definition in definitions.items()}
    loaded = LoadedVersion(version, path, {name: functions[name] for name in definitions}, definitions,
                           residue_outputs)
    warmup = os.path.join(path, "assets.extra", WARMUP_FILE)
    if os.path.exists(warmup):
        for number, record in enumerate(tf.data.TFRecordDataset(warmup).as_numpy_iterator(), 1):
            request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            name = request.model_spec.signature_name or SIGNATURE
            if name in loaded.signatures:
                try:
                    loaded.signatures[name](sequences=tf.make_ndarray(request.inputs[INPUT]))
                except tf.errors.InvalidArgumentError as error:  # as TF Serving, a version that fails it is not served
                    raise ValueError(f"{path}: not loaded: the model refused its warm-up request {number} "
                                     f"({WARMUP_FILE}): {model_error(error)}") from None
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
    signature: str
    sequences: list[bytes]
    positions: np.ndarray | None = None  # a request with positions runs alone (its own columns)
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict | None = None
    error: Exception | None = None


class Batcher:
    """Runs concurrent Predict calls of one version and signature together: up to `max_batch_size` sequences,
    waiting at most `timeout_s` for company."""

    def __init__(self, max_batch_size: int = 32, timeout_s: float = 0.002):
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self.model_calls = 0  # batched calls of the model so far (for monitoring and tests)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="batcher")
        self._thread.start()

    def run(self, model: LoadedVersion, signature: str, sequences: list[bytes],
            positions: np.ndarray | None = None) -> dict:
        """The outputs of `signature` for `sequences` (and `positions`, one row per sequence). A request larger than
        a batch runs as batch-sized parts, one after another, so that other callers' requests interleave with it
        instead of waiting for all of it."""
        parts = []
        for start in range(0, len(sequences), self.max_batch_size):
            stop = start + self.max_batch_size
            pending = _Pending(model, signature, sequences[start:stop],
                               None if positions is None else positions[start:stop])
            self._queue.put(pending)
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            parts.append(pending.outputs)
        if len(parts) == 1:
            return parts[0]
        residue_outputs = model.residue_outputs[signature]
        return {name: np.concatenate([_padded(part[name], max(p[name].shape[1] for p in parts))
                                      if name in residue_outputs else part[name] for part in parts])
                for name in parts[0]}

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
                if (item.model is first.model and item.signature == first.signature
                        and first.positions is None and item.positions is None
                        and size + len(item.sequences) <= self.max_batch_size):
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
            model, signature = group[0].model, group[0].signature
            batch = [sequence for item in group for sequence in item.sequences]
            inputs = {INPUT: tf.constant(batch)}
            if group[0].positions is not None:
                inputs[POSITIONS] = tf.constant(group[0].positions, tf.int32)
            outputs = {k: v.numpy() for k, v in model.signatures[signature](**inputs).items()}
            start = 0
            for item in group:
                stop = start + len(item.sequences)
                # Each request's residue outputs are as wide as its own longest sequence, not the batch's.
                width = int(outputs["lengths"][start:stop].max()) if "lengths" in outputs else None
                item.outputs = {name: value[start:stop, :width] if name in model.residue_outputs[signature]
                                else value[start:stop] for name, value in outputs.items()}
                start = stop
        except Exception as error:  # noqa: BLE001 — handed to each waiting request
            for item in group:
                item.error = error
        for item in group:
            item.done.set()


def _padded(value: np.ndarray, width: int) -> np.ndarray:
    """`value` ``[batch, length, ...]`` padded along its residue axis to `width` (zeros; empty strings)."""
    padding = [(0, 0), (0, width - value.shape[1])] + [(0, 0)] * (value.ndim - 2)
    return np.pad(value, padding, constant_values=b"" if value.dtype == object else 0)


class TooLarge(ValueError):
    """A request the server refuses with RESOURCE_EXHAUSTED."""


def transported_sequences(tensor, max_request_residues: int | None = None,
                          max_sequence_residues: int | None = None) -> list[bytes]:
    """The request's `sequences` input as the strings sent, after the transport-level checks (type, shape, sizes):
    BadRequest naming the problem, TooLarge when more than one sequence holds more than `max_request_residues`
    characters or one sequence more than `max_sequence_residues`. What is a residue is the model's to decide: its
    graph normalises and refuses."""
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
    longest = max(range(len(values)), key=lambda index: len(values[index]))
    if max_sequence_residues is not None and len(values[longest]) > max_sequence_residues:
        raise TooLarge(f"sequence {longest} holds {len(values[longest]):,} characters; this server takes at most "
                       f"{max_sequence_residues:,} per sequence (prottrans-serve --max-sequence-residues)")
    total = sum(map(len, values))
    if max_request_residues is not None and len(values) > 1 and total > max_request_residues:
        raise TooLarge(f"the request holds {total:,} residues in {len(values)} sequences; this server takes at "
                       f"most {max_request_residues:,} per request: send fewer sequences per request (the Python "
                       "client splits by residues_per_request)")
    return values


def transported_positions(tensor, sequences: list[bytes], max_request_residues: int | None = None) -> np.ndarray:
    """The request's `positions` input (int32 ``[batch, n]``, one row per sequence) after the transport checks.
    Each position asked is one more pass over its sequence, so the residue cap counts the masked copies: TooLarge
    when they add up past `max_request_residues`, unless the request is one copy of one sequence."""
    from tensorflow.core.framework import types_pb2

    if tensor.dtype != types_pb2.DT_INT32:
        raise BadRequest(f"input {POSITIONS!r} must be DT_INT32 (1-based residue positions), not "
                         f"{types_pb2.DataType.Name(tensor.dtype)}")
    positions = tf.make_ndarray(tensor)
    if positions.ndim != 2 or positions.shape[0] != len(sequences):
        raise BadRequest(f"input {POSITIONS!r} must be [batch, n] with one row per sequence ({len(sequences)}), not "
                         f"shape {list(positions.shape)}")
    copies = [len(sequence) if positions.shape[1] == 0 else int(np.count_nonzero(row))
              for sequence, row in zip(sequences, positions)]
    total = sum(count * len(sequence) for count, sequence in zip(copies, sequences))
    if max_request_residues is not None and sum(copies) > 1 and total > max_request_residues:
        raise TooLarge(f"the request masks {sum(copies):,} copies holding {total:,} residues in all; this server "
                       f"takes at most {max_request_residues:,} per request: ask fewer positions or sequences per "
                       "request")
    return positions


class _Service(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):

    def __init__(self, models: ModelVersions, batcher: Batcher, max_request_residues: int | None,
                 max_message_bytes: int, max_sequence_residues: int | None = None):
        self.models = models
        self.batcher = batcher
        self.max_request_residues, self.max_sequence_residues = max_request_residues, max_sequence_residues
        self.max_message_bytes = max_message_bytes

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
        signature = request.model_spec.signature_name or SIGNATURE
        if signature not in model.signatures:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no signature {signature!r}; this model has "
                                                            f"{sorted(model.signatures)}")
        expected_inputs = set(model.signature_defs[signature].inputs)
        if set(request.inputs) != expected_inputs:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{signature!r} takes the inputs "
                                                            f"{sorted(expected_inputs)}, got {sorted(request.inputs)}")
        outputs_of_signature = list(model.signature_defs[signature].outputs)
        wanted = list(request.output_filter) or outputs_of_signature
        if set(wanted) - set(outputs_of_signature):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unknown outputs {sorted(set(wanted) - set(outputs_of_signature))}; outputs of "
                          f"{signature!r}: {sorted(outputs_of_signature)}")
        try:
            positions = None
            if POSITIONS in request.inputs:
                sequences = transported_sequences(request.inputs[INPUT],
                                                  max_sequence_residues=self.max_sequence_residues)
                positions = transported_positions(request.inputs[POSITIONS], sequences, self.max_request_residues)
            else:
                sequences = transported_sequences(request.inputs[INPUT], self.max_request_residues,
                                                  self.max_sequence_residues)
            outputs = self.batcher.run(model, signature, sequences, positions)
        except BadRequest as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except TooLarge as error:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except tf.errors.InvalidArgumentError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, model_error(error))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.models.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = signature
        for name in wanted:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(np.ascontiguousarray(outputs[name])))
        size = response.ByteSize()
        if size > self.max_message_bytes:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"the response would be {size / 2**20:,.1f} MiB, over this server's message limit of "
                          f"{self.max_message_bytes / 2**20:,.0f} MiB: send fewer or shorter sequences per request, "
                          f"ask only the outputs you need (output_filter), or the float16 signature")
        return response

    def GetModelMetadata(self, request, context):
        model = self._version(request.model_spec, context)
        if list(request.metadata_field) not in ([], ["signature_def"]):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "only metadata_field 'signature_def' is supported")
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name, definition in model.signature_defs.items():
            signatures.signature_def[name].CopyFrom(definition)
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
# Residues of one sequence: titin (34,350) and the preprocessing job's default --max-length pass; one unbounded
# sequence once took the server to 4 GB.
MAX_SEQUENCE_RESIDUES = 40_000


class DevServer:
    """The server, started on `port` (0: any free port; see `.port`) of `host` (loopback unless opened), polling
    every `poll_s` seconds; with `tls` (certificate chain and private key, PEM bytes), over TLS only. It serves every
    signature of a version that takes `sequences` (``serving_default``, ``serving_float16``, ``predict``, and the
    head's: ``wildtype_marginals``, ``masked_marginals`` with its ``positions``, ``log_likelihood``)."""

    def __init__(self, model_base_path: str, model_name: str, port: int = 8500, host: str = "127.0.0.1",
                 poll_s: float = 1.0, max_batch_size: int = 32, batch_timeout_s: float = 0.002,
                 labels: dict[str, int] | None = None, workers: int = 16,
                 max_request_residues: int | None = MAX_REQUEST_RESIDUES, tls: tuple[bytes, bytes] | None = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, max_sequence_residues: int | None = MAX_SEQUENCE_RESIDUES):
        if not os.path.isdir(model_base_path):
            raise FileNotFoundError(f"model base path {model_base_path} does not exist")
        self.models = ModelVersions(model_name, model_base_path, labels)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                   options=grpc_message_options(max_message_bytes))
        self.batcher = Batcher(max_batch_size, batch_timeout_s)
        service = _Service(self.models, self.batcher, max_request_residues, max_message_bytes, max_sequence_residues)
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
    parser.add_argument("--port", type=whole_number(0, 65535), default=8500)
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default: loopback only; 0.0.0.0 opens it to the network, where "
                        "authentication belongs in front of the server, as for TF Serving)")
    parser.add_argument("--tls-cert", metavar="PEM", help="certificate chain: serve over TLS (with --tls-key)")
    parser.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    parser.add_argument("--poll-seconds", type=real_number(0, above_minimum=True), default=1.0,
                        help="how often to look for new versions")
    parser.add_argument("--max-batch-size", type=whole_number(1), default=32,
                        help="sequences per batched model call; larger requests run in parts of this size")
    parser.add_argument("--max-request-residues", type=whole_number(1), default=MAX_REQUEST_RESIDUES,
                        help="residues one request may hold (a single sequence is always taken); larger requests get "
                        "RESOURCE_EXHAUSTED")
    parser.add_argument("--max-sequence-residues", type=whole_number(1), default=MAX_SEQUENCE_RESIDUES,
                        help="residues one sequence may hold (titin has 34,350); a longer one gets RESOURCE_EXHAUSTED")
    parser.add_argument("--max-message-mib", type=whole_number(1, 2047), default=MAX_MESSAGE_BYTES >> 20,
                        help="largest gRPC message received or sent; a larger response gets RESOURCE_EXHAUSTED")
    parser.add_argument("--batch-timeout-ms", type=real_number(0), default=2.0)
    parser.add_argument("--label", action="append", default=[], metavar="LABEL=VERSION",
                        help="a version label (repeatable), e.g. --label stable=3")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("prottrans-serve", lambda: _main(argv), argv)


def check_key_pair(certificate: str, key: str) -> None:
    """ValueError naming both files unless they are a PEM certificate chain and its private key (gRPC's own
    failure says only "Failed to bind")."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certificate, key)
    except ssl.SSLError as error:
        raise ValueError(f"--tls-cert {certificate} and --tls-key {key} are not a certificate and its private key "
                         f"({error.reason or error})") from None


def _main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        labels = {label: int(version) for label, _, version in (item.partition("=") for item in args.label)}
        tls = None
        if args.tls_cert:
            with open(args.tls_cert, "rb") as certificate, open(args.tls_key, "rb") as key:
                tls = (certificate.read(), key.read())
            check_key_pair(args.tls_cert, args.tls_key)
        server = DevServer(args.model_base_path, args.model_name, args.port, args.host, args.poll_seconds,
                           args.max_batch_size, args.batch_timeout_ms / 1000, labels,
                           max_request_residues=args.max_request_residues, tls=tls,
                           max_message_bytes=args.max_message_mib << 20,
                           max_sequence_residues=args.max_sequence_residues).start()
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
