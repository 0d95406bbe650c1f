"""The preprocessing job's transforms: read → normalise → validate → resolve ids → (dedup) → split → write.

:func:`build_pipeline` adds the whole job to a ``beam.Pipeline``; the launcher in
:mod:`beam_jobs.fasta_to_tfrecords` parses flags and picks the runner. Each stage counts its outcomes in
Beam metrics (namespace ``prottrans``) and in per-bundle :class:`~beam_jobs.stats.DatasetStats` that end up
in ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from beam_jobs import schema, sequences
from beam_jobs.fasta_source import DEFAULT_MAX_RECORD_BYTES, FastaSource, RawRecord
from beam_jobs.ffindex import ReadA3mEntries
from beam_jobs.headers import id_problem, parse_header, printable_id
from beam_jobs.stats import DatasetStats, MergeStats
from beam_jobs.tfrecord_sink import WriteTFRecordShards

FASTA = "fasta"
A3M_FFINDEX = "a3m-ffindex"
AUTO = "auto"
INPUT_FORMATS = (AUTO, FASTA, A3M_FFINDEX)
AUTO_SOURCE = AUTO
METRICS_NAMESPACE = "prottrans"

# Records per batch across shuffles and into the writers; input bytes per shuffle key (see shuffle_buckets).
BATCH_RECORDS = 512
BUCKET_BYTES = 32 << 20
MIN_BUCKETS = 16

DUPLICATE_ID = "duplicate_id"
DUPLICATE_SEQUENCE = "duplicate_sequence"

# A normalised protein between stages: (id, sequence, source, taxon_id, path, offset); across shuffles it
# travels in pickled batches (see _pack).
Protein = tuple[str, bytes, str, int, str, int]
_ID, _SEQUENCE, _SOURCE, _, _PATH, _OFFSET = range(6)

_STATS = "stats"
_REJECTS = "rejects"


@dataclass(frozen=True)
class PreprocessOptions:
    """What the job does, independent of where it runs (Beam pipeline options say that)."""

    inputs: tuple[str, ...]
    output_dir: str
    input_format: str = AUTO  # `auto`: a3m-ffindex for `*.ffindex` patterns, else fasta
    source: str = AUTO_SOURCE  # `auto`: from the header (UniRef), else `bfd` for a3m-ffindex, `fasta` otherwise
    valid_fraction: float = 0.05
    min_length: int = 1
    max_length: int | None = 40000
    dedup: bool = False
    num_shards: int = 0  # 0: the runner picks
    compression: str = "gzip"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    split_dir_prefix: str = ""  # TFX's Examples artifacts name split folders `Split-<name>`
    input_files: tuple[dict[str, Any], ...] = field(default=(), compare=False)  # for the manifest

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("at least one --input is required")
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"--input-format must be one of {INPUT_FORMATS}, not {self.input_format!r}")
        if self.source != AUTO_SOURCE and self.source not in schema.SOURCES:
            raise ValueError(f"--source must be {AUTO_SOURCE!r} or one of {schema.SOURCES}, not {self.source!r}")
        if not 0.0 <= self.valid_fraction <= 1.0:
            raise ValueError(f"--valid-fraction must be in [0, 1], not {self.valid_fraction}")
        if self.min_length < 1:
            raise ValueError(f"--min-length must be at least 1, not {self.min_length}")
        if self.max_length is not None and self.max_length < self.min_length:
            raise ValueError(f"--max-length {self.max_length} is below --min-length {self.min_length}")
        if self.num_shards < 0:
            raise ValueError(f"--num-shards must be >= 0, not {self.num_shards}")
        if self.compression not in ("gzip", "none"):
            raise ValueError(f"--compression must be 'gzip' or 'none', not {self.compression!r}")

    def format_of(self, pattern: str) -> str:
        """The format of one input: forced by `input_format`, else told by the `.ffindex` suffix."""
        if self.input_format != AUTO:
            return self.input_format
        return A3M_FFINDEX if pattern.endswith(".ffindex") else FASTA

    def default_source_of(self, pattern: str) -> str:
        """`source` of an input's records whose header names none."""
        if self.source != AUTO_SOURCE:
            return self.source
        return "bfd" if self.format_of(pattern) == A3M_FFINDEX else "fasta"


def sequence_digest(sequence: bytes) -> bytes:
    """Stable digest of a normalised sequence: the dedup key and the split decision."""
    return hashlib.sha256(sequence).digest()


def split_for(digest: bytes, valid_fraction: float) -> str:
    """Deterministic split: the digest as a fraction in [0, 1) against `valid_fraction`."""
    return schema.VALID if int.from_bytes(digest[:8], "big") < valid_fraction * 2.0**64 else schema.TRAIN


def _reject(reason: str, record_id: str, source: str, path: str, offset: int, raw: bytes, detail: str = "") -> dict:
    return {
        "id": record_id,
        "reason": reason,
        "detail": detail,
        "source": source,
        "file": path,
        "offset": offset,
        "excerpt": raw[: schema.REJECT_EXCERPT_CHARS].decode("utf-8", errors="replace"),
    }


class _CountingDoFn(beam.DoFn):
    """A DoFn that keeps :class:`DatasetStats` per bundle, emits them to the `stats` output and adds them to
    Beam metrics when the bundle finishes (not per record: counting stays off the hot path)."""

    def start_bundle(self):
        self.stats = DatasetStats()

    def finish_bundle(self):
        if not self.stats.is_empty():
            self.stats.publish_metrics(METRICS_NAMESPACE)
            yield pvalue.TaggedOutput(_STATS, _in_global_window(self.stats))


def _in_global_window(value: Any) -> WindowedValue:
    return WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


class _Batches:
    """Items gathered per key and released as ``(key, [items])`` once a key holds :data:`BATCH_RECORDS`.

    Records cross shuffles and reach the writers in batches: Beam's per-element cost is paid per batch.
    """

    def __init__(self) -> None:
        self._items: dict[Any, list] = defaultdict(list)

    def add(self, key: Any, item: Any) -> Iterator[tuple[Any, list]]:
        items = self._items[key]
        items.append(item)
        if len(items) >= BATCH_RECORDS:
            del self._items[key]
            yield key, items

    def drain(self) -> Iterator[tuple[Any, list]]:
        items, self._items = self._items, defaultdict(list)
        yield from items.items()


def _pack(batch: tuple[Any, list]) -> tuple[Any, bytes]:
    """A batch as it crosses a shuffle: one opaque blob, so the shuffle (on the FnApiRunner: its single
    runner process) moves bytes instead of decoding and re-encoding every record."""
    key, items = batch
    return key, pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(blobs: Iterable[bytes]) -> Iterator[Any]:
    for blob in blobs:
        yield from pickle.loads(blob)


def shuffle_buckets(options: PreprocessOptions) -> int:
    """How many keys the shuffles use: about one per :data:`BUCKET_BYTES` of input (gzip counted ×4), so a
    bucket fits a worker's memory and there are buckets enough for every worker."""
    estimated = 0
    for entry in options.input_files:
        for file in entry["files"]:
            size = file.get("data_size_bytes", file["size_bytes"])
            estimated += size * 4 if file["path"].endswith(".gz") else size
    return max(MIN_BUCKETS, -(-estimated // BUCKET_BYTES))


def _id_bucket(record_id: str, buckets: int) -> int:
    return zlib.crc32(record_id.encode("utf-8")) % buckets


def _sequence_bucket(digest: bytes, buckets: int) -> int:
    return int.from_bytes(digest[8:16], "big") % buckets  # bytes the split decision does not use


class ParseRecords(_CountingDoFn):
    """:data:`RawRecord` → packed batches ``(bucket, [(id, (sequence, source, taxon_id, path, offset)), …])``
    keyed by a hash of the id, or a reject to the `rejects` output."""

    def __init__(self, options: PreprocessOptions, default_source: str, buckets: int):
        self._default_source = default_source
        self._forced_source = options.source if options.source != AUTO_SOURCE else None
        self._min_length = options.min_length
        self._max_length = options.max_length
        self._buckets = buckets

    def start_bundle(self):
        super().start_bundle()
        self._batches = _Batches()

    def process(self, record: RawRecord) -> Iterator[Any]:
        path, offset, header_line, body, oversized = record
        if header_line is None:
            source = self._default_source
            yield from self._rejected(sequences.MISSING_HEADER, "", source, path, offset, body)
            return
        header = parse_header(header_line, self._default_source)
        source = self._forced_source or header.source
        if not header.id:
            yield from self._rejected(sequences.MISSING_ID, "", source, path, offset, body)
            return
        if (problem := id_problem(header.id)) is not None:
            yield from self._rejected(sequences.INVALID_ID, printable_id(header.id), source, path, offset, body,
                                      problem)
            return
        if oversized:
            yield from self._rejected(sequences.RECORD_TOO_LARGE, header.id, source, path, offset, body,
                                      "record larger than the reader's max_record_bytes")
            return
        result = sequences.normalise(body, self._min_length, self._max_length)
        if isinstance(result, sequences.Reject):
            yield from self._rejected(result.reason, header.id, source, path, offset, body, result.detail)
            return
        self.stats.read[source] += 1
        for repair in result.repairs:
            self.stats.repairs[repair] += 1
        value = (result.sequence, source, header.taxon_id, path, offset)
        for batch in self._batches.add(_id_bucket(header.id, self._buckets), (header.id, value)):
            yield _pack(batch)

    def _rejected(self, reason, record_id, source, path, offset, body, detail=""):
        self.stats.read[source] += 1
        self.stats.rejected[(reason, source)] += 1
        yield pvalue.TaggedOutput(_REJECTS, _reject(reason, record_id, source, path, offset, body.strip(), detail))

    def finish_bundle(self):
        for batch in self._batches.drain():
            yield _in_global_window(_pack(batch))
        yield from super().finish_bundle()


class _KeepingDoFn(_CountingDoFn):
    """Base of the stages that decide which proteins are kept. A kept protein either goes on to the
    sequence dedup (batched by a hash of its sequence) or, as the last decision, is encoded as a
    ``tf.train.Example`` onto the output named by its split (batched per split)."""

    def __init__(self, valid_fraction: float, dedup_buckets: int | None):
        self._valid_fraction = valid_fraction
        self._dedup_buckets = dedup_buckets

    def start_bundle(self):
        super().start_bundle()
        self._batches = _Batches()

    def keep(self, protein: Protein) -> Iterator[Any]:
        record_id, sequence, source, taxon_id, _, _ = protein
        digest = sequence_digest(sequence)
        if self._dedup_buckets:
            for batch in self._batches.add(_sequence_bucket(digest, self._dedup_buckets), protein):
                yield _pack(batch)
            return
        split = split_for(digest, self._valid_fraction)
        self.stats.count_written(split, source, sequence)
        example = schema.encode_example(record_id, sequence, source, taxon_id)
        for _, examples in self._batches.add(split, example):
            yield pvalue.TaggedOutput(split, examples)

    def finish_bundle(self):
        for key, items in self._batches.drain():
            if self._dedup_buckets:
                yield _in_global_window(_pack((key, items)))
            else:
                yield pvalue.TaggedOutput(key, _in_global_window(items))
        yield from super().finish_bundle()


class ResolveIds(_KeepingDoFn):
    """One id, several records: identical sequences keep the first (by file and offset), the others are
    counted as duplicates; different sequences are all rejected, since no one of them can be trusted."""

    def process(self, bucket: tuple[int, Iterable[bytes]]) -> Iterator[Any]:
        by_id: dict[str, list[tuple]] = defaultdict(list)
        for record_id, value in _unpack(bucket[1]):
            by_id[record_id].append(value)
        for record_id, values in by_id.items():
            yield from self._resolve(record_id, values)

    def _resolve(self, record_id: str, values: list[tuple]) -> Iterator[Any]:
        if len(values) == 1:
            yield from self.keep((record_id, *values[0]))
            return
        proteins = sorted(((record_id, *value) for value in values), key=lambda p: (p[_PATH], p[_OFFSET]))
        if len({p[_SEQUENCE] for p in proteins}) == 1:
            yield from self.keep(proteins[0])
            for duplicate in proteins[1:]:
                self.stats.duplicates[(DUPLICATE_ID, duplicate[_SOURCE])] += 1
            return
        where = ", ".join(f"{p[_PATH]}@{p[_OFFSET]}" for p in proteins[:5])
        for protein in proteins:
            self.stats.rejected[(sequences.CONFLICTING_DUPLICATE_ID, protein[_SOURCE])] += 1
            yield pvalue.TaggedOutput(_REJECTS, _reject(
                sequences.CONFLICTING_DUPLICATE_ID, record_id, protein[_SOURCE], protein[_PATH], protein[_OFFSET],
                protein[_SEQUENCE], f"{len(proteins)} records share this id with different sequences: {where}"))


class DropDuplicateSequences(_KeepingDoFn):
    """Keeps one record per exact sequence (the smallest id), counting the others as duplicates."""

    def process(self, bucket: tuple[int, Iterable[bytes]]) -> Iterator[Any]:
        by_sequence: dict[bytes, list[Protein]] = defaultdict(list)
        for protein in _unpack(bucket[1]):
            by_sequence[protein[_SEQUENCE]].append(protein)
        for proteins in by_sequence.values():
            if len(proteins) > 1:
                proteins.sort(key=lambda p: (p[_ID], p[_PATH], p[_OFFSET]))
                for duplicate in proteins[1:]:
                    self.stats.duplicates[(DUPLICATE_SEQUENCE, duplicate[_SOURCE])] += 1
            yield from self.keep(proteins[0])


class WriteManifest(beam.DoFn):
    """Writes ``manifest.json`` once every shard is final (the shard lists are its side inputs)."""

    def __init__(self, options: PreprocessOptions, versions: dict[str, str]):
        self._options = options
        self._versions = versions

    def process(self, stats: DatasetStats, **shards: list[str]) -> Iterator[str]:
        options = self._options
        manifest = {
            "format_version": 1,
            "inputs": list(options.input_files),
            "options": {key: value for key, value in asdict(options).items() if key != "input_files"},
            **stats.to_counts(),
            "shards": {name: sorted(_relative_to(options.output_dir, path) for path in files)
                       for name, files in shards.items()},
            "versions": self._versions,
        }
        counts = manifest["counts"]
        if not counts["reconciled"]:
            raise RuntimeError(
                "counts do not reconcile: read {read} != written {written} + rejected {rejected} + duplicates "
                "removed {duplicates_removed}; records were lost by the runner".format(**counts))
        yield write_manifest(options.output_dir, manifest)


def write_manifest(output_dir: str, manifest: dict) -> str:
    """``<output_dir>/manifest.json`` (any Beam filesystem); returns its path."""
    path = FileSystems.join(output_dir, schema.MANIFEST_FILE)
    with FileSystems.create(path, mime_type="application/json",
                            compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=False).encode("utf-8"))
    return path


def _relative_to(directory: str, path: str) -> str:
    prefix = directory.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def read_raw_records(pipeline: beam.Pipeline, pattern: str, input_format: str, max_record_bytes: int,
                     label: str) -> beam.PCollection:
    """One input's records as a PCollection of :data:`RawRecord`."""
    if input_format == FASTA:
        return pipeline | f"ReadFasta{label}" >> beam.io.Read(FastaSource(pattern, max_record_bytes))
    return (
        pipeline
        | f"ReadFfindex{label}" >> beam.io.ReadFromTextWithFilename(pattern)
        | f"ReadA3m{label}" >> beam.ParDo(ReadA3mEntries(max_record_bytes))
    )


def build_pipeline(pipeline: beam.Pipeline, options: PreprocessOptions, versions: dict[str, str]) -> None:
    """Add the preprocessing job to `pipeline`."""
    out = options.output_dir
    buckets = shuffle_buckets(options)
    parsed = []
    for index, pattern in enumerate(options.inputs):
        raw = read_raw_records(pipeline, pattern, options.format_of(pattern), options.max_record_bytes, str(index))
        parsed.append(raw | f"Parse{index}" >> beam.ParDo(
            ParseRecords(options, options.default_source_of(pattern), buckets)).with_outputs(
                _REJECTS, _STATS, main="proteins"))
    kept_outputs = (_STATS,) if options.dedup else (_STATS, *schema.SPLITS)
    resolved = (
        [p.proteins for p in parsed]
        | "FlattenInputs" >> beam.Flatten()
        | "GroupById" >> beam.GroupByKey()
        | "ResolveIds" >> beam.ParDo(ResolveIds(options.valid_fraction, buckets if options.dedup else None))
        .with_outputs(_REJECTS, *kept_outputs, main="proteins")
    )
    stats = [p[_STATS] for p in parsed] + [resolved[_STATS]]
    examples = resolved
    if options.dedup:
        examples = (
            resolved.proteins
            | "GroupBySequence" >> beam.GroupByKey()
            | "DropDuplicateSequences" >> beam.ParDo(DropDuplicateSequences(options.valid_fraction, None))
            .with_outputs(_STATS, *schema.SPLITS)
        )
        stats.append(examples[_STATS])

    shards = {}
    for split in schema.SPLITS:
        shards[split] = examples[split] | f"Write{split.title()}" >> WriteTFRecordShards(
            FileSystems.join(out, options.split_dir_prefix + split, schema.SHARD_PREFIX),
            file_name_suffix=schema.shard_suffix(options.compression),
            num_shards=options.num_shards,
            shard_name_template=schema.SHARD_TEMPLATE,
            gzip=options.compression == "gzip",
        )
    shards[schema.REJECTS_DIR] = (
        [p[_REJECTS] for p in parsed] + [resolved[_REJECTS]]
        | "FlattenRejects" >> beam.Flatten()
        | "RejectsToJson" >> beam.Map(lambda reject: json.dumps(reject, sort_keys=True))
        | "WriteRejects" >> beam.io.WriteToText(
            FileSystems.join(out, schema.REJECTS_DIR, schema.REJECTS_DIR),
            file_name_suffix=".jsonl",
            shard_name_template=schema.SHARD_TEMPLATE,
        )
    )
    _ = (
        stats
        | "FlattenStats" >> beam.Flatten()
        | "MergeStats" >> beam.CombineGlobally(MergeStats())
        | "WriteManifest" >> beam.ParDo(
            WriteManifest(options, versions),
            **{name: beam.pvalue.AsList(files) for name, files in shards.items()},
        )
    )
