"""The `--strategy` flag: from a laptop's default strategy to a TPU pod, by name."""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """`default`: no distribution; `one_device`: the first GPU (else the CPU); `mirrored`: all local GPUs;
    `multi_worker`: MultiWorkerMirroredStrategy over the cluster in ``TF_CONFIG``; `tpu`: the TPU named by
    `tpu` (or found by the environment, e.g. a Cloud TPU VM)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes summaries, exports and the real checkpoints: the `chief` task, or worker 0
    of a cluster without one (TF's convention); a single process always is."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster or resolver.task_type == "chief":
        return True
    return "chief" not in cluster and resolver.task_type == "worker" and resolver.task_id == 0
