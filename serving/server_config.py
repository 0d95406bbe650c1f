"""Files the stock `tensorflow/serving` server reads: ``models.config`` (several models, version labels), the
batching parameters and the monitoring config, written beside the model folders of a serving root."""

from __future__ import annotations

import os

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

# The largest gRPC message the client, the development server and the stock server (its
# `--grpc_channel_arguments` in serving/deploy/) accept. A 1,000-residue protein at width 1024 in float32 is 4 MiB,
# gRPC's default limit; the client cuts its requests so each response stays well under this (see client.py).
MAX_MESSAGE_BYTES = 256 << 20


def grpc_message_options(limit: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """gRPC channel/server options that let messages up to `limit` bytes through, both ways."""
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def grpc_channel_arguments(limit: int = MAX_MESSAGE_BYTES) -> str:
    """The same limits as `tensorflow_model_server --grpc_channel_arguments` takes them."""
    return ",".join(f"{name}={value}" for name, value in grpc_message_options(limit))


MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
MONITORING_CONFIG = "monitoring.config"


def models_config(models: dict[str, dict[str, int]], base_path: str) -> str:
    """``models.config`` text for `models` (name → {label: version}); each model serves its latest version and
    any labelled ones, from ``<base_path>/<name>``."""
    config = model_server_config_pb2.ModelServerConfig()
    for name, labels in sorted(models.items()):
        model = config.model_config_list.config.add(name=name, base_path=f"{base_path.rstrip('/')}/{name}",
                                                    model_platform="tensorflow")
        if labels:
            model.model_version_policy.specific.versions.extend(sorted(set(labels.values())))
            for label, version in sorted(labels.items()):
                model.version_labels[label] = version
    return text_format.MessageToString(config)


def batching_config(max_batch_size: int = 32, batch_timeout_micros: int = 2000, num_batch_threads: int = 4,
                    max_enqueued_batches: int = 100) -> str:
    """``--batching_parameters_file`` text: server-side batching of concurrent Predict calls. Requests of
    different lengths are padded to the longest in a batch (``pad_variable_length_inputs``)."""
    return (f"max_batch_size {{ value: {max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {batch_timeout_micros} }}\n"
            f"num_batch_threads {{ value: {num_batch_threads} }}\n"
            f"max_enqueued_batches {{ value: {max_enqueued_batches} }}\n"
            "pad_variable_length_inputs: true\n")


def monitoring_config(path: str = "/monitoring/prometheus/metrics") -> str:
    """``--monitoring_config_file`` text: Prometheus metrics on the REST port."""
    return f'prometheus_config {{\n  enable: true\n  path: "{path}"\n}}\n'


def write_server_configs(serving_root: str, models: dict[str, dict[str, int]], container_root: str = "/models") -> dict:
    """Write the three files into `serving_root`; model base paths are as the server sees them
    (`container_root`, where the root is mounted in the container). Returns {file kind: path}."""
    os.makedirs(serving_root, exist_ok=True)
    files = {
        MODELS_CONFIG: models_config(models, container_root),
        BATCHING_CONFIG: batching_config(),
        MONITORING_CONFIG: monitoring_config(),
    }
    written = {}
    for name, text in files.items():
        path = os.path.join(serving_root, name)
        with open(path, "w") as handle:
            handle.write(text)
        written[name] = path
    return written


def main(argv=None) -> int:
    """``python -m serving.server_config --serving-root DIR --model NAME [--label NAME:LABEL=VERSION]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m serving.server_config", description=__doc__.split("\n")[0])
    parser.add_argument("--serving-root", required=True, help="folder holding <model_name>/<version>/ folders")
    parser.add_argument("--model", action="append", required=True, help="model name (repeatable)")
    parser.add_argument("--label", action="append", default=[], metavar="MODEL:LABEL=VERSION")
    parser.add_argument("--container-root", default="/models", help="where the server sees the serving root")
    args = parser.parse_args(argv)
    models: dict[str, dict[str, int]] = {name: {} for name in args.model}
    for item in args.label:
        model, _, rest = item.partition(":")
        label, _, version = rest.partition("=")
        if model not in models or not label or not version.isdigit():
            parser.error(f"--label {item!r}: expected MODEL:LABEL=VERSION for a --model")
        models[model][label] = int(version)
    for kind, path in write_server_configs(args.serving_root, models, args.container_root).items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
