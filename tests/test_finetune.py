"""Fine-tuning for the probe tasks: the heads train together with the backbone (LoRA or full), the run reports
paired differences against the frozen probes of the same starting model, and the export serves the fine-tuned
embeddings and heads (LoRA merged) through ``predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.export.embedding import embed
from models.finetuning.model import enable_lora, merged_backbone
from models.finetuning.run import FROZEN, FinetuneSettings, export, finetune
from models.probes.datasets import SAMPLE_DATA_DIR
from models.registry import get_family
from models.training.state import initial_model

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"
PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MSTNPKPQRKTKRNTNRRPQDVKFPGG"]


def imported(name: str = "protbert", folder: str = "protbert"):
    return get_family(name).import_checkpoint(str(FIXTURES / folder), log=lambda line: None)


def test_lora_trains_only_its_low_rank_weights_and_merges_into_a_plain_backbone():
    backbone = imported().backbone
    before = {w.path: w.numpy() for w in backbone.weights}
    reached = enable_lora(backbone, rank=4)
    assert len(reached) == 12  # query, key, value, attention output, intermediate, output: 2 layers
    assert all("lora_kernel" in w.path for w in backbone.trainable_weights)
    for weight in backbone.trainable_weights:  # a trained update: B starts at zero, so move both
        weight.assign(np.random.default_rng(0).normal(0.0, 0.1, weight.shape).astype(np.float32))
    with_lora = embed(backbone, PROTEINS)
    assert not np.allclose(with_lora[0].residues, embed(imported().backbone, PROTEINS)[0].residues, atol=1e-3)
    merged = merged_backbone(backbone)
    assert not [w for w in merged.weights if "lora" in w.path]
    for ours, theirs in zip(embed(merged, PROTEINS), with_lora):
        np.testing.assert_allclose(ours.residues, theirs.residues, atol=1e-5)
    frozen = {w.path: w.numpy() for w in backbone.weights if "lora_kernel" not in w.path}
    assert all(np.array_equal(frozen[path], before[path]) for path in frozen)


def test_lora_reaches_only_the_feed_forward_of_relative_attention_families():
    backbone = imported("protxlnet", "protxlnet_checkpoint").backbone
    reached = enable_lora(backbone, rank=2)
    assert reached and all(path.split("/")[-1] in ("layer_1", "layer_2") for path in reached)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_finetuning_reports_against_the_frozen_probes_and_exports_what_it_evaluated(method, tmp_path):
    backbone = imported().backbone
    start = {w.path: w.numpy() for w in backbone.weights}
    settings = FinetuneSettings(method=method, epochs=2, batch_size=8, seed=0, probe_seeds=1)
    result = finetune(backbone, "protbert-fixture", SAMPLE_DATA_DIR, settings, limit=24, log=lambda line: None)
    report = result.report
    history = report["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2] and history[1]["train_loss"] > 0
    assert report["best_epoch"] == int(np.argmin([h["valid_loss"] for h in history]))
    for metric in ("ss/test/q3", "ss/valid/q8", "localization/test/q10", "localization/valid/q2"):
        family, set_name, key = metric.split("/")
        assert 0.0 <= report[family][set_name][key] <= 1.0 and 0.0 <= report[FROZEN][family][set_name][key] <= 1.0
        low, high = report["paired"][FROZEN][metric]["ci95"]
        assert low <= report["paired"][FROZEN][metric]["difference"] <= high
    changed = [w.path for w in backbone.weights if w.path in start and not np.array_equal(w.numpy(), start[w.path])]
    if method == "lora":
        assert not changed and all("lora_kernel" in w.path for w in backbone.trainable_weights)
    else:  # every weight trains; they are kept changed unless the frozen start had the lowest valid loss
        assert report["trainable_parameters"] > report["backbone_parameters"]
        assert bool(changed) == (report["best_epoch"] > 0)

    for ours, with_lora in zip(embed(result.served_backbone, PROTEINS), _lora_embeddings(result.model.backbone)):
        np.testing.assert_allclose(ours.residues, with_lora, atol=1e-4)  # what was evaluated is what was trained
    exported = export(result, str(tmp_path / "serving"))
    served = tf.saved_model.load(exported)
    predicted = served.signatures["predict"](sequences=tf.constant(PROTEINS))
    embedded = embed(result.served_backbone, PROTEINS)
    expected = result.model.heads["ss"](embedded[0].residues[None], training=False)["ss3"][0]
    np.testing.assert_allclose(predicted["ss3_probabilities"][0, : len(PROTEINS[0])],
                               tf.nn.softmax(expected, -1), atol=1e-4)
    location = result.model.heads["localization"](np.stack([e.protein for e in embedded]), training=False)
    np.testing.assert_allclose(predicted["location_probabilities"], tf.nn.softmax(location["location"], -1),
                               atol=1e-4)
    vectors = served.signatures["serving_default"](sequences=tf.constant(PROTEINS))["protein_embeddings"]
    np.testing.assert_allclose(vectors, np.stack([e.protein for e in embedded]), atol=1e-5)
    # The export (with its `predict` heads) starts another run: the backbone it serves, read back into Keras.
    again = initial_model(get_family("protbert"), exported, log=lambda line: None, with_head=False).backbone
    for ours, theirs in zip(embed(again, PROTEINS), embedded):
        np.testing.assert_allclose(ours.residues, theirs.residues, atol=1e-5)


def _lora_embeddings(backbone) -> list[np.ndarray]:
    """Residue embeddings computed by the backbone's own layers (LoRA applied in each call), without a trace."""
    from models import vocabulary

    token_ids, lengths = vocabulary.encode(tf.constant(PROTEINS))
    hidden = backbone(token_ids, training=False).numpy()
    return [hidden[row, 1 : 1 + length] for row, length in enumerate(lengths.numpy())]


def test_fine_tuning_starts_from_the_frozen_probes_and_keeps_them_when_no_epoch_beats_them():
    """Linear probing, then fine-tuning: the heads begin as the trained frozen probes, and the state before the
    first epoch competes for the lowest valid loss. With a learning rate too small to move anything, the result
    is the frozen probes exactly: every paired difference is 0."""
    backbone = imported().backbone
    settings = FinetuneSettings(epochs=1, batch_size=8, learning_rate=1e-12, tasks=("ss",), probe_seeds=1)
    report = finetune(backbone, "protbert-fixture", SAMPLE_DATA_DIR, settings, limit=16, log=lambda line: None).report
    assert report["ss"]["test"]["q3"] == report[FROZEN]["ss"]["test"]["q3"]
    assert all(line["difference"] == 0.0 for line in report["paired"][FROZEN].values())


def test_bad_settings_are_refused_naming_them():
    with pytest.raises(ValueError, match="method"):
        FinetuneSettings(method="adapters")
    with pytest.raises(ValueError, match="tasks"):
        FinetuneSettings(tasks=("contacts",))


def test_a_saved_model_of_ours_without_a_head_is_a_starting_model_for_fine_tuning(tmp_path):
    """Fine-tuning needs the backbone only: an encoder-only or fine-tuned export (its TF Serving model folder) starts
    a run with the embeddings it serves."""
    from models.export.signatures import export_saved_model

    backbone = imported().backbone
    export_saved_model(backbone, str(tmp_path / "serving"))
    model = initial_model(get_family("protbert"), str(tmp_path / "serving"), log=lambda line: None, with_head=False)
    for ours, exported in zip(embed(model.backbone, PROTEINS), embed(backbone, PROTEINS)):
        np.testing.assert_allclose(ours.residues, exported.residues, atol=1e-6)
