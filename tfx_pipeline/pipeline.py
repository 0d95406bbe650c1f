"""The DAG: FastaExampleGen → Trainer (run_fn of `models`) → ProbeEvaluator (against the last blessed model; it
adds the trained probes to the model as its `predict` signature) → Pusher (which skips a model it already
serves, and writes a refused one to the candidates folder). With ``finetune.enabled`` a Finetuner fine-tunes the
trained backbone with the probe tasks' heads, and the Pusher takes its model under the evaluator's verdict. Builds
the pipeline only; runners live in `tfx_pipeline.runners`."""

from __future__ import annotations

from tfx import v1 as tfx

from tfx_pipeline.components import pusher
from tfx_pipeline.components.fasta_example_gen import FastaExampleGen
from tfx_pipeline.components.finetuner import Finetuner
from tfx_pipeline.components.probe_evaluator import ProbeEvaluator
from models.training import run_fn
from tfx_pipeline.config import PipelineConfig

RUN_FN = "models.training.run_fn.run_fn"
RUNNERS = ("local", "vertex")


def create_pipeline(config: PipelineConfig, runner: str = "local", vertex_job: dict | None = None) -> tfx.dsl.Pipeline:
    """The DAG for `runner`; on Vertex, `vertex_job` holds the Vertex Trainer's job settings."""
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
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.training.steps),
        eval_args=tfx.proto.EvalArgs(splits=["valid"], num_steps=config.training.eval_batches),
        custom_config={**run_fn.custom_config(config.training, config.checkpoint_root(runner)), **(vertex_job or {})},
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
        probe_data_dir=config.probe_data_dir, task=config.probe_task, gate=config.gate, limit=config.probe_limit,
        seed=config.training.seed, seeds=config.probe_seeds,
        onehot_baseline=config.onehot_baseline, profile_db=config.profile_db,
    )
    components = [example_gen, trainer, last_blessed, evaluator]
    served = evaluator.outputs["served_model"]  # the Trainer's model with its probes as `predict`
    if config.finetune.enabled:
        # The gate judges the backbone's embeddings through frozen probes, and the next run compares against the
        # Trainer's model; what is served is the fine-tuned model with its own heads.
        finetuner = Finetuner(
            model_run=trainer.outputs["model_run"],
            settings=config.finetune.settings(config.probe_task, config.training.seed, config.probe_seeds),
            probe_data_dir=config.probe_data_dir, limit=config.probe_limit,
        )
        components.append(finetuner)
        served = finetuner.outputs["finetuned_model"]
    push = tfx.components.Pusher(
        model=served,
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_model_dir(runner))),
        custom_executor_spec=pusher.EXECUTOR_SPEC,
        custom_config={pusher.CANDIDATE_ROOT: config.candidate_model_dir(runner)},
    )
    metadata = (tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path())
                if runner == "local" else None)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root(runner),
        components=[*components, push],
        enable_cache=True,
        metadata_connection_config=metadata,
        beam_pipeline_args=list(config.beam_pipeline_args),
    )
