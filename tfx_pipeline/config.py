"""The pipeline's one typed config: defaults run on the bundled sample; a YAML/JSON file and ``--set KEY=VALUE``
overrides change it (``training.steps=1000`` reaches into the training settings, ``vertex.project=my-project``
into the Vertex section)."""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from models.finetuning.run import TASKS, FinetuneSettings
from models.training.settings import TrainingSettings, coerce
from tfx_pipeline.blessing import GateRules

_HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE_FASTA_DIR = os.path.join(os.path.dirname(_HERE), "beam_jobs", "sample_data")


@dataclass
class VertexConfig:
    """Where and how `--runner vertex` runs. The trainer pool: `cpu` (one machine), `gpu` (`replica_count`
    machines with `accelerator_count` GPUs each, MultiWorkerMirroredStrategy across them) or `tpu` (one TPU VM,
    TPUStrategy)."""

    project: str = ""
    region: str = "us-central1"
    pipeline_root: str = ""  # gs://bucket/path: artifacts, checkpoints and the serving root
    image: str = ""  # the pipeline image (Dockerfile in this repo), e.g. us-docker.pkg.dev/p/r/prottrans:tag
    service_account: str = ""
    trainer: str = "cpu"
    machine_type: str = "n1-standard-8"
    accelerator_type: str = ""  # e.g. NVIDIA_TESLA_A100, TPU_V3
    accelerator_count: int = 0
    replica_count: int = 1
    spec_file: str = "prottrans_pipeline.json"


@dataclass
class FinetuneConfig:
    """Fine-tuning after training, when `enabled`: the Finetuner trains the probe tasks' heads together with the
    trained backbone (`prottrans-finetune`'s settings; the tasks, seeds and probe sets are the evaluator's), and the
    Pusher serves the fine-tuned model, its heads as ``predict``, under the evaluator's verdict on the backbone."""

    enabled: bool = False
    method: str = FinetuneSettings.method
    lora_rank: int = FinetuneSettings.lora_rank
    epochs: int = FinetuneSettings.epochs
    batch_size: int = FinetuneSettings.batch_size
    learning_rate: float = FinetuneSettings.learning_rate
    weight_decay: float = FinetuneSettings.weight_decay
    max_residues: int = FinetuneSettings.max_residues

    def __post_init__(self):
        self.settings()  # refuses what FinetuneSettings refuses, naming it

    def settings(self, task: str = "all", seed: int = 0, probe_seeds: int = FinetuneSettings.probe_seeds
                 ) -> FinetuneSettings:
        """The run's settings for the probe task `task` (ss, localization or all): this section's fields as they are."""
        tuning = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "enabled"}
        return FinetuneSettings(tasks=TASKS if task == "all" else (task,), seed=seed, probe_seeds=probe_seeds,
                                **tuning)


@dataclass
class PipelineConfig:
    pipeline_name: str = "prottrans"
    output_dir: str = "prottrans-pipeline"  # local runs: ML Metadata, artifacts, checkpoints and serving root
    # Data (FastaExampleGen = prottrans-preprocess)
    input_base: str = SAMPLE_FASTA_DIR
    input_patterns: list[str] = field(default_factory=lambda: ["uniprot_sample.fasta.gz"])
    valid_fraction: float = 0.05
    min_length: int = 1
    max_length: int = 40000
    dedup: bool = False
    num_shards: int = 0
    beam_pipeline_args: list[str] = field(default_factory=list)
    # Model and training: prottrans-train's settings (models.training.settings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    # Probes and blessing (ProbeEvaluator)
    probe_data_dir: str = ""  # "": the probe sets bundled with `models` (found where the evaluator runs)
    probe_task: str = "all"
    probe_limit: int = 0  # 0: every row of the probe sets
    probe_seeds: int = 5  # probes trained from this many seeds, their probabilities averaged
    onehot_baseline: bool = True
    profile_db: str = ""  # a FASTA: also probe the MMseqs2 evolutionary-profile reference (needs mmseqs on PATH)
    gate: GateRules = field(default_factory=GateRules)  # when the ProbeEvaluator blesses (tfx_pipeline.blessing)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # off by default
    # Serving
    serving_root: str = ""  # default: <output_dir>/serving; models go to <serving_root>/<model_name>/<version>
    model_name: str = ""  # default: the family
    vertex: VertexConfig = field(default_factory=VertexConfig)

    def __post_init__(self):
        if not self.input_patterns:
            raise ValueError("input_patterns: at least one FASTA or a3m-ffindex pattern is needed")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), not {self.valid_fraction}")
        if self.min_length < 1 or self.max_length < 0 or (self.max_length and self.max_length < self.min_length):
            raise ValueError(f"min_length must be >= 1 and max_length 0 (no limit) or >= min_length, not "
                             f"{self.min_length} and {self.max_length}")
        for name in ("num_shards", "probe_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if not 1 <= self.probe_seeds <= 100:
            raise ValueError(f"probe_seeds must be in [1, 100], not {self.probe_seeds}")
        if self.probe_task not in ("ss", "localization", "all"):
            raise ValueError(f"probe_task must be ss, localization or all, not {self.probe_task!r}")
        if self.vertex.trainer not in ("cpu", "gpu", "tpu"):
            raise ValueError(f"vertex.trainer must be cpu, gpu or tpu, not {self.vertex.trainer!r}")

    def check_local_paths(self) -> None:
        """Raise ValueError naming the key of a local input path that does not exist (``gs://``-style paths are
        left to the runner): run before any component, so that a typo does not surface after training."""
        import glob

        def local(path: str) -> bool:
            return bool(path) and "://" not in path

        if local(self.input_base):
            if not os.path.isdir(self.input_base):
                raise ValueError(f"input_base: no folder {self.input_base}")
            for pattern in self.input_patterns:
                if not glob.glob(os.path.join(self.input_base, pattern)):
                    raise ValueError(f"input_patterns: {pattern!r} matches no file in {self.input_base}")
        if local(self.probe_data_dir) and not os.path.isdir(self.probe_data_dir):
            raise ValueError(f"probe_data_dir: no folder {self.probe_data_dir}")
        if local(self.profile_db) and not os.path.isfile(self.profile_db):
            raise ValueError(f"profile_db: no file {self.profile_db}")

    # Derived locations
    def root(self, runner: str) -> str:
        if runner == "vertex":
            if not self.vertex.pipeline_root:
                raise ValueError("vertex.pipeline_root (gs://…) is required for --runner vertex")
            if self.input_base == SAMPLE_FASTA_DIR:
                raise ValueError("input_base is this machine's bundled sample folder, which Vertex workers cannot "
                                 "read: set input_base to a gs:// folder (or a path inside the pipeline image)")
            return self.vertex.pipeline_root.rstrip("/")
        return os.path.abspath(self.output_dir)

    def pipeline_root(self, runner: str) -> str:
        return os.path.join(self.root(runner), "tfx")

    def metadata_path(self) -> str:
        return os.path.join(self.root("local"), "metadata.sqlite")

    def checkpoint_root(self, runner: str) -> str:
        return os.path.join(self.root(runner), "checkpoints")

    def serving_model_dir(self, runner: str) -> str:
        base = self.serving_root or os.path.join(self.root(runner), "serving")
        return os.path.join(base if "://" in base else os.path.abspath(base), self.model_name or self.training.family)

    def candidate_model_dir(self, runner: str) -> str:
        """Where a refused model goes (with its heads), outside the serving root: <root>/candidates/<model_name>."""
        return os.path.join(self.root(runner), "candidates", self.model_name or self.training.family)


def _apply(target: Any, settings: dict[str, Any], prefix: str = "") -> Any:
    known = typing.get_type_hints(type(target))
    changes = {}
    for key, value in settings.items():
        if key not in known:
            raise ValueError(f"unknown config key {prefix + key!r}; known: {', '.join(sorted(known))}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{prefix + key}: expected a mapping")
            try:
                changes[key] = _apply(current, value, f"{prefix}{key}.")  # validated by the section's own checks
            except ValueError as error:
                message = str(error)
                raise ValueError(message if message.startswith(prefix + key) else f"{prefix + key}: {message}") \
                    from None
        else:
            changes[key] = coerce(value, known[key], prefix + key)
    return dataclasses.replace(target, **changes)


def load_config(path: str | None = None, overrides: list[str] = ()) -> PipelineConfig:
    """Defaults, then the YAML/JSON file at `path`, then ``KEY=VALUE`` overrides (values parsed as YAML)."""
    config = PipelineConfig()
    if path:
        try:
            with open(path) as handle:
                settings = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
        except OSError as error:
            raise ValueError(f"--config {path}: {error.strerror}") from None
        if not isinstance(settings, dict):
            raise ValueError(f"{path}: expected a mapping of config keys")
        try:
            config = _apply(config, settings)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep:
            raise ValueError(f"--set {override!r}: expected KEY=VALUE")
        nested: dict[str, Any] = {}
        cursor = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        try:
            cursor[parts[-1]] = yaml.safe_load(raw)
            config = _apply(config, nested)
        except yaml.YAMLError as error:
            raise ValueError(f"--set {override}: not valid YAML: {_yaml_problem(error)}") from None
        except ValueError as error:
            raise ValueError(f"--set {override}: {error}") from None
    return config


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line: where the YAML parser stopped and why."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + (getattr(error, "problem", None) or str(error).splitlines()[0])
