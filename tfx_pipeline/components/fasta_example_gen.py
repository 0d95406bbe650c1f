"""FastaExampleGen: TFX's file-based ExampleGen whose Beam job is `beam_jobs` (same reader, normaliser, splitter
and record schema as `prottrans-preprocess`).

It is a :class:`FileBasedExampleGen`, so its driver fingerprints the input files at run time (the MLMD cache
reruns it when a FASTA changes) and span/version patterns work as for any ExampleGen. The train/valid split is
`beam_jobs`' own (by a hash of each sequence, so a sequence and its duplicates land in one split); the
`output_config` only carries the split names and the valid fraction as hash buckets.
"""

from __future__ import annotations

import json
import os
from typing import Any

from google.protobuf import any_pb2, json_format, struct_pb2
from tfx import types
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from beam_jobs import schema
from beam_jobs.pipeline import PreprocessOptions

# Split buckets out of this many: the valid fraction is kept to 0.1% steps.
SPLIT_BUCKETS = 1000
# The Beam job's settings FastaExampleGen passes on (the rest of PreprocessOptions is fixed by the artifact).
PREPROCESS_KEYS = ("input_format", "source", "min_length", "max_length", "dedup", "num_shards")
MANIFEST_PROPERTY = "manifest"


def _output_config(valid_fraction: float) -> example_gen_pb2.Output:
    valid = round(valid_fraction * SPLIT_BUCKETS)
    if not 0 < valid < SPLIT_BUCKETS:
        raise ValueError(f"valid_fraction must leave both splits non-empty at 1/{SPLIT_BUCKETS} steps, "
                         f"not {valid_fraction}")
    return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name=schema.TRAIN, hash_buckets=SPLIT_BUCKETS - valid),
        example_gen_pb2.SplitConfig.Split(name=schema.VALID, hash_buckets=valid),
    ]))


def _valid_fraction(output_config: example_gen_pb2.Output) -> float:
    buckets = {split.name: split.hash_buckets for split in output_config.split_config.splits}
    if set(buckets) != set(schema.SPLITS):
        raise ValueError(f"FastaExampleGen writes the splits {schema.SPLITS}; output_config names {sorted(buckets)}")
    return buckets[schema.VALID] / sum(buckets.values())


def _custom_config(settings: dict[str, Any]) -> example_gen_pb2.CustomConfig:
    unknown = set(settings) - set(PREPROCESS_KEYS)
    if unknown:
        raise ValueError(f"unknown preprocessing settings {sorted(unknown)}; known: {PREPROCESS_KEYS}")
    packed = any_pb2.Any()
    packed.Pack(json_format.ParseDict(settings, struct_pb2.Struct()))
    return example_gen_pb2.CustomConfig(custom_config=packed)


def _settings(custom_config_json: str | None) -> dict[str, Any]:
    if not custom_config_json:
        return {}
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(custom_config_json, config)
    if not config.HasField("custom_config"):
        return {}
    settings = struct_pb2.Struct()
    config.custom_config.Unpack(settings)
    values = json_format.MessageToDict(settings)
    for key in ("min_length", "max_length", "num_shards"):  # Struct numbers come back as floats
        if values.get(key) is not None:
            values[key] = int(values[key])
    return values


class Executor(base_beam_executor.BaseBeamExecutor):
    """Runs `beam_jobs` on the resolved input patterns into the Examples artifact's split folders."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        from beam_jobs.fasta_to_tfrecords import execute

        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])

        options = PreprocessOptions(
            inputs=tuple(os.path.join(input_base, split.pattern) for split in input_config.splits),
            output_dir=examples.uri,
            valid_fraction=_valid_fraction(output_config),
            compression="gzip",
            split_dir_prefix="Split-",
            **_settings(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)),
        )
        manifest = execute(options, self._beam_pipeline_args)
        examples.split_names = artifact_utils.encode_split_names(list(schema.SPLITS))
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        counts = manifest["counts"]
        for key in ("read", "written", "rejected", "duplicates_removed"):
            examples.set_int_custom_property(f"records_{key}", counts[key])
        examples.set_string_custom_property(MANIFEST_PROPERTY, json.dumps(counts, sort_keys=True))


class FastaExampleGen(FileBasedExampleGen):
    """Examples (records of docs/contracts.md, `train`/`valid` splits) from FASTA or a3m-ffindex files under `input_base`."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, input_base: str, patterns: tuple[str, ...] | list[str], valid_fraction: float = 0.05,
                 **preprocess: Any):
        """`patterns` are globs relative to `input_base` (one or more inputs; TFX span/version placeholders such
        as ``{SPAN}`` work); `preprocess` takes `prottrans-preprocess`'s settings: input_format, source,
        min_length, max_length, dedup, num_shards."""
        if not patterns:
            raise ValueError("FastaExampleGen needs at least one input pattern")
        super().__init__(
            input_base=input_base,
            input_config=example_gen_pb2.Input(splits=[
                example_gen_pb2.Input.Split(name=f"input-{index}", pattern=pattern)
                for index, pattern in enumerate(patterns)]),
            output_config=_output_config(valid_fraction),
            custom_config=_custom_config(preprocess) if preprocess else None,
        )
