"""LocalDagRunner with SQLite ML Metadata under the config's output folder: the embedded default."""

from __future__ import annotations

from tfx import v1 as tfx

from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.pipeline import create_pipeline


def run(config: PipelineConfig) -> None:
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, "local"))
