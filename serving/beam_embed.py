"""`prottrans-embed --beam`: embeddings of FASTA files of any size as an Apache Beam job, through RunInference.

The job reads FASTA with the preprocessing job's splittable source (plain or gzip, local or gs://), takes each
record's id as the single-process command does (the header's first word), normalises and rejects with the same
rules, keeps the first record of an id seen twice, and runs the SavedModel through Beam's ``RunInference`` with
:class:`EmbeddingModelHandler` (the model is loaded once per worker process and shared by its threads; batches are
cut by a residue budget). Embeddings are grouped into ``--num-shards`` HDF5 files by a hash of the id, each in
the single-process command's format (same keys, ``id`` attributes, Fletcher-32, ``prottrans_embed`` header), so
every reader of one ``prottrans-embed`` file reads a shard. HDF5 rather than TFRecord or Parquet: per-residue
arrays of varying length stay arrays one can slice by id without reading the shard, as bio_embeddings users
expect.

Output folder: ``embeddings-SSSSS-of-NNNNN.h5``, ``rejects/rejects-SSSSS-of-NNNNN.jsonl`` (one JSON object per
rejected record: file, offset, id, reason, detail), and ``manifest.json`` last, whose counts reconcile
(read = embedded + rejected). Everything is written into a staging folder and moved into place once the job
succeeded; a folder that already holds a manifest is refused unless ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
import zlib
from collections import Counter
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, RunInference

from beam_jobs.fasta_source import DEFAULT_MAX_RECORD_BYTES, FastaSource
from beam_jobs.output_lock import OutputLock
from beam_jobs.pipeline import write_manifest
from beam_jobs.schema import MANIFEST_FILE, REJECT_EXCERPT_CHARS, REJECTS_DIR, SHARD_TEMPLATE
from beam_jobs.headers import id_problem, printable_id
from beam_jobs.sequences import Reject, normalise
from models.export.embedding import SPECIAL_TOKENS_PER_SEQUENCE, ProteinEmbedding
from serving.embedding_file import FORMAT_VERSION, HEADER, OutputError, dataset_key, layout_groups, layout_of, \
    sequence_digest, store
from serving.model_input import run_or_reject

SHARD_PREFIX = "embeddings"
RESIDUES_PER_BATCH = 65_536  # RunInference batch: the model call groups it by length within its own token budget
DUPLICATE_ID = "duplicate_id"
MISSING_ID = "missing_id"
INVALID_ID = "invalid_id"  # not valid UTF-8, or a control character: it could not name an HDF5 entry exactly
MISSING_HEADER = "missing_header"
RECORD_TOO_LARGE = "record_too_large"
MODEL_REFUSED = "model_refused"  # the model's graph refused the protein (a non-finite embedding); detail says why

Keyed = tuple[str, str, tuple[str, int]]  # (record id, normalised sequence, (file, offset) of its record)


class Refused(NamedTuple):
    """What RunInference yields in place of an embedding the model refused: its reason."""

    reason: str


def _weight(item: Keyed) -> int:
    return len(item[1]) + SPECIAL_TOKENS_PER_SEQUENCE


class EmbeddingModelHandler(ModelHandler[Keyed, tuple[Keyed, "ProteinEmbedding | Refused"], Any]):
    """RunInference's handler for a SavedModel with the serving signature: ``(id, sequence, origin)`` in, that
    with its ``ProteinEmbedding`` out — or with :class:`Refused` where the model refused the protein (a batch it
    refuses is retried one protein at a time, so one bad protein costs its own record). Batches hold at most
    `residues_per_batch` tokens."""

    def __init__(self, saved_model: str, residues_per_batch: int = RESIDUES_PER_BATCH):
        # Beam 2.77's BatchElements sums element_size_fn over a batch and bounds that sum by max_batch_size.
        super().__init__(min_batch_size=1, max_batch_size=residues_per_batch, element_size_fn=_weight)
        self.saved_model = saved_model

    def load_model(self):
        from models.export.embedders import load_embedder

        return load_embedder(self.saved_model)

    def run_inference(self, batch: Sequence[Keyed], model, inference_args=None) -> list[tuple[Keyed, Any]]:
        refused: list[tuple[Keyed, Refused]] = []
        embedded = run_or_reject(lambda items: model.embed([sequence for _, sequence, _ in items]), list(batch),
                                 lambda item, reason: refused.append((item, Refused(reason))))
        return embedded + refused

    def get_num_bytes(self, batch: Sequence[Keyed]) -> int:
        return sum(len(sequence) for _, sequence, _ in batch)

    def get_metrics_namespace(self) -> str:
        return "prottrans_embed"


def _reject(path: str, offset: int, record_id: str, reason: str, detail: str = "", body: bytes = b"") -> dict:
    return {"file": path, "offset": offset, "id": record_id, "reason": reason, "detail": detail,
            "excerpt": body.strip()[:REJECT_EXCERPT_CHARS].decode("utf-8", errors="replace")}


class ParseForEmbedding(beam.DoFn):
    """A raw FASTA record → ``(id, (path, offset, sequence))``, or a reject to the ``rejects`` output."""

    def process(self, record) -> Iterator[Any]:
        path, offset, header, body, oversized = record
        words = (header or "").split(maxsplit=1)
        if header is None:
            yield beam.pvalue.TaggedOutput(REJECTS_DIR, _reject(path, offset, "", MISSING_HEADER, body=body))
        elif not words:
            yield beam.pvalue.TaggedOutput(REJECTS_DIR, _reject(path, offset, "", MISSING_ID, body=body))
        elif (problem := id_problem(words[0])) is not None:
            yield beam.pvalue.TaggedOutput(REJECTS_DIR, _reject(path, offset, printable_id(words[0]), INVALID_ID,
                                                                problem, body))
        elif oversized:
            yield beam.pvalue.TaggedOutput(REJECTS_DIR, _reject(
                path, offset, words[0], RECORD_TOO_LARGE, "record larger than the reader's max_record_bytes", body))
        else:
            result = normalise(body)
            if isinstance(result, Reject):
                yield beam.pvalue.TaggedOutput(REJECTS_DIR, _reject(path, offset, words[0], result.reason,
                                                                    result.detail, body))
            else:
                yield words[0], (path, offset, result.sequence.decode("ascii"))


def keep_first_of_id(item: tuple[str, Iterable[tuple[str, int, str]]]) -> Iterator[Any]:
    """The first record of an id (by file and offset) goes on; later ones are rejected, as the single-process
    command rejects an id seen twice."""
    record_id, records = item
    first, *later = sorted(records)
    yield record_id, first[2], (first[0], first[1])
    for path, offset, _ in later:
        yield beam.pvalue.TaggedOutput(REJECTS_DIR, _reject(
            path, offset, record_id, DUPLICATE_ID, f"the record at {first[0]}:{first[1]} with this id was embedded"))


def as_stored(item: tuple[Keyed, Any], dtype: str, per_residue: bool) -> Iterator[Any]:
    """An embedding as it is stored, ``(id, ProteinEmbedding, digest of the sequence)`` (the digest, not the
    sequence, crosses the shuffle to the shard writers); a refused protein goes to the ``rejects`` output."""
    (record_id, sequence, (path, offset)), embedding = item
    if isinstance(embedding, Refused):
        yield beam.pvalue.TaggedOutput(REJECTS_DIR, _reject(path, offset, record_id, MODEL_REFUSED, embedding.reason))
        return
    residues = embedding.residues.astype(dtype) if per_residue else np.zeros((0, 0), dtype)
    yield record_id, ProteinEmbedding(residues, embedding.protein.astype(dtype)), sequence_digest(sequence)


def shard_of(record_id: str, num_shards: int) -> int:
    return zlib.crc32(record_id.encode("utf-8")) % num_shards


class WriteShard(beam.DoFn):
    """Writes one shard's embeddings as an HDF5 file in the single-process command's format; yields its path and
    protein count. Written locally, then copied to its place (any Beam filesystem), under its final name."""

    def __init__(self, output_dir: str, num_shards: int, header: dict, dtype: str, per_residue: bool,
                 per_protein: bool):
        self.output_dir, self.num_shards, self.header = output_dir, num_shards, header
        self.dtype, self.per_residue, self.per_protein = dtype, per_residue, per_protein

    def process(self, item: tuple[int, Iterable[tuple[str, ProteinEmbedding]]]) -> Iterator[dict]:
        import h5py

        shard, embeddings = item
        name = f"{SHARD_PREFIX}-{shard:05d}-of-{self.num_shards:05d}.h5"
        count = 0
        with tempfile.TemporaryDirectory() as scratch:
            local = os.path.join(scratch, name)
            with h5py.File(local, "w") as handle:
                handle.attrs[HEADER] = json.dumps(self.header)
                groups = layout_groups(handle, self.per_residue, self.per_protein)
                for record_id, embedding, digest in filter(None, embeddings):  # None: makes every shard
                    store(groups, dataset_key(record_id), record_id, embedding, self.dtype, digest)
                    count += 1
            target = FileSystems.join(self.output_dir, name)
            with open(local, "rb") as source, FileSystems.create(target) as sink:
                while chunk := source.read(64 << 20):
                    sink.write(chunk)
        yield {"path": name, "proteins": count}


class WriteEmbedManifest(beam.DoFn):
    """``manifest.json`` once every shard and reject file is final; refuses counts that do not reconcile."""

    def __init__(self, output_dir: str, manifest: dict):
        self.output_dir, self.manifest = output_dir, manifest

    def process(self, _, read: int, shards: list[dict], rejects: list[str], reject_files: list[str]) -> Iterator[str]:
        embedded = sum(shard["proteins"] for shard in shards)
        counts = {"read": read, "embedded": embedded, "rejected": len(rejects),
                  "rejected_by_reason": dict(sorted(Counter(rejects).items()))}
        counts["reconciled"] = read == embedded + len(rejects)
        if not counts["reconciled"]:
            raise RuntimeError(f"counts do not reconcile: read {read} != embedded {embedded} + rejected "
                               f"{len(rejects)}; records were lost by the runner")
        prefix = self.output_dir.rstrip("/") + "/"
        manifest = {**self.manifest, "counts": counts,
                    "shards": {SHARD_PREFIX: sorted((s["path"], s["proteins"]) for s in shards),
                               REJECTS_DIR: sorted(path.removeprefix(prefix) for path in reject_files)}}
        yield write_manifest(self.output_dir, manifest)


def build_pipeline(pipeline: beam.Pipeline, inputs: Sequence[str], output_dir: str, saved_model: str, header: dict,
                   num_shards: int, dtype: str, per_residue: bool, per_protein: bool,
                   residues_per_batch: int = RESIDUES_PER_BATCH) -> None:
    """Add the embedding job to `pipeline`, writing into `output_dir`."""
    raw = [pipeline | f"ReadFasta{index}" >> beam.io.Read(FastaSource(pattern, DEFAULT_MAX_RECORD_BYTES))
           for index, pattern in enumerate(inputs)]
    raw = raw | "FlattenInputs" >> beam.Flatten()
    parsed = raw | "Parse" >> beam.ParDo(ParseForEmbedding()).with_outputs(REJECTS_DIR, main="proteins")
    kept = (parsed.proteins
            | "GroupById" >> beam.GroupByKey()
            | "KeepFirstOfId" >> beam.FlatMap(keep_first_of_id).with_outputs(REJECTS_DIR, main="proteins"))
    stored = (kept.proteins
              | "Embed" >> RunInference(EmbeddingModelHandler(saved_model, residues_per_batch))
              | "AsStored" >> beam.FlatMap(as_stored, dtype, per_residue).with_outputs(REJECTS_DIR, main="proteins"))
    # what crosses the shuffle: what is kept
    embedded = stored.proteins | "ShardById" >> beam.Map(lambda item: (shard_of(item[0], num_shards), item))
    every_shard = pipeline | "EveryShard" >> beam.Create([(shard, None) for shard in range(num_shards)])
    shards = ((embedded, every_shard)
              | "WithEmptyShards" >> beam.Flatten()
              | "GroupByShard" >> beam.GroupByKey()
              | "WriteShards" >> beam.ParDo(WriteShard(output_dir, num_shards, header, dtype, per_residue,
                                                       per_protein)))
    rejects = (parsed[REJECTS_DIR], kept[REJECTS_DIR], stored[REJECTS_DIR]) | "FlattenRejects" >> beam.Flatten()
    reject_files = (rejects
                    | "RejectsToJson" >> beam.Map(lambda reject: json.dumps(reject, sort_keys=True))
                    | "WriteRejects" >> beam.io.WriteToText(FileSystems.join(output_dir, REJECTS_DIR, REJECTS_DIR),
                                                            file_name_suffix=".jsonl",
                                                            shard_name_template=SHARD_TEMPLATE))
    read = raw | "CountRead" >> beam.combiners.Count.Globally()
    manifest = {"format_version": 1, "inputs": list(inputs), "model": saved_model, HEADER: header}
    _ = (pipeline
         | "Once" >> beam.Create([None])
         | "WriteManifest" >> beam.ParDo(
             WriteEmbedManifest(output_dir, manifest), read=beam.pvalue.AsSingleton(read),
             shards=beam.pvalue.AsList(shards),
             rejects=beam.pvalue.AsList(rejects | "ReasonOf" >> beam.Map(lambda reject: reject["reason"])),
             reject_files=beam.pvalue.AsList(reject_files)))


def run(inputs: Sequence[str], output_dir: str, saved_model: str, beam_args: Sequence[str] = (),
        num_shards: int = 4, dtype: str = "float32", per_residue: bool = False, per_protein: bool = True,
        overwrite: bool = False, residues_per_batch: int = RESIDUES_PER_BATCH) -> dict:
    """Run the job to completion; returns its manifest. The output appears in `output_dir` only once the job
    succeeded (staged in a hidden folder inside it meanwhile)."""
    for pattern in inputs:
        if not FileSystems.match([pattern])[0].metadata_list:
            raise OutputError(f"no input files match {pattern!r}")
    # A local folder takes one job at a time. On gs:// nothing locks: each job stages in its own folder, a finished
    # folder is refused without --overwrite, and of two jobs started together the later to finish replaces the other.
    lock = None if "://" in output_dir else OutputLock(output_dir, "prottrans-embed --beam")
    try:
        return _run_locked(inputs, output_dir, saved_model, beam_args, num_shards, dtype, per_residue, per_protein,
                           overwrite, residues_per_batch)
    finally:
        if lock:
            lock.release()


def _run_locked(inputs: Sequence[str], output_dir: str, saved_model: str, beam_args: Sequence[str], num_shards: int,
                dtype: str, per_residue: bool, per_protein: bool, overwrite: bool, residues_per_batch: int) -> dict:
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_jobs.fasta_to_tfrecords import make_runner
    from models.export.embedders import saved_model_path
    from models.export.signatures import check_serving_signature, saved_model_digest

    manifest_path = FileSystems.join(output_dir, MANIFEST_FILE)
    if FileSystems.exists(manifest_path) and not overwrite:
        raise OutputError(f"{output_dir} already holds embeddings (its {MANIFEST_FILE}); pass --overwrite to "
                          "replace them")
    saved_model = saved_model_path(saved_model)
    check_serving_signature(saved_model)
    identity = f"savedmodel:{saved_model_digest(saved_model)}"  # as the single-process command's
    header = {"format_version": FORMAT_VERSION, "model": identity, "layout": layout_of(per_residue, per_protein),
              "dtype": dtype}
    staging = FileSystems.join(output_dir, f".staging-{uuid.uuid4().hex[:12]}")
    FileSystems.mkdirs(staging)
    try:
        pipeline_options = PipelineOptions(list(beam_args))
        pipeline = beam.Pipeline(runner=make_runner(pipeline_options), options=pipeline_options)
        build_pipeline(pipeline, inputs, staging, saved_model, header, num_shards, dtype, per_residue, per_protein,
                       residues_per_batch)
        pipeline.run().wait_until_finish()
        with FileSystems.open(FileSystems.join(staging, MANIFEST_FILE)) as handle:
            manifest = json.load(handle)
        return _swap_in(staging, output_dir, manifest)
    finally:
        try:
            FileSystems.delete([staging])
        except Exception:  # noqa: BLE001 — cleanup must not hide the error that stopped the run
            pass


def _swap_in(staging: str, output_dir: str, manifest: dict) -> dict:
    """Move the staged files into `output_dir`, replacing an earlier run's; the manifest last."""
    earlier = [FileSystems.join(output_dir, MANIFEST_FILE)] + [
        match.path for pattern in (f"{SHARD_PREFIX}-*.h5", f"{REJECTS_DIR}/*")
        for match in FileSystems.match([FileSystems.join(output_dir, pattern)])[0].metadata_list]
    FileSystems.delete([path for path in earlier if FileSystems.exists(path)])
    staged = [name for name, _ in manifest["shards"][SHARD_PREFIX]] + manifest["shards"][REJECTS_DIR]
    if manifest["shards"][REJECTS_DIR] and not FileSystems.exists(FileSystems.join(output_dir, REJECTS_DIR)):
        FileSystems.mkdirs(FileSystems.join(output_dir, REJECTS_DIR))
    FileSystems.rename([FileSystems.join(staging, name) for name in staged],
                       [FileSystems.join(output_dir, name) for name in staged])
    write_manifest(output_dir, manifest)
    return manifest


def read_embeddings(output_dir: str) -> dict[str, dict[str, np.ndarray]]:
    """Every protein of a finished job's shards: ``{id: {"per_protein": …, "per_residue": …}}`` (what it stored)."""
    import h5py

    with FileSystems.open(FileSystems.join(output_dir, MANIFEST_FILE)) as handle:
        manifest = json.load(handle)
    layout = manifest[HEADER]["layout"]
    found: dict[str, dict[str, np.ndarray]] = {}
    for name, _ in manifest["shards"][SHARD_PREFIX]:
        with h5py.File(os.path.join(output_dir, name), "r") as handle:
            for kind in layout:
                group = handle[kind] if len(layout) == 2 else handle
                for key in group:
                    found.setdefault(group[key].attrs["id"], {})[kind] = group[key][()]
    return found
