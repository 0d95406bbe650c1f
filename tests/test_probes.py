"""The probes learn what is learnable, and `prottrans-probe` writes the metrics.json of docs/contracts.md and plots for a
one-hot baseline, a SavedModel and a training directory."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from models.probes import probe
from models.probes.datasets import LOCATIONS, LocalizationRecord, StructureRecord
from models.export.embedders import OneHotEmbedder, load_embedder
from tests.foreign_models import CompositionModel

# Residue → structure state: a labelling a one-hot CNN can learn exactly.
STATE_OF = {"A": "H", "L": "H", "M": "G", "V": "E", "I": "E", "Y": "B", "G": "C", "P": "T", "N": "S", "D": "C"}
THREE = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E", "T": "C", "S": "C", "C": "C"}
# Location ← a residue each location's proteins are rich in.
RICH_IN = {"Nucleus": "K", "Cytoplasm": "E", "Extracellular": "C", "Mitochondrion": "R", "Cell.membrane": "L"}


def structure_records(n: int, rng: random.Random) -> list[StructureRecord]:
    records = []
    for i in range(n):
        sequence = "".join(rng.choice(list(STATE_OF)) for _ in range(rng.randint(20, 60)))
        dssp8 = "".join(STATE_OF[r] for r in sequence)
        records.append(StructureRecord(f"s{i}", sequence, dssp8, "".join(THREE[s] for s in dssp8)))
    return records


def localization_records(n: int, rng: random.Random) -> list[LocalizationRecord]:
    records = []
    for i in range(n):
        location = rng.choice(list(RICH_IN))
        body = [rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(50, 120))]
        body += [RICH_IN[location]] * (len(body) // 3)
        rng.shuffle(body)
        records.append(LocalizationRecord(f"p{i}", "".join(body), location, "M" if location == "Cell.membrane" else "S"))
    return records


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data folder in the layout of ../shared/data, with learnable labels."""
    root = tmp_path_factory.mktemp("probe_data")
    rng = random.Random(0)
    (root / "ss").mkdir()
    (root / "localization").mkdir()
    for split, n in (("train", 150), ("valid", 30), ("test", 40)):
        with open(root / "ss" / f"{split}.tsv", "w") as handle:
            handle.write("id\tsequence\tdssp8\tdssp3\tasa\n")
            for r in structure_records(n, rng):
                handle.write(f"{r.id}\t{r.sequence}\t{r.dssp8}\t{r.dssp3}\t\n")
        with open(root / "localization" / f"{split}.fasta", "w") as handle:
            for r in localization_records(n * 2, rng):
                test = " test" if split == "test" else ""
                handle.write(f">{r.id} {r.location}-{r.membrane}{test}\n{r.sequence}\n")
    return root


def test_probes_learn_learnable_labels_from_one_hot_residues(data_dir):
    settings = probe.ProbeSettings(epochs=60, patience=8, learning_rate=1e-2, seeds=2)
    train, valid, tests = probe.load_shared_layout(str(data_dir), "ss")
    ss = probe.structure_probe(OneHotEmbedder(), train, valid, tests, settings)["test"]
    assert ss["q3"] > 0.95 and ss["q8"] > 0.9
    assert ss["n_residues"] == sum(len(r.sequence) for r in tests["test"])
    train, valid, tests = probe.load_shared_layout(str(data_dir), "localization")
    loc = probe.localization_probe(OneHotEmbedder(), train, valid, tests, settings)["test"]
    assert loc["q10"] > 0.8 and loc["q2"] > 0.8


def test_one_hot_embeddings_are_residue_indicators_and_composition():
    [embedding] = OneHotEmbedder().embed(["AAKX"])
    assert embedding.residues.shape == (4, 21) and (embedding.residues.sum(axis=1) == 1).all()
    np.testing.assert_allclose(embedding.protein[0], 0.5)  # A is half the protein


def check_metrics_file(output: Path, embedder: str) -> dict:
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["embedder"] == embedder
    ss, loc = metrics["ss"]["test"], metrics["localization"]["test"]
    assert 0 <= ss["q3"] <= 1 and 0 <= ss["q8"] <= 1 and ss["n_residues"] > 0
    assert 0 <= loc["q10"] <= 1 and 0 <= loc["q2"] <= 1 and loc["n_proteins"] == 80
    assert ss["ss3"]["ci95"][0] <= ss["q3"] <= ss["ss3"]["ci95"][1]
    assert set(loc["location"]["per_class"]) == set(LOCATIONS)
    assert (output / "ss_test.png").stat().st_size > 10_000
    assert (output / "localization_test.png").stat().st_size > 10_000
    return metrics


def test_cli_on_the_one_hot_baseline(data_dir, tmp_path, capsys):
    from models.cli import probe as cli

    assert cli.main(["--model", "onehot", "--data-dir", str(data_dir), "--output", str(tmp_path / "out"),
                     "--seeds", "2"]) == 0
    metrics = check_metrics_file(tmp_path / "out", "onehot")
    assert "baseline" not in metrics
    assert "ss test Q3" in capsys.readouterr().out


def test_cli_on_a_saved_model_reports_it_beside_the_baseline(data_dir, tmp_path):
    from models.cli import probe as cli
    from models.registry import build_backbone
    from models.export.signatures import export_saved_model

    export_saved_model(build_backbone("protbert", "tiny"), str(tmp_path / "serving" / "protbert"))
    assert cli.main(["--model", str(tmp_path / "serving" / "protbert"), "--data-dir", str(data_dir),
                     "--output", str(tmp_path / "out"), "--limit", "40", "--seeds", "2",
                     "--predictor-dir", str(tmp_path / "serving" / "protbert_predict")]) == 0
    import tensorflow as tf

    predictor = tf.saved_model.load(str(tmp_path / "serving" / "protbert_predict" / "1"))
    assert set(predictor.signatures) == {"serving_default", "serving_float16", "predict"}
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["embedder"].endswith("protbert/1")
    assert metrics["baseline"]["embedder"] == "onehot"
    assert set(metrics["baseline"]["ss"]["test"]) >= {"q3", "q8", "n_residues"}
    # paired differences against one-hot for every headline metric, on valid (gated) and test (reported)
    assert {"ss/valid/q3", "ss/test/q8", "localization/valid/q10", "localization/test/q2"} <= set(
        metrics["paired"]["onehot"])
    low, high = metrics["paired"]["onehot"]["ss/test/q3"]["ci95"]
    assert low <= metrics["paired"]["onehot"]["ss/test/q3"]["difference"] <= high
    # the maps, for the model and for one-hot, each a picture and a number
    for prefix, report in (("", metrics), ("onehot_", metrics["baseline"])):
        assert set(report["maps"]) == {"amino_acids_contextual", "residues", "proteins"}
        assert -1 <= report["maps"]["amino_acids_contextual"]["charge"] <= 1
        for name in ("amino_acids", "residues", "proteins"):
            assert (tmp_path / "out" / f"{prefix}map_{name}.png").stat().st_size > 5_000


def test_a_training_directory_is_a_model(tmp_path):
    import tensorflow as tf

    from beam_jobs import fasta_to_tfrecords
    from models.training.settings import Phase
    from models.training.trainer import build_trainer
    from tests.conftest import SAMPLE_FASTA, train_job

    data = tmp_path / "data"
    fasta_to_tfrecords.run(["--input", str(SAMPLE_FASTA), "--output-dir", str(data)])
    files = tuple(str(p) for p in (data / "train").glob("data-*"))
    trainer = build_trainer(train_job(files, tmp_path / "run", Phase(64, 2, 4), family="protalbert"),
                            log=lambda _: None)
    trainer.train()
    embedder = load_embedder(str(tmp_path / "run"))
    [loaded] = embedder.embed(["MKTAYIAK"])
    from models.export import embedding

    [expected] = embedding.embed(trainer.state.backbone, ["MKTAYIAK"])
    np.testing.assert_allclose(loaded.residues, expected.residues, atol=1e-6)
    assert tf.io.gfile.exists(str(tmp_path / "run" / "backbone_config.json"))


def test_an_unknown_model_is_a_clear_error(data_dir, tmp_path, capsys):
    from models.cli import probe as cli

    assert cli.main(["--model", str(tmp_path), "--data-dir", str(data_dir), "--output", str(tmp_path / "o")]) == 2
    assert "not a SavedModel" in capsys.readouterr().err


class CountingEmbedder(OneHotEmbedder):
    identity = "counting-onehot"

    def __init__(self):
        self.embedded = 0

    def embed(self, sequences):
        self.embedded += len(sequences)
        return super().embed(sequences)


def test_the_cache_embeds_each_sequence_once_and_reads_back_lazily(data_dir, tmp_path):
    from models.probes.cache import EmbeddingCache

    settings = probe.ProbeSettings(epochs=2, seeds=1)
    train, valid, tests = probe.load_shared_layout(str(data_dir), "ss", limit=20)
    embedder = CountingEmbedder()
    cache = EmbeddingCache(str(tmp_path / "cache.h5"))
    first = probe.structure_probe(embedder, train, valid, tests, settings, cache)
    embedded = embedder.embedded
    assert embedded == len({r.sequence for records in (train, valid, tests["test"]) for r in records})
    second = probe.structure_probe(embedder, train, valid, tests, settings, cache)
    cache.close()
    assert embedder.embedded == embedded  # nothing re-embedded
    assert first["test"]["q3"] == second["test"]["q3"]  # same seed, same embeddings, same probe


def test_a_model_that_does_not_window_gets_long_sequences_in_pieces():
    from models.export import embedding
    from models.registry import build_backbone

    backbone = build_backbone("protbert", "tiny", max_sequence_length=12)  # 10 residues at most
    run = lambda batch: embedding.embed_strings(backbone, batch)  # noqa: E731 — as a SavedModel signature
    long = "MKTAYIAKQRQISFVKSHFSRQ"  # 22 residues: 3 pieces of 8, 8, 6
    [whole] = embedding.embed_with_limit(run, [long], 10, max_tokens_per_batch=1000)
    pieces = embedding.embed(backbone, ["MKTAYIAK", "QRQISFVK", "SHFSRQ"])
    np.testing.assert_allclose(whole.residues, np.concatenate([p.residues for p in pieces]), atol=1e-5)
    np.testing.assert_allclose(whole.protein, whole.residues.mean(axis=0), atol=1e-6)


def test_a_plain_saved_model_is_an_embedder_cut_by_its_own_lengths_and_limit(tmp_path):
    CompositionModel.export(tmp_path / "foreign")
    embedder = load_embedder(str(tmp_path / "foreign"))
    assert embedder.max_residues is None  # no model info: no limit
    [starred] = embedder.embed(["MKTA*"])
    assert starred.residues.shape == (4, 26)  # its lengths, not the string's
    chunked = load_embedder(str(tmp_path / "foreign"), max_residues=4)
    [whole], [pieces] = embedder.embed(["MKTAYIAKQRQ"]), chunked.embed(["MKTAYIAKQRQ"])
    np.testing.assert_allclose(pieces.residues, whole.residues)
    np.testing.assert_allclose(pieces.protein, whole.protein, atol=1e-6)  # one protein-vector definition


def test_a_saved_model_without_the_serving_signature_is_refused_clearly(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda x: x, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "other"), signatures={"serving_default": module.f})
    with pytest.raises(ValueError, match="no 'serving_default' signature taking 'sequences'"):
        load_embedder(str(tmp_path / "other"))


def test_the_cache_keeps_only_what_each_probe_reads(tmp_path):
    import h5py

    from models.probes.cache import EmbeddingCache

    rng = random.Random(0)
    path = tmp_path / "cache.h5"
    cache = EmbeddingCache(str(path))
    probe.localization_probe(OneHotEmbedder(), localization_records(60, rng), localization_records(20, rng),
                             {"test": localization_records(20, rng)}, probe.ProbeSettings(epochs=2, seeds=1), cache)
    cache.close()
    with h5py.File(path) as stored:
        assert len(stored) > 0 and all(set(stored[key]) == {"protein"} for key in stored)


@pytest.mark.skipif(not __import__("shutil").which("mmseqs"), reason="needs MMseqs2 (Debian: apt-get install mmseqs2)")
def test_the_profile_embedder_gives_each_residue_its_homologues_profile(tmp_path):
    from beam_jobs.fasta import read_fasta
    from models.probes.profile import ProfileEmbedder
    from tests.conftest import SAMPLE_FASTA

    database = tmp_path / "db.fasta"
    records = [record for _, record in zip(range(300), read_fasta(str(SAMPLE_FASTA)))]
    database.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
    embedder = ProfileEmbedder(str(database), threads=1)
    known, unrelated = records[5].sequence, "WPWPWPWPGCGCGCHKHKHKWPWP"
    [homologous, lonely, empty] = embedder.embed([known, unrelated, ""])
    assert homologous.residues.shape == (len(known), 21) and lonely.residues.shape == (len(unrelated), 21)
    assert homologous.residues[:, 20].max() > 0 and lonely.residues[:, 20].max() == 0  # log(1 + coverage)
    assert empty.residues.shape == (0, 21)
    np.testing.assert_allclose(homologous.protein, homologous.residues.mean(axis=0), atol=1e-6)


def test_the_profile_model_needs_its_database(data_dir, tmp_path, capsys):
    from models.cli import probe as cli

    assert cli.main(["--model", "profile", "--data-dir", str(data_dir), "--output", str(tmp_path / "out")]) == 2
    assert "--model profile needs --profile-db" in capsys.readouterr().err


def test_a_map_scores_the_property_its_embeddings_encode(tmp_path):
    from models.probes.maps import PROPERTIES, draw_maps

    charge = PROPERTIES["charge"]
    classes = sorted(set(charge.values()))
    rng = np.random.default_rng(0)

    def encode(sequence):  # each residue: its charge class, plus noise
        return np.stack([np.eye(3)[classes.index(charge.get(r, "neutral"))] + rng.normal(0, 0.05, 3) for r in sequence])

    letters = random.Random(1)
    records = []
    for i in range(40):
        sequence = "".join(letters.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(50))
        states = "".join(letters.choice("HEC") for _ in sequence)
        records.append(StructureRecord(f"s{i}", sequence, states, states))
    scores, files = draw_maps(OneHotEmbedder(), [encode(r.sequence) for r in records], records, None, [],
                              str(tmp_path))
    contextual = scores["amino_acids_contextual"]
    assert contextual["charge"] > 0.3 and contextual["charge"] > contextual["size"] + 0.2
    assert [Path(f).name for f in files] == ["map_amino_acids.png", "map_residues.png"]


@pytest.mark.slow
def test_the_probes_repeat_every_number_across_processes_and_round_off_moves_them_little(tmp_path):
    """On real probe sets (the bundled ones, 40 rows of each split): the same embedding cache, seed and settings give
    the same metrics.json in two processes, and what differs between CPUs (one intra-op thread instead of two, oneDNN
    off, the embeddings' last bits) moves no headline metric by more than a quarter of its 95% interval's width."""
    from bench.probe_spread import VARIANTS, fill_cache, probe_in_subprocess, spread
    from models.probes.datasets import SAMPLE_DATA_DIR

    cache = str(tmp_path / "embeddings.h5")
    fill_cache(OneHotEmbedder(), SAMPLE_DATA_DIR, "all", 40, cache)

    def run(threads, onednn, jitter, jitter_seed):
        metrics = probe_in_subprocess(cache, "onehot", SAMPLE_DATA_DIR, "all", 2, 40, threads, onednn, jitter,
                                      jitter_seed)
        metrics.pop("seconds")
        return metrics

    first, again = run(*VARIANTS[0]), run(*VARIANTS[0])
    assert first == again and first["ss"]["valid"]["per_protein"]
    runs = [first, *(run(*VARIANTS[index]) for index in (1, 2, 4))]  # one thread, oneDNN off, jitter
    for metric, row in spread(runs).items():
        assert row["spread"] <= row["interval_width"] / 4, (metric, row)
