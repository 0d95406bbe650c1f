"""The paper's probes on frozen embeddings, trained with early stopping from several fixed seeds whose predicted
probabilities are averaged.

One probe trained once amplifies round-off: a different CPU (thread count, oneDNN) changes the embeddings and the
training arithmetic in the last bits, training drifts to other weights, and a few proteins flip class (a point
of Q10 on 150 proteins). Averaging the probabilities of `ProbeSettings.seeds` probes damps that
(bench/probes.md measures the spread with one seed and with five).

Per residue: Conv1D(32, kernel 7) + ReLU + dropout 0.25, then a kernel-7 Conv1D to the 3- and 8-state
outputs. Per protein: standardised inputs, Dense(32) + dropout 0.25 + ReLU, with heads for the 10 locations and
membrane-bound vs soluble (proteins without a membrane label do not count for that head).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from models.probes import datasets, metrics, report
from models.probes.cache import EmbeddingCache, LazyView, fill
from models.probes.maps import draw_maps
from models.probes.datasets import LOCATIONS, LocalizationRecord, StructureRecord
from models.export.embedders import ONEHOT, Embedder, OneHotEmbedder

SS3, SS8 = datasets.DSSP3, datasets.DSSP8
# The split the pipeline's gate judges on (the probes' early-stopping split; test is reported, never gated).
GATE_SET = "valid"
# Correct and scored items per protein, by metric: what paired comparisons between embedders resample.
PER_PROTEIN = "per_protein"
MEMBRANE_LABELS = (datasets.SOLUBLE, datasets.MEMBRANE)


@dataclass(frozen=True)
class ProbeSettings:
    epochs: int = 30
    patience: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    seeds: int = 5  # probes initialised from seeds seed, seed+1, …; their probabilities averaged

    def __post_init__(self):
        if not 1 <= self.seeds <= 100:
            raise ValueError(f"seeds must be in [1, 100], not {self.seeds}")


DEFAULT_SETTINGS = ProbeSettings()


def residue_cnn(input_dim: int, name: str = "residue_cnn") -> keras.Model:
    inputs = keras.Input((None, input_dim), name="residues")
    hidden = keras.layers.Conv1D(32, 7, padding="same")(inputs)
    hidden = keras.layers.Dropout(0.25)(keras.layers.ReLU()(hidden))
    outputs = {
        "ss3": keras.layers.Conv1D(len(SS3), 7, padding="same", name="ss3")(hidden),
        "ss8": keras.layers.Conv1D(len(SS8), 7, padding="same", name="ss8")(hidden),
    }
    return keras.Model(inputs, outputs, name=name)


def protein_fnn(train_x: np.ndarray, name: str = "protein_fnn") -> keras.Model:
    """The FNN, standardising its inputs with the training set's statistics (embedding scales differ a lot:
    an amino-acid composition is ~0.05 per feature)."""
    inputs = keras.Input((train_x.shape[1],), name="protein")
    standardise = keras.layers.Normalization(name="standardise")
    standardise.adapt(train_x)
    hidden = keras.layers.Dense(32)(standardise(inputs))
    hidden = keras.layers.ReLU()(keras.layers.Dropout(0.25)(hidden))
    outputs = {
        "location": keras.layers.Dense(len(LOCATIONS), name="location")(hidden),
        "membrane": keras.layers.Dense(len(MEMBRANE_LABELS), name="membrane")(hidden),
    }
    return keras.Model(inputs, outputs, name=name)


def average_probabilities(members: Sequence[keras.Model], name: str) -> keras.Model:
    """One model whose outputs are the log of the members' mean softmax probabilities (logits whose softmax is that
    mean); a single member is returned as it is."""
    if len(members) == 1:
        return members[0]
    inputs = _input_like(members[0])
    outputs = [member(inputs) for member in members]
    log_members = keras.ops.log(float(len(members)))
    averaged = {key: keras.layers.Identity(name=key)(keras.ops.logsumexp(
        keras.ops.stack([keras.ops.log_softmax(out[key], axis=-1) for out in outputs]), axis=0) - log_members)
        for key in outputs[0]}
    return keras.Model(inputs, averaged, name=name)


def side_by_side(members: Sequence[keras.Model], name: str) -> keras.Model:
    """The members in one model, output ``<key>`` of member k renamed ``<key>_<k>``: one fit() trains them all on
    the same batches, reading the data once per epoch instead of once per member (the probes' cost is mostly that
    reading: five members side by side took 2.9 times as long as one alone, not 5)."""
    inputs = _input_like(members[0])
    outputs = {}
    for k, member in enumerate(members):
        for key, value in member(inputs).items():
            outputs[f"{key}_{k}"] = keras.layers.Identity(name=f"{key}_{k}")(value)
    return keras.Model(inputs, outputs, name=name)


def _input_like(model: keras.Model) -> keras.KerasTensor:
    """A new input of `model`'s shape and name."""
    return keras.Input(model.inputs[0].shape[1:], name=model.layers[0].name)


def _for_each_member(values: dict, count: int) -> dict:
    """``{key: v}`` as ``{key_0: v, …, key_<count-1>: v}``: the targets (or weights) of every member."""
    return {f"{key}_{k}": value for k in range(count) for key, value in values.items()}


def _members(build, settings: ProbeSettings) -> list[keras.Model]:
    """`build(name)` once per seed, each initialised from its own seed."""
    members = []
    for seed in range(settings.seed, settings.seed + settings.seeds):
        keras.utils.set_random_seed(seed)
        members.append(build(f"seed{seed}"))
    return members


def _compile(model: keras.Model, settings: ProbeSettings) -> None:
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate),
                  loss={name: loss for name in model.output_names}, weighted_metrics=[])


# ---- secondary structure --------------------------------------------------------------------------------------

def structure_labels(records: Sequence[StructureRecord]) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per protein: Q3 and Q8 label indices and the weights of its residues (1 where resolved)."""
    ss3 = [np.array([SS3.index(s) for s in r.dssp3], np.int32) for r in records]
    ss8 = [np.array([SS8.index(s) for s in r.dssp8], np.int32) for r in records]
    masks = [np.array(r.mask if r.mask is not None else [True] * len(r.sequence), np.float32) for r in records]
    return ss3, ss8, masks


def _residue_batches(embeddings: Sequence[np.ndarray], dim: int, ss3, ss8, masks, batch_size: int,
                     order: np.ndarray) -> Iterator:
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        length = max(len(ss3[i]) for i in rows)
        x = np.zeros((len(rows), length, dim), np.float32)
        y3 = np.zeros((len(rows), length), np.int32)
        y8 = np.zeros((len(rows), length), np.int32)
        w = np.zeros((len(rows), length), np.float32)
        for j, i in enumerate(rows):
            n = len(ss3[i])
            x[j, :n], y3[j, :n], y8[j, :n], w[j, :n] = embeddings[i], ss3[i], ss8[i], masks[i]
        yield x, {"ss3": y3, "ss8": y8}, {"ss3": w, "ss8": w}


def _residue_dataset(embeddings, records, settings: ProbeSettings, shuffle: bool) -> tf.data.Dataset:
    ss3, ss8, masks = structure_labels(records)
    dim = embeddings[0].shape[1]
    # Sort by length so batches carry little padding; shuffle the batch order instead of the rows.
    by_length = np.argsort([len(a) for a in ss3], kind="stable")
    batches = [by_length[i : i + settings.batch_size] for i in range(0, len(by_length), settings.batch_size)]
    signature = (tf.TensorSpec((None, None, dim), tf.float32),
                 {k: tf.TensorSpec((None, None), tf.int32) for k in ("ss3", "ss8")},
                 {k: tf.TensorSpec((None, None), tf.float32) for k in ("ss3", "ss8")})
    rng = np.random.default_rng(settings.seed)

    def generate():
        order = rng.permutation(len(batches)) if shuffle else range(len(batches))
        for b in order:
            yield from _residue_batches(embeddings, dim, ss3, ss8, masks, settings.batch_size, batches[b])

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batches)))


def _fit(model: keras.Model, train, valid, settings: ProbeSettings) -> None:
    """Train side-by-side members (early stopping on their summed valid loss, best weights restored)."""
    model.fit(train, validation_data=valid, epochs=settings.epochs, verbose=0, shuffle=False, callbacks=[
        keras.callbacks.EarlyStopping(patience=settings.patience, restore_best_weights=True)])


def _residue_embeddings(embedder: Embedder, records, cache: EmbeddingCache | None, label: str) -> Sequence[np.ndarray]:
    sequences = [r.sequence for r in records]
    if cache is None:
        return [e.residues for e in embedder.embed(sequences)]
    return LazyView(cache, fill(cache, embedder, sequences, label, parts=("residues",)), "residues")


def _protein_embeddings(embedder: Embedder, records, cache: EmbeddingCache | None, label: str) -> np.ndarray:
    sequences = [r.sequence for r in records]
    if cache is None:
        return np.stack([e.protein for e in embedder.embed(sequences)]).astype(np.float32)
    view = LazyView(cache, fill(cache, embedder, sequences, label, parts=("protein",)), "protein")
    return np.stack([view[i] for i in range(len(view))]).astype(np.float32)


def structure_probe(embedder: Embedder, train: Sequence[StructureRecord], valid: Sequence[StructureRecord],
                    tests: dict[str, Sequence[StructureRecord]], settings: ProbeSettings = DEFAULT_SETTINGS,
                    cache: EmbeddingCache | None = None, heads: dict | None = None) -> dict:
    """Train the residue CNN on `train` (early stopping on `valid`), report Q3/Q8 on each test set. With a
    `cache`, embeddings are computed once and read back one protein at a time; the trained CNN goes into `heads`
    (under ``ss``) when given."""
    embed = lambda records, label: _residue_embeddings(embedder, records, cache, f"ss {label}")  # noqa: E731
    train_x, valid_x = embed(train, "train"), embed(valid, "valid")
    members = _members(lambda suffix: residue_cnn(train_x[0].shape[1], f"residue_cnn_{suffix}"), settings)
    joint = side_by_side(members, "residue_cnns")
    _compile(joint, settings)
    per_member = lambda x, y, w: (x, _for_each_member(y, len(members)), _for_each_member(w, len(members)))  # noqa: E731
    _fit(joint, _residue_dataset(train_x, train, settings, True).map(per_member),
         _residue_dataset(valid_x, valid, settings, False).map(per_member), settings)
    model = average_probabilities(members, "residue_cnn")
    if heads is not None:
        heads["ss"] = model
    sets = {name: (valid_x if name == GATE_SET else embed(records, name), records)
            for name, records in {**tests, GATE_SET: valid}.items()}
    return structure_results(model, sets)


def structure_results(model: keras.Model, sets: dict[str, tuple[Sequence[np.ndarray], Sequence[StructureRecord]]]
                      ) -> dict:
    """Q3/Q8 (with per-protein counts for paired intervals) of the residue head `model` on each set, ``{name:
    (residue embeddings, records)}``; each protein is predicted alone."""
    results = {}
    for name, (test_x, records) in sets.items():
        ss3, ss8, masks = structure_labels(records)
        truth3, truth8, pred3, pred8, groups = [], [], [], [], []
        for index, (x, y3, y8, mask) in enumerate(zip(test_x, ss3, ss8, masks)):
            out = model(x[None], training=False)
            keep = mask > 0
            truth3.append(y3[keep]), truth8.append(y8[keep])
            pred3.append(np.argmax(out["ss3"][0], -1)[keep]), pred8.append(np.argmax(out["ss8"][0], -1)[keep])
            groups.append(np.full(int(keep.sum()), index))
        groups = np.concatenate(groups)
        truth3, pred3, truth8, pred8 = map(np.concatenate, (truth3, pred3, truth8, pred8))
        q3 = metrics.report(truth3, pred3, SS3, groups)
        q8 = metrics.report(truth8, pred8, SS8, groups)
        results[name] = {"q3": q3["accuracy"], "q8": q8["accuracy"], "n_residues": q3["n"],
                         "n_proteins": len(records), "ss3": q3, "ss8": q8, PER_PROTEIN: {
                             "q3": metrics.per_protein_counts(truth3 == pred3, groups, len(records)).tolist(),
                             "q8": metrics.per_protein_counts(truth8 == pred8, groups, len(records)).tolist()}}
    return results


# ---- localization and membrane --------------------------------------------------------------------------------

def protein_labels(x: np.ndarray, records: Sequence[LocalizationRecord]):
    """``(x, labels, weights)`` of the protein head: location and membrane indices, membrane weighted 0 where
    unknown."""
    location = np.array([LOCATIONS.index(r.location) for r in records], np.int32)
    membrane = np.array([MEMBRANE_LABELS.index(r.membrane) if r.membrane in MEMBRANE_LABELS else 0
                         for r in records], np.int32)
    membrane_weight = np.array([r.membrane in MEMBRANE_LABELS for r in records], np.float32)
    return x, {"location": location, "membrane": membrane}, {"location": np.ones(len(records), np.float32),
                                                            "membrane": membrane_weight}


def localization_probe(embedder: Embedder, train: Sequence[LocalizationRecord], valid: Sequence[LocalizationRecord],
                       tests: dict[str, Sequence[LocalizationRecord]], settings: ProbeSettings = DEFAULT_SETTINGS,
                       cache: EmbeddingCache | None = None, heads: dict | None = None) -> dict:
    """Train the protein FNN on `train` (early stopping on `valid`), report Q10/Q2 on each test set; the trained
    FNN goes into `heads` (under ``localization``) when given."""
    embed = lambda records, label: _protein_embeddings(embedder, records, cache, f"localization {label}")  # noqa: E731
    train_x, train_y, train_w = protein_labels(embed(train, "train"), train)
    valid_data = protein_labels(embed(valid, "valid"), valid)
    members = _members(lambda suffix: protein_fnn(train_x, f"protein_fnn_{suffix}"), settings)
    joint = side_by_side(members, "protein_fnns")
    _compile(joint, settings)
    each = lambda values: _for_each_member(values, len(members))  # noqa: E731
    joint.fit(train_x, each(train_y), sample_weight=each(train_w),
              validation_data=(valid_data[0], each(valid_data[1]), each(valid_data[2])), epochs=settings.epochs,
              batch_size=settings.batch_size, verbose=0, callbacks=[
                  keras.callbacks.EarlyStopping(patience=settings.patience, restore_best_weights=True)])
    model = average_probabilities(members, "protein_fnn")
    if heads is not None:
        heads["localization"] = model
    sets = {name: (valid_data[0] if name == GATE_SET else embed(records, name), records)
            for name, records in {**tests, GATE_SET: valid}.items()}
    return localization_results(model, sets)


def localization_results(model: keras.Model, sets: dict[str, tuple[np.ndarray, Sequence[LocalizationRecord]]]) -> dict:
    """Q10/Q2 (with per-protein outcomes for paired intervals) of the protein head `model` on each set, ``{name:
    (protein embeddings, records)}``."""
    results = {}
    for name, (embeddings, records) in sets.items():
        x, y, w = protein_labels(embeddings, records)
        out = model.predict(x, verbose=0, batch_size=256)
        location, membrane = np.argmax(out["location"], -1), np.argmax(out["membrane"], -1)
        q10 = metrics.report(y["location"], location, LOCATIONS)
        labelled = w["membrane"] > 0
        q2 = metrics.report(y["membrane"][labelled], membrane[labelled], MEMBRANE_LABELS)
        results[name] = {"q10": q10["accuracy"], "q2": q2["accuracy"], "n_proteins": len(records),
                         "location": q10, "membrane": q2, "_protein_embeddings": x, PER_PROTEIN: {
                             "q10": np.stack([location == y["location"], np.ones(len(records))], 1).astype(float).tolist(),
                             "q2": np.stack([(membrane == y["membrane"]) & labelled, labelled], 1).astype(float).tolist()}}
    return results


def load_shared_layout(data_dir: str, task: str, limit: int | None = None):
    """(train, valid, {"test": …}) of the `../shared/data` layout; `limit` keeps the first rows of each."""
    cut = (lambda rows: rows[:limit]) if limit else (lambda rows: rows)
    if task == "ss":
        read = lambda split: cut(datasets.read_structure_tsv(os.path.join(data_dir, "ss", f"{split}.tsv")))  # noqa: E731
    else:
        read = lambda split: cut(datasets.read_deeploc_fasta(  # noqa: E731
            os.path.join(data_dir, "localization", f"{split}.fasta")))
    return read("train"), read("valid"), {"test": read("test")}


def run_probes(embedder, data_dir: str, task: str, settings: ProbeSettings, limit: int | None, cache,
               maps_dir: str | None = None, maps_prefix: str = "", heads: dict | None = None
               ) -> tuple[dict, dict, list[str]]:
    """The probes of `task` on the sets in `data_dir`: metrics, the test and valid locations (for the plots), and,
    with `maps_dir`, the embedding maps of the valid sets written there (their scores go into the metrics); the
    trained probe models go into `heads` (by task) when given."""
    metrics = {"embedder": embedder.name}
    locations, structures, proteins = {}, [], []
    if task in ("ss", "all"):
        train, structures, tests = load_shared_layout(data_dir, "ss", limit)
        metrics["ss"] = structure_probe(embedder, train, structures, tests, settings, cache, heads)
    if task in ("localization", "all"):
        train, proteins, tests = load_shared_layout(data_dir, "localization", limit)
        metrics["localization"] = localization_probe(embedder, train, proteins, tests, settings, cache, heads)
        locations = {name: [r.location for r in records] for name, records in {**tests, GATE_SET: proteins}.items()}
    written = []
    if maps_dir is not None:
        residues = _residue_embeddings(embedder, structures, cache, "ss valid") if structures else []
        vectors = _protein_embeddings(embedder, proteins, cache, "localization valid") if proteins else None
        metrics["maps"], written = draw_maps(embedder, residues, structures, vectors, proteins, maps_dir, maps_prefix,
                                             settings.seed)
    return metrics, locations, written


def probe_model(embedder, data_dir: str, task: str, output_dir: str, settings: ProbeSettings,
                limit: int | None = None, baseline: bool = True, cache_path: str | None = None,
                maps: bool = True, references: Sequence[Embedder] = (), heads: dict | None = None
                ) -> tuple[dict, list[str]]:
    """Probe `embedder` (and, with `baseline`, the one-hot embedder the same way, and any `references` such as the
    profile embedder) on the sets in `data_dir`; writes ``metrics.json``, the plots and (with `maps`) the embedding
    maps into `output_dir`; returns the metrics and the files written. `heads`, when given, receives the
    embedder's trained probe models by task (what :func:`models.export.predict.write_predictor` serves)."""
    os.makedirs(output_dir, exist_ok=True)
    cache = EmbeddingCache(cache_path or os.path.join(output_dir, "embeddings.h5"))
    maps_dir = output_dir if maps else None
    try:
        metrics, locations, map_files = run_probes(embedder, data_dir, task, settings, limit, cache, maps_dir,
                                                   heads=heads)
        if embedder.name != ONEHOT and baseline:
            metrics["baseline"], _, baseline_maps = run_probes(OneHotEmbedder(), data_dir, task, settings, limit,
                                                               cache, maps_dir, f"{ONEHOT}_")
            map_files += baseline_maps
            metrics["paired"] = {ONEHOT: paired_differences(metrics, metrics["baseline"])}
        for reference in references:
            measured, _, _ = run_probes(reference, data_dir, task, settings, limit, cache)
            metrics.setdefault("references", {})[reference.name] = measured
            metrics.setdefault("paired", {})[reference.name] = paired_differences(metrics, measured)
    finally:
        cache.close()
    return metrics, [report.write_metrics(metrics, output_dir), *report.write_plots(metrics, locations, output_dir),
                     *map_files]


HEADLINE = {"ss": ("q3", "q8"), "localization": ("q10", "q2")}


def headline_results(report: dict) -> Iterator[tuple[str, str, str, str, dict]]:
    """``("ss/valid/q3", "ss", "valid", "q3", result of ss on valid)`` for every headline metric a probe report
    holds."""
    for family, names in HEADLINE.items():
        for set_name, result in report.get(family, {}).items():
            for name in names:
                yield f"{family}/{set_name}/{name}", family, set_name, name, result


def paired_differences(candidate: dict, baseline: dict, sets: tuple[str, ...] | None = None) -> dict[str, dict]:
    """``{"ss/valid/q3": {"difference", "ci95"}, …}``: candidate minus baseline on the same proteins, for every
    headline metric both probe reports hold per protein (of `sets`, default all)."""
    paired = {}
    for key, family, set_name, name, result in headline_results(candidate):
        other = baseline.get(family, {}).get(set_name)
        if (sets and set_name not in sets) or not other or PER_PROTEIN not in result or PER_PROTEIN not in other:
            continue
        paired[key] = metrics.paired_difference(result[PER_PROTEIN][name], other[PER_PROTEIN][name])
    return paired
