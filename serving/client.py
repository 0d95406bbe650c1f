"""A typed client for embeddings from TF Serving (or `prottrans-serve`) over gRPC: `PredictionServiceStub` with
deadlines, retries on UNAVAILABLE, optional TLS, requests cut by a residue budget and sent concurrently."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from models.export.embedding import ProteinEmbedding, join_pieces, length_batches, split_long, unpad
from models.export.signatures import INPUT, SIGNATURE

RETRIED = (grpc.StatusCode.UNAVAILABLE,)


class EmbeddingClient:
    """Embeddings of sequences from the model `model_name` at `target` (``host:port``).

    `max_residues`, when given, is the model's limit: longer sequences are embedded in pieces (their residue
    embeddings concatenated, the protein vector their mean); otherwise the server refuses them. An
    :class:`~models.export.embedders.Embedder`: its identity names the server, model and version asked for (a
    server that swaps its latest version is not seen: pin `version` for caches).
    """

    def __init__(self, target: str, model_name: str, *, timeout_s: float = 60.0, retries: int = 5,
                 residues_per_request: int = 16384, concurrency: int = 4, max_residues: int | None = None,
                 tls_root_certificates: bytes | None = None, version: int | None = None,
                 version_label: str | None = None):
        self.model_name = model_name
        self.name = f"{target}/{model_name}"
        self.identity = f"grpc:{target}/{model_name}/{version or version_label or 'latest'}"
        self.timeout_s = timeout_s
        self.retries = retries
        self.residues_per_request = residues_per_request
        self.max_residues = max_residues
        self.version = version
        self.version_label = version_label
        options = [("grpc.max_send_message_length", 512 << 20), ("grpc.max_receive_message_length", 512 << 20)]
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
        then names it."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._name_model(request.model_spec)
        response = self._stub.GetModelMetadata(request, timeout=self.timeout_s)
        self.version, self.version_label = response.model_spec.version.value, None
        self.identity = f"grpc:{self.name}/{self.version}"
        return self.version

    def request(self, sequences: Sequence[str]) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        self._name_model(request.model_spec)
        request.model_spec.signature_name = SIGNATURE
        request.inputs[INPUT].CopyFrom(tf.make_tensor_proto(list(sequences), dtype=tf.string))
        return request

    def predict(self, sequences: Sequence[str]) -> dict[str, np.ndarray]:
        """One Predict call (retried on UNAVAILABLE with backoff); the raw signature outputs."""
        request = self.request(sequences)
        for attempt in range(self.retries + 1):
            try:
                response = self._stub.Predict(request, timeout=self.timeout_s)
                return {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}
            except grpc.RpcError as error:
                if error.code() not in RETRIED or attempt == self.retries:
                    raise
                time.sleep(min(0.1 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    def embed(self, sequences: Sequence[str]) -> list[ProteinEmbedding]:
        """Embeddings of each sequence, in input order."""
        pieces, pieces_of = split_long(sequences, self.max_residues)
        batches = length_batches([len(p) for p in pieces], self.residues_per_request)
        embedded: list[ProteinEmbedding | None] = [None] * len(pieces)

        def run(batch: list[int]) -> None:
            for index, result in zip(batch, unpad(self.predict([pieces[i] for i in batch]))):
                embedded[index] = result

        for future in [self._pool.submit(run, batch) for batch in batches]:
            future.result()
        return join_pieces(embedded, pieces_of)

