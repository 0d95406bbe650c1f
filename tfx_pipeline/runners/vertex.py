"""Vertex AI Pipelines: compile the same pipeline to a KFP v2 JSON spec, and submit it."""

from __future__ import annotations

from tfx import v1 as tfx

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
    runner.run(create_pipeline(config, "vertex"))
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
