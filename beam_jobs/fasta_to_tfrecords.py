"""``prottrans-preprocess``: FASTA / a3m-ffindex → sharded TFRecords + rejects + ``manifest.json``.

Runs on any Beam runner. Flags of the job are listed by ``--help``; every other flag is a Beam pipeline option
(``--runner``, ``--direct_num_workers``, ``--direct_running_mode``, ``--project``, ``--temp_location``, …).
Local runs (no ``--runner``, or ``DirectRunner``) use Beam's FnApiRunner directly: Beam 2.77's DirectRunner
would first try to download the Prism runner, which fails offline.
"""

from __future__ import annotations

import os

from beam_jobs.console import VERBOSE_FLAG, VERBOSE_HELP, guarded, quiet_start, real_number, whole_number

quiet_start()  # before TensorFlow is imported

import argparse
import dataclasses
import json
import platform
import sys
import uuid
from importlib import metadata
from typing import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from beam_jobs import schema
from beam_jobs.fasta_source import InputFileError
from beam_jobs.ffindex import ffdata_path
from beam_jobs.pipeline import (A3M_FFINDEX, AUTO, AUTO_SOURCE, INPUT_FORMATS, PreprocessOptions, build_pipeline,
                                write_manifest)

LOCAL_RUNNERS = (None, "DirectRunner", "FnApiRunner")
_OUTPUT_PARTS = (*schema.SPLITS, schema.REJECTS_DIR)


class UsageError(ValueError):
    """Bad flags or inputs, reported before any work starts."""


class EmptyDatasetError(ValueError):
    """The job ran and wrote no record."""


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="prottrans-preprocess",
        description="Turn protein FASTA (UniRef, UniProt, BFD; plain or gzip) or BFD a3m-ffindex databases into "
        "sharded TFRecords of tf.train.Example (docs/contracts.md). Unknown flags are Beam pipeline options.",
    )
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--input", action="append", required=True, metavar="GLOB",
                        help="input file pattern (local or gs://...); repeat for several")
    parser.add_argument("--output-dir", required=True, metavar="DIR")
    parser.add_argument("--input-format", choices=INPUT_FORMATS, default=AUTO,
                        help="fasta, or a3m-ffindex (GLOB names .ffindex files, .ffdata beside them); "
                        "auto (default): a3m-ffindex for GLOBs ending in .ffindex, fasta otherwise")
    parser.add_argument("--source", default=AUTO_SOURCE, choices=(AUTO_SOURCE, *schema.SOURCES),
                        help="`source` feature; auto: uniref* from UniRef headers, else bfd for a3m-ffindex, else fasta")
    parser.add_argument("--valid-fraction", type=real_number(0, 1), default=0.05,
                        help="fraction of distinct sequences in the valid split, chosen by sequence hash")
    parser.add_argument("--min-length", type=whole_number(1), default=1)
    parser.add_argument("--max-length", type=whole_number(0), default=40000,
                        help="longer sequences are rejected as too_long; 0 for no limit")
    parser.add_argument("--dedup", action="store_true", help="keep one record per exact sequence across all inputs")
    parser.add_argument("--num-shards", type=whole_number(0), default=0,
                        help="shards per split; 0 lets the runner choose")
    parser.add_argument("--compression", choices=("gzip", "none"), default="gzip")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier dataset in --output-dir (its shards, rejects and manifest); the "
                        "earlier one is removed only once the new job has succeeded")
    parser.add_argument("--allow-empty", action="store_true",
                        help="succeed when no record is written (by default that is an error)")
    return parser.parse_known_args(argv)


def _match_inputs(options: PreprocessOptions) -> tuple[dict, ...]:
    inputs = []
    for pattern in options.inputs:
        input_format = options.format_of(pattern)
        files = FileSystems.match([pattern])[0].metadata_list
        if not files:
            raise UsageError(f"no input files match {pattern!r}")
        entries = []
        for file in sorted(files, key=lambda f: f.path):
            entry = {"path": file.path, "size_bytes": file.size_in_bytes}
            if input_format == A3M_FFINDEX:
                data = ffdata_path(file.path)
                data_files = FileSystems.match([data])[0].metadata_list
                if not data_files:
                    raise UsageError(f"{file.path}: its data file {data} does not exist")
                entry["data_size_bytes"] = data_files[0].size_in_bytes
            entries.append(entry)
        inputs.append({"pattern": pattern, "format": input_format, "files": entries})
    return tuple(inputs)


def _earlier_dataset(output_dir: str) -> list[str]:
    """The files of a dataset already in `output_dir` (manifest, shards, rejects)."""
    manifest = FileSystems.join(output_dir, schema.MANIFEST_FILE)
    earlier = [manifest] if FileSystems.exists(manifest) else []
    for part in _OUTPUT_PARTS:
        earlier += [m.path for m in FileSystems.match([FileSystems.join(output_dir, part, "*")])[0].metadata_list]
    return earlier


def _create_staging(output_dir: str) -> str:
    """A fresh staging folder inside `output_dir`, proven writable: the job writes there and the dataset is swapped
    into place only once the job has succeeded, so a failed run never costs the dataset already there."""
    staging = FileSystems.join(output_dir, f".staging-{uuid.uuid4().hex[:12]}")
    try:
        FileSystems.mkdirs(staging)
        with FileSystems.create(FileSystems.join(staging, ".write-check")) as handle:
            handle.write(b"ok")
        FileSystems.delete([FileSystems.join(staging, ".write-check")])
    except Exception as error:  # local, GCS and S3 raise different types; all mean the same to the user
        raise UsageError(f"cannot write to --output-dir {output_dir}: {error}") from error
    return staging


def _delete_quietly(path: str) -> None:
    try:
        FileSystems.delete([path])
    except Exception:  # cleanup of a staging folder must not hide the error that made the run stop
        pass


def _swap_in(staging: str, output_dir: str, manifest: dict) -> dict:
    """Replace the dataset in `output_dir` by the one in `staging`. The manifest goes last: a dataset without one is
    incomplete, and the staged files stay until they are moved."""
    earlier = _earlier_dataset(output_dir)
    if earlier:
        FileSystems.delete(earlier)
    staged = [path for paths in manifest["shards"].values() for path in paths]
    for folder in sorted({os.path.dirname(path) for path in staged}):
        target = FileSystems.join(output_dir, folder)
        if not FileSystems.exists(target):
            FileSystems.mkdirs(target)
    FileSystems.rename([FileSystems.join(staging, path) for path in staged],
                       [FileSystems.join(output_dir, path) for path in staged])
    manifest = {**manifest, "options": {**manifest["options"], "output_dir": output_dir}}
    write_manifest(output_dir, manifest)
    return manifest


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for distribution in ("prottrans-tf", "apache-beam", "tensorflow", "protobuf"):
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[distribution] = "not installed"
    return versions


def make_runner(pipeline_options: PipelineOptions):
    """The runner named by the Beam options; local runs get the FnApiRunner (see module docstring)."""
    runner = pipeline_options.view_as(StandardOptions).runner
    if runner not in LOCAL_RUNNERS:
        return None  # Beam resolves --runner itself
    mode = pipeline_options.view_as(DirectOptions).direct_running_mode
    if mode == "multi_threading":
        raise UsageError(
            "--direct_running_mode=multi_threading is refused: it was seen to lose records silently in Beam 2.77; "
            "use in_memory (default) or multi_processing")
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    return fn_runner.FnApiRunner()


def run(argv: Sequence[str] | None = None) -> dict:
    """Run the job to completion and return its manifest."""
    args, beam_args = parse_args(argv)
    try:
        options = PreprocessOptions(
            inputs=tuple(args.input),
            output_dir=args.output_dir.rstrip("/") or "/",
            input_format=args.input_format,
            source=args.source,
            valid_fraction=args.valid_fraction,
            min_length=args.min_length,
            max_length=args.max_length or None,
            dedup=args.dedup,
            num_shards=args.num_shards,
            compression=args.compression,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    return execute(options, beam_args, args.overwrite, args.allow_empty)


def execute(options: PreprocessOptions, beam_args: Sequence[str] = (), overwrite: bool = False,
            allow_empty: bool = False) -> dict:
    """Run the job of `options` with Beam pipeline options `beam_args` and return its manifest (also what the
    TFX pipeline's FastaExampleGen runs). The job writes into a staging folder; the dataset already in the output
    folder (replaced only with `overwrite`) is kept unless the job succeeds and writes a record (or `allow_empty`)."""
    options = dataclasses.replace(options, input_files=_match_inputs(options))
    pipeline_options = PipelineOptions(list(beam_args))
    runner = make_runner(pipeline_options)
    earlier = _earlier_dataset(options.output_dir)
    if earlier and not overwrite:
        raise UsageError(f"{options.output_dir} already holds a dataset ({len(earlier)} files); pass --overwrite "
                         "to replace it")
    staging = _create_staging(options.output_dir)
    try:
        pipeline = beam.Pipeline(runner=runner, options=pipeline_options)
        build_pipeline(pipeline, dataclasses.replace(options, output_dir=staging), _versions())
        pipeline.run().wait_until_finish()
        with FileSystems.open(FileSystems.join(staging, schema.MANIFEST_FILE)) as handle:
            manifest = json.load(handle)
        counts = manifest["counts"]
        if counts["written"] == 0 and not allow_empty:
            reasons = ", ".join(f"{reason} {n:,}" for reason, n in counts["rejected_by_reason"].items()) or "none"
            kept = "; the dataset already there is kept" if earlier else ""
            raise EmptyDatasetError(
                f"no record written: read {counts['read']:,}, rejected {counts['rejected']:,} ({reasons}), "
                f"duplicates removed {counts['duplicates_removed']:,}{kept}. Pass --allow-empty to accept an "
                "empty dataset")
        return _swap_in(staging, options.output_dir, manifest)
    finally:
        _delete_quietly(staging)


def summary(manifest: dict, output_dir: str) -> str:
    counts = manifest["counts"]
    split_counts = ", ".join(f"{split} {n:,}" for split, n in counts["written_by_split"].items())
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in counts["rejected_by_reason"].items()) or "none"
    lines = [
        f"read {counts['read']:,} records; wrote {counts['written']:,} ({split_counts}; "
        f"{manifest['residues']['total']:,} residues); rejected {counts['rejected']:,} ({reasons}); "
        f"duplicates removed {counts['duplicates_removed']:,}",
    ]
    for part in _OUTPUT_PARTS:
        lines.append(f"{part + ':':8} {FileSystems.join(output_dir, part)}  ({len(manifest['shards'][part])} files)")
    lines.append(f"manifest: {FileSystems.join(output_dir, schema.MANIFEST_FILE)}")
    return "\n".join(lines)


def _find_input_error(error: BaseException) -> str | None:
    """The message of an :class:`InputFileError` behind `error`, if one caused it."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, InputFileError):
            return str(error)
        error = error.__cause__ or error.__context__
    return None


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("prottrans-preprocess", lambda: _main(argv), argv)


def _main(argv: Sequence[str] | None = None) -> int:
    try:
        manifest = run(argv)
    except UsageError as error:
        print(f"prottrans-preprocess: error: {error}", file=sys.stderr)
        return 2
    except EmptyDatasetError as error:
        print(f"prottrans-preprocess: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a runner re-raises worker errors, often wrapped: report ours in one line
        unreadable = _find_input_error(error)
        if unreadable is None:
            raise
        print(f"prottrans-preprocess: error: {unreadable}", file=sys.stderr)
        return 1
    output_dir = parse_args(argv)[0].output_dir
    print(summary(manifest, output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
