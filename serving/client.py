"""A typed client for embeddings from TF Serving (or `prottrans-serve`) over gRPC: `PredictionServiceStub` with
deadlines, retries on UNAVAILABLE, optional TLS, requests cut by a residue budget and by the size of their
responses, sent concurrently."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from models.export.embedding import SPECIAL_TOKENS_PER_SEQUENCE, ProteinEmbedding, join_pieces, length_batches, \
    split_long, unpad
from models.export.signatures import INPUT, OUTPUTS, SIGNATURE, SIGNATURE_FLOAT16
from serving.server_config import MAX_MESSAGE_BYTES, grpc_message_options

RETRIED = (grpc.StatusCode.UNAVAILABLE,)


class EmbeddingClient:
    """Embeddings of sequences from the model `model_name` at `target` (``host:port``).

    `max_residues`, when given, is the limit of a model that does not window long sequences itself: longer ones
    are embedded in pieces (their residue embeddings concatenated, the protein vector their mean). Requests hold
    at most `residues_per_request` residues and, where residue embeddings are asked for, responses of about
    `response_bytes` at most; without `per_residue` only the protein vectors travel (residues then come back as
    ``[length, 0]`` arrays), and `residue_dtype` float16 asks the model's ``serving_float16`` signature (half the
    bytes). An :class:`~models.export.embedders.Embedder`: its identity names the server, model and version asked
    for (a server that swaps its latest version is not seen: pin `version` for caches).
    """

    def __init__(self, target: str, model_name: str, *, timeout_s: float = 60.0, retries: int = 5,
                 residues_per_request: int = 16384, concurrency: int = 4, max_residues: int | None = None,
                 tls_root_certificates: bytes | None = None, version: int | None = None,
                 version_label: str | None = None, per_residue: bool = True, residue_dtype: str = "float32",
                 response_bytes: int = 64 << 20, max_message_bytes: int = MAX_MESSAGE_BYTES):
        if residue_dtype not in ("float32", "float16"):
            raise ValueError(f"residue_dtype must be float32 or float16, not {residue_dtype!r}")
        self.model_name = model_name
        self.name = f"{target}/{model_name}"
        self.identity = f"grpc:{target}/{model_name}/{version or version_label or 'latest'}"
        self.timeout_s = timeout_s
        self.retries = retries
        self.residues_per_request = residues_per_request
        self.max_residues = max_residues
        self.version = version
        self.version_label = version_label
        self.per_residue = per_residue
        self.signature = SIGNATURE_FLOAT16 if residue_dtype == "float16" else SIGNATURE
        self.residue_bytes = np.dtype(residue_dtype).itemsize
        self.response_bytes = min(response_bytes, max_message_bytes)
        self.max_message_bytes = max_message_bytes
        self._hidden_dim: int | None = None
        self.signature_names: list[str] = []  # the served version's signatures, known after pin_version()
        self.requests_sent = 0
        options = grpc_message_options(max_message_bytes)
        if tls_root_certificates is not None:
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(tls_root_certificates), options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._pool = ThreadPoolExecutor(max_workers=concurrency)

    def close(self) -> None:
        self._pool.shutdown()
        self._channel.close()

    def __enter__(self) -> "EmbeddingClient":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _name_model(self, spec) -> None:
        """Fill a request's ModelSpec: the model, and the version or label asked for (none: the latest)."""
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label:
            spec.version_label = self.version_label

    def pin_version(self) -> int:
        """Ask the server which version it serves now (for the version or label asked for) and ask for that one
        from here on, so that a version swapped in later is not mixed into this client's answers; the identity
        then names it, and `signature_names` what it serves."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._name_model(request.model_spec)
        response = self._stub.GetModelMetadata(request, timeout=self.timeout_s)
        self.version, self.version_label = response.model_spec.version.value, None
        self.identity = f"grpc:{self.name}/{self.version}"
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        self.signature_names = sorted(signatures.signature_def)
        return self.version

    def request(self, sequences: Sequence[str], signature: str = SIGNATURE, outputs: Sequence[str] = (),
                inputs: Mapping[str, np.ndarray] | None = None) -> predict_pb2.PredictRequest:
        """A PredictRequest of `signature` for `sequences` (and the signature's other `inputs`, such as
        ``positions``), asking only `outputs` (all when empty)."""
        request = predict_pb2.PredictRequest()
        self._name_model(request.model_spec)
        request.model_spec.signature_name = signature
        request.inputs[INPUT].CopyFrom(tf.make_tensor_proto(list(sequences), dtype=tf.string))
        for name, value in (inputs or {}).items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        request.output_filter.extend(outputs)
        return request

    def predict(self, sequences: Sequence[str], signature: str = SIGNATURE, outputs: Sequence[str] = (),
                inputs: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """One Predict call (retried on UNAVAILABLE with backoff); the raw signature outputs."""
        request = self.request(sequences, signature, outputs, inputs)
        for attempt in range(self.retries + 1):
            try:
                response = self._stub.Predict(request, timeout=self.timeout_s)
                self.requests_sent += 1
                return {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}
            except grpc.RpcError as error:
                if error.code() not in RETRIED or attempt == self.retries:
                    raise
                time.sleep(min(0.1 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    def hidden_dim(self) -> int:
        """The model's embedding width, asked once (a one-residue request for the protein vector)."""
        if self._hidden_dim is None:
            self._hidden_dim = int(self.predict(["M"], outputs=["protein_embeddings"])["protein_embeddings"].shape[1])
        return self._hidden_dim

    def embed(self, sequences: Sequence[str]) -> list[ProteinEmbedding]:
        """Embeddings of each sequence, in input order."""
        pieces, pieces_of = split_long(sequences, self.max_residues)
        budget = self.residues_per_request
        outputs = list(OUTPUTS) if self.per_residue else ["protein_embeddings", "lengths"]
        if self.per_residue:
            bytes_per_residue = self.hidden_dim() * self.residue_bytes
            longest = max((len(piece) for piece in pieces), default=0)
            if longest * bytes_per_residue > self.max_message_bytes * 0.9:
                raise ValueError(
                    f"a sequence of {longest:,} residues has residue embeddings of about "
                    f"{longest * bytes_per_residue / 2**20:,.0f} MiB, over the {self.max_message_bytes / 2**20:,.0f} "
                    "MiB message limit: ask float16 residue embeddings, protein vectors only, or a higher limit")
            # A response is as wide as its longest sequence: the token budget bounds its bytes too.
            budget = min(budget, max(self.response_bytes // bytes_per_residue, 1) + SPECIAL_TOKENS_PER_SEQUENCE)
        batches = length_batches([len(p) for p in pieces], budget)
        embedded: list[ProteinEmbedding | None] = [None] * len(pieces)

        def run(batch: list[int]) -> None:
            response = self.predict([pieces[i] for i in batch], self.signature, outputs)
            for index, result in zip(batch, unpad(response)):
                embedded[index] = result

        for future in [self._pool.submit(run, batch) for batch in batches]:
            future.result()
        return join_pieces(embedded, pieces_of)
