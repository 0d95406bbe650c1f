"""ProtXLNet: parity with transformers' XLNet (content stream, memory, query stream of a permutation) and the
behaviours permutation language modelling relies on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models import vocabulary
from models.layers.tied_lm_head import TiedLMHead
from models.protxlnet.backbone import XLNetBackbone
from models.protxlnet.convert import assign_hf_xlnet

FIXTURE = Path(__file__).parent / "fixtures" / "hf" / "protxlnet" / "expected.npz"


@pytest.fixture(scope="module")
def imported():
    expected = dict(np.load(FIXTURE))
    backbone = XLNetBackbone(num_layers=2, hidden_dim=32, num_heads=4, intermediate_dim=64, memory_length=48)
    head = TiedLMHead(backbone)
    backbone.build((None, None))
    head.build((None, None, 32))
    assign_hf_xlnet({k.split(":", 1)[1]: v for k, v in expected.items() if k.startswith("weight:")}, backbone, head)
    return backbone, head, expected


def test_the_fixture_uses_our_token_ids(imported):
    _, _, expected = imported
    sequences = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MSTNPKPQ", "ACDEFGHIKLMNPQRSTVWYX"]
    ids, _ = vocabulary.encode(tf.constant(sequences))
    np.testing.assert_array_equal(ids.numpy(), expected["first"])


def test_content_stream_and_logits_match_transformers(imported):
    backbone, head, expected = imported
    state = backbone.forward(expected["first"])
    valid = expected["first"] != vocabulary.PAD_ID
    np.testing.assert_allclose(state.hidden.numpy()[valid], expected["hidden_first"][valid], atol=1e-4)
    np.testing.assert_allclose(head(state.hidden).numpy()[valid], expected["logits_first"][valid], atol=1e-4)
    memory = np.stack([m.numpy() for m in state.memory])  # [layers, b, mem, h] vs transformers' [layers, mem, b, h]
    np.testing.assert_allclose(memory, np.transpose(expected["memory_first"], (0, 2, 1, 3)), atol=1e-4)


def test_a_second_segment_reading_the_memory_matches_transformers(imported):
    backbone, head, expected = imported
    first = backbone.forward(expected["first"])
    second = backbone.forward(expected["second"], memory=first.memory)
    valid = expected["second"] != vocabulary.PAD_ID
    np.testing.assert_allclose(head(second.hidden).numpy()[valid], expected["logits_second"][valid], atol=1e-4)
    alone = head(backbone.forward(expected["second"]).hidden).numpy()[valid]
    assert np.abs(alone - expected["logits_second"][valid]).max() > 1e-2  # the memory changes the outputs


def test_the_query_stream_of_a_permutation_matches_transformers(imported):
    backbone, head, expected = imported
    state = backbone.forward(expected["first"], permutation_mask=expected["perm_mask"],
                             target_mapping=expected["target_mapping"])
    np.testing.assert_allclose(head(state.query).numpy(), expected["logits_query"], atol=1e-4)


def test_the_query_stream_cannot_see_its_own_token(imported):
    backbone, _, expected = imported
    ids = expected["first"][:1].copy()
    target = 4
    mapping = np.zeros((1, 1, ids.shape[1]), np.float32)
    mapping[0, 0, target] = 1.0
    no_order = np.zeros((1, ids.shape[1], ids.shape[1]), np.float32)
    no_order[0, :, target] = 1.0  # nobody sees the target (as when it comes last in the permutation)
    before = backbone.forward(ids, permutation_mask=no_order, target_mapping=mapping).query.numpy()
    changed = ids.copy()
    changed[0, target] = vocabulary.TOKEN_IDS["W"] if ids[0, target] != vocabulary.TOKEN_IDS["W"] else \
        vocabulary.TOKEN_IDS["A"]
    after = backbone.forward(changed, permutation_mask=no_order, target_mapping=mapping).query.numpy()
    np.testing.assert_allclose(before, after, atol=1e-6)
    content_before = backbone.forward(ids).hidden.numpy()[0, target]
    content_after = backbone.forward(changed).hidden.numpy()[0, target]
    assert np.abs(content_before - content_after).max() > 1e-3  # the content stream does see it


def test_permutation_batches_hide_each_target_from_itself_and_from_what_comes_before_it():
    from models.objectives.permutation_lm import permutation_batch

    ids, _ = vocabulary.encode(tf.constant(["MKTAYIAKQRQISFVKSHFSRQ", "MSTNP"]))
    batch = {k: v.numpy() for k, v in permutation_batch(ids, tf.constant([3, 4], tf.int64), 4).items()}
    for row in range(2):
        targets = batch["target_mapping"][row].argmax(-1)[batch["target_weights"][row] > 0]
        residues = int((ids.numpy()[row] >= vocabulary.FIRST_RESIDUE_ID).sum())
        assert len(targets) == -(-residues // 6)  # the last 1/6 of the order is predicted
        np.testing.assert_array_equal(batch["target_ids"][row][: len(targets)], ids.numpy()[row][targets])
        mask = batch["permutation_mask"][row]
        assert all(mask[t, t] == 1 for t in targets)  # a target's query stream never sees itself
        others = [p for p in range(ids.shape[1]) if p not in targets]
        assert mask[np.ix_(others, others)].sum() == 0  # context sees context, both ways
        assert (mask[np.ix_(others, targets)] == 1).all()  # and no target
        seen = mask[np.ix_(targets, targets)]  # among targets: a strict order, each sees those before it
        assert sorted(seen.sum(axis=1).tolist()) == list(range(1, len(targets) + 1))


def test_protxlnet_trains_on_real_protein_streams_with_memory_and_its_loss_falls(tmp_path):
    from beam_jobs import fasta_to_tfrecords
    from models.training.checkpoints import load_trained_backbone
    from models.training.settings import Phase
    from tests.conftest import SAMPLE_FASTA, train_and_log, train_job

    data = tmp_path / "data"
    fasta_to_tfrecords.run(["--input", str(SAMPLE_FASTA), "--output-dir", str(data), "--num-shards", "2"])
    job = train_job(sorted((data / "train").glob("data-*")), tmp_path / "model", Phase(128, 120, 16),
                    family="protxlnet", optimizer="adamw", learning_rate=5e-3, warmup_steps=10, log_every=10,
                    checkpoint_every=60)
    trainer, metrics, losses = train_and_log(job)
    assert losses[0] > 3.0 and metrics["loss"] < losses[0] - 0.15, losses
    # the tiny preset has a memory: segments of per-lane streams, each lane's memory carried to its next batch
    assert all(np.abs(m.numpy()).max() > 0 for m in trainer.state.model.lane_memory.variables)
    backbone, _ = load_trained_backbone(str(tmp_path / "model"))
    assert isinstance(backbone, XLNetBackbone)


CHECKPOINT = Path(__file__).parent / "fixtures" / "hf" / "protxlnet_checkpoint"


def test_a_hugging_face_xlnet_folder_imports_and_serves_transformers_residue_embeddings(tmp_path, capsys):
    from models.cli import import_checkpoint

    assert import_checkpoint.main(["--from-hf", str(CHECKPOINT), "--family", "protxlnet",
                                   "--output", str(tmp_path / "protxlnet")]) == 0
    expected = np.load(CHECKPOINT / "expected.npz")
    sequences = [str(s) for s in expected["sequences"]]
    signature = tf.saved_model.load(str(tmp_path / "protxlnet" / "1")).signatures["serving_default"]
    served = signature(sequences=tf.constant(sequences))
    for row, sequence in enumerate(sequences):
        np.testing.assert_allclose(served["residue_embeddings"].numpy()[row, : len(sequence)],
                                   expected[f"residues_{row}"], atol=1e-4)


def test_the_sentencepiece_vocabulary_maps_token_by_token(tmp_path):
    from models.hf_checkpoint import CheckpointError, read_sentencepiece_pieces, sentencepiece_rows

    pieces = read_sentencepiece_pieces(str(CHECKPOINT / "spiece.model"))
    rows = sentencepiece_rows(pieces)
    assert [pieces[r] for r in rows[:5]] == ["<pad>", "<unk>", "<cls>", "<sep>", "<mask>"]
    assert pieces[rows[vocabulary.TOKEN_IDS["M"]]] == "\u2581M"
    without_w = [p for p in pieces if p != "\u2581W"]
    assert without_w[sentencepiece_rows(without_w)[vocabulary.TOKEN_IDS["W"]]] == "<unk>"  # as sentencepiece reads W
    with pytest.raises(CheckpointError, match=r"lacks \['\[UNK\]', 'W'\] and has no unknown token"):
        sentencepiece_rows([p for p in without_w if p != "<unk>"])
    broken = tmp_path / "spiece.model"
    broken.write_bytes((CHECKPOINT / "spiece.model").read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated"):
        read_sentencepiece_pieces(str(broken))


def test_every_target_hidden_from_the_context_is_scored_even_in_an_all_residue_segment():
    from models.objectives.permutation_lm import permutation_batch

    ids = tf.constant(np.random.default_rng(0).integers(vocabulary.FIRST_RESIDUE_ID, vocabulary.VOCABULARY_SIZE,
                                                        size=(4, 64)), tf.int32)  # a stream segment: no specials
    for max_predictions in (11, 10):  # ceil(64 / 6) slots, and fewer (the cap)
        batch = {k: v.numpy() for k, v in permutation_batch(ids, tf.constant([1, 2], tf.int64), max_predictions).items()}
        hidden = np.diagonal(batch["permutation_mask"], axis1=1, axis2=2) > 0  # a target never sees itself
        scored = batch["target_mapping"].sum(axis=1) > 0
        np.testing.assert_array_equal(hidden, scored)
        assert (scored.sum(axis=1) == min(11, max_predictions)).all()
