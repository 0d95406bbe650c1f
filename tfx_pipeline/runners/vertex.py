"""Vertex AI Pipelines: compile the same pipeline to a KFP v2 JSON spec, and submit it."""

from __future__ import annotations

import dataclasses

from tfx import v1 as tfx
from tfx.extensions.google_cloud_ai_platform import constants
from tfx.extensions.google_cloud_ai_platform.trainer import executor

from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.pipeline import create_pipeline


def compile_spec(config: PipelineConfig) -> str:
    """Write the pipeline spec to `config.vertex.spec_file`; returns its path. Components run in
    `config.vertex.image`, which holds this repository (see the Dockerfile)."""
    if not config.vertex.image:
        raise ValueError("vertex.image (the pipeline image built from this repository's Dockerfile) is required")
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=config.vertex.image),
        output_filename=config.vertex.spec_file,
    )
    runner.run(create_pipeline(with_pool_strategy(config), "vertex", vertex_job(config)))
    return config.vertex.spec_file


def submit(config: PipelineConfig, spec_file: str) -> str:
    """Submit a compiled spec as a Vertex AI PipelineJob (caching on); returns the job's resource name."""
    from google.cloud import aiplatform

    if not config.vertex.project:
        raise ValueError("vertex.project is required to submit")
    aiplatform.init(project=config.vertex.project, location=config.vertex.region)
    job = aiplatform.PipelineJob(
        display_name=config.pipeline_name, template_path=spec_file,
        pipeline_root=config.pipeline_root("vertex"), enable_caching=True,
    )
    job.submit(service_account=config.vertex.service_account or None)
    return job.resource_name


def vertex_job(config: PipelineConfig) -> dict:
    """Vertex custom-job settings for `tfx.extensions.google_cloud_ai_platform.Trainer`."""
    vertex = config.vertex
    machine = {"machine_type": vertex.machine_type}
    if vertex.accelerator_type:
        machine.update(accelerator_type=vertex.accelerator_type, accelerator_count=vertex.accelerator_count)
    container = {"image_uri": vertex.image}
    pools = [{"machine_spec": machine, "replica_count": 1, "container_spec": container}]
    if vertex.trainer == "gpu" and vertex.replica_count > 1:
        pools.append({"machine_spec": machine, "replica_count": vertex.replica_count - 1, "container_spec": container})
    job = {"project": vertex.project, "worker_pool_specs": pools}
    if vertex.service_account:
        job["service_account"] = vertex.service_account
    return {constants.ENABLE_VERTEX_KEY: True, constants.VERTEX_REGION_KEY: vertex.region,
            executor.TRAINING_ARGS_KEY: job}


def with_pool_strategy(config: PipelineConfig) -> PipelineConfig:
    """The config with the strategy the trainer pool needs: multi-worker GPU pools MultiWorkerMirroredStrategy
    (Vertex sets TF_CONFIG), one GPU machine MirroredStrategy, a TPU VM TPUStrategy on the local TPU."""
    vertex, training = config.vertex, config.training
    if vertex.trainer == "gpu":
        training = dataclasses.replace(training, strategy="multi_worker" if vertex.replica_count > 1 else "mirrored")
    elif vertex.trainer == "tpu":
        training = dataclasses.replace(training, strategy="tpu", tpu="local")
    return dataclasses.replace(config, training=training)
