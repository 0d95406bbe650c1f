"""The DAG: FastaExampleGen → Trainer (run_fn of `models`) → ProbeEvaluator (against the last blessed model) →
Pusher (which skips a model it already serves). Builds the pipeline only; runners live in `tfx_pipeline.runners`."""

from __future__ import annotations

from tfx import v1 as tfx

from tfx_pipeline.components import pusher
from tfx_pipeline.components.fasta_example_gen import FastaExampleGen
from tfx_pipeline.components.probe_evaluator import ProbeEvaluator
from tfx_pipeline.config import PipelineConfig

RUN_FN = "models.training.run_fn.run_fn"
RUNNERS = ("local", "vertex")


def training_config(config: PipelineConfig, runner: str) -> dict:
    """The Trainer's custom_config: `models.training.run_fn` settings (plus Vertex's job spec on Vertex)."""
    custom = {
        "family": config.family, "preset": config.preset, "sequence_length": config.sequence_length,
        "global_batch": config.global_batch, "two_phase": config.two_phase, "strategy": config.strategy,
        "optimizer": config.optimizer, "learning_rate": config.learning_rate, "warmup_steps": config.warmup_steps,
        "dropout": config.dropout, "mixed_precision": config.mixed_precision, "jit_compile": config.jit_compile,
        "checkpoint_every": config.checkpoint_every, "seed": config.seed,
        "checkpoint_root": config.checkpoint_root(runner),
    }
    if runner == "vertex":
        custom.update(vertex_training_config(config))
    return custom


def vertex_training_config(config: PipelineConfig) -> dict:
    """Vertex custom-job settings for `tfx.extensions.google_cloud_ai_platform.Trainer`, and the strategy its pool
    needs (multi-worker GPU pools: MultiWorkerMirroredStrategy, with TF_CONFIG set by Vertex; TPU: TPUStrategy)."""
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor

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
    strategy = {"cpu": config.strategy, "gpu": "multi_worker" if vertex.replica_count > 1 else "mirrored",
                "tpu": "tpu"}[vertex.trainer]
    settings = {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: vertex.region,
        executor.TRAINING_ARGS_KEY: job,
        "strategy": strategy,
    }
    if vertex.trainer == "tpu":
        settings["tpu"] = "local"  # the TPU VM the job runs on
    return settings


def create_pipeline(config: PipelineConfig, runner: str = "local") -> tfx.dsl.Pipeline:
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}, not {runner!r}")
    example_gen = FastaExampleGen(
        input_base=config.input_base, patterns=config.input_patterns, valid_fraction=config.valid_fraction,
        min_length=config.min_length, max_length=config.max_length, dedup=config.dedup, num_shards=config.num_shards,
    )
    trainer_class = tfx.extensions.google_cloud_ai_platform.Trainer if runner == "vertex" else tfx.components.Trainer
    trainer = trainer_class(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.steps),
        eval_args=tfx.proto.EvalArgs(splits=["valid"], num_steps=0),
        custom_config=training_config(config, runner),
    )
    last_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = ProbeEvaluator(
        model=trainer.outputs["model"],
        baseline_model=last_blessed.outputs["model"],
        baseline_blessing=last_blessed.outputs["model_blessing"],
        probe_data_dir=config.probe_data_dir, task=config.probe_task, thresholds=config.thresholds,
        regression_tolerance=config.regression_tolerance, limit=config.probe_limit, seed=config.seed,
        onehot_baseline=config.onehot_baseline,
    )
    push = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_model_dir(runner))),
        custom_executor_spec=pusher.EXECUTOR_SPEC,
    )
    metadata = (tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path())
                if runner == "local" else None)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root(runner),
        components=[example_gen, trainer, last_blessed, evaluator, push],
        enable_cache=True,
        metadata_connection_config=metadata,
        beam_pipeline_args=list(config.beam_pipeline_args),
    )
