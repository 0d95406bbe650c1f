"""Published Hugging Face ProtBert/ProtAlbert checkpoints import with an explicit vocabulary mapping and give
the same logits and hidden states as transformers (fixtures: tests/fixtures/make_hf_fixtures.py)."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models import hf_checkpoint, vocabulary
from models.hf_checkpoint import CheckpointError
from models.objectives.masked_lm import MASKED_LM
from models.registry import FAMILIES

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"
TOLERANCE = 1e-4
MASKED_LM_FAMILIES = sorted(name for name, family in FAMILIES.items() if family.objective is MASKED_LM)


def expected(family: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / family / "expected.npz"))


@pytest.mark.parametrize("family", MASKED_LM_FAMILIES)
def test_imported_model_matches_transformers(family):
    reference = expected(family)
    model = FAMILIES[family].import_checkpoint(str(FIXTURES / family))
    token_ids, _ = vocabulary.encode(tf.constant(reference["sequences"]))
    hidden = model.backbone(token_ids).numpy()
    logits = model({"token_ids": token_ids}).numpy()
    mask = reference["token_ids"] != 0  # padded positions are not compared
    assert np.abs(hidden - reference["last_hidden_state"])[mask].max() <= TOLERANCE
    # the head keeps the checkpoint's whole vocabulary, in its order: the publisher's softmax
    assert logits.shape == reference["logits"].shape
    assert np.abs(logits - reference["logits"])[mask].max() <= TOLERANCE


def test_pytorch_bin_reads_without_torch_like_safetensors():
    from safetensors.numpy import load_file

    from_bin = hf_checkpoint.read_pytorch_bin(str(FIXTURES / "protbert" / "pytorch_model.bin"))
    from_safetensors = load_file(str(FIXTURES / "protbert" / "model.safetensors"))
    for name, array in from_safetensors.items():
        np.testing.assert_array_equal(from_bin[name], array)


def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int_tuple(values) -> bytes:
    return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"


def write_torch_zip(path: Path, tensors: list[tuple], extra_global: bytes = b"") -> Path:
    """A ``torch.save``-layout zip written opcode by opcode (torch is not installed): each tensor is (name, storage
    class, storage bytes, offset, shape, stride)."""
    pickled = b"\x80\x02ccollections\nOrderedDict\n)R(" + extra_global
    for key, (name, storage, data, offset, shape, stride) in enumerate(tensors):
        pickled += _unicode(name) + b"ctorch._utils\n_rebuild_tensor_v2\n("
        pickled += b"(" + _unicode("storage") + f"ctorch\n{storage}\n".encode() + _unicode(str(key)) + \
            _unicode("cpu") + b"J" + struct.pack("<i", len(data) // 4) + b"tQ"
        pickled += b"J" + struct.pack("<i", offset) + _int_tuple(shape) + _int_tuple(stride)
        pickled += b"\x89ccollections\nOrderedDict\n)RtR"
    pickled += b"u."
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        for key, (_, _, data, *_rest) in enumerate(tensors):
            archive.writestr(f"archive/data/{key}", data)
    return path


def test_a_hand_written_torch_zip_reads_back_with_its_strides(tmp_path):
    values = np.arange(12, dtype=np.float32)
    path = write_torch_zip(tmp_path / "ok.bin", [("w", "FloatStorage", values.tobytes(), 2, (2, 3), (1, 2)),
                                                 ("b", "FloatStorage", values.tobytes(), 0, (0,), (1,))])
    read = hf_checkpoint.read_pytorch_bin(str(path))
    np.testing.assert_array_equal(read["w"], np.lib.stride_tricks.as_strided(values[2:], (2, 3), (4, 8)))
    assert read["b"].shape == (0,)


@pytest.mark.parametrize("tensor, message", [
    (("w", "FloatStorage", np.zeros(4, np.float32).tobytes(), 0, (100,), (1,)), "reaches past its storage"),
    (("w", "FloatStorage", np.zeros(4, np.float32).tobytes(), 3, (2,), (1,)), "reaches past its storage"),
    (("w", "FloatStorage", np.zeros(4, np.float32).tobytes(), 0, (2, 2), (-1, 1)), "non-negative integers"),
    (("w", "FloatStorage", np.zeros(4, np.float32).tobytes(), 0, (2**31 - 1, 2**31 - 1), (0, 0)),
     "reaches past its storage"),
    (("w", "FloatStorage", np.zeros(4, np.float32).tobytes(), 0, (2, 2), (1,)), "do not match"),
    (("w", "EvilStorage", np.zeros(4, np.float32).tobytes(), 0, (4,), (1,)), "unsupported tensor storage"),
    (("w", "FloatStorage", b"\x00" * 7, 0, (1,), (1,)), "not a readable torch checkpoint"),
])
def test_a_corrupt_torch_zip_is_refused_naming_the_tensor_never_read_out_of_bounds(tmp_path, tensor, message):
    path = write_torch_zip(tmp_path / "bad.bin", [tensor])
    with pytest.raises(CheckpointError, match=message) as error:
        hf_checkpoint.read_pytorch_bin(str(path))
    assert str(path) in str(error.value)
    if "storage" in message and "unsupported" not in message:
        assert "tensor 'w'" in str(error.value)


def test_a_torch_zip_cut_short_or_calling_other_code_is_refused(tmp_path):
    good = write_torch_zip(tmp_path / "good.bin", [("w", "FloatStorage", np.zeros(4, np.float32).tobytes(), 0,
                                                     (4,), (1,))])
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="truncated.bin"):
        hf_checkpoint.read_pytorch_bin(str(truncated))
    evil = write_torch_zip(tmp_path / "evil.bin", [], extra_global=b"cos\nsystem\n")
    with pytest.raises(CheckpointError, match="refusing to unpickle os.system"):
        hf_checkpoint.read_pytorch_bin(str(evil))


def test_vocabulary_mapping_takes_each_token_s_row_or_the_unknown_token_s():
    theirs = (FIXTURES / "protbert" / "vocab.txt").read_text().split()
    rows = hf_checkpoint.vocabulary_rows(theirs)
    assert [theirs[row] for row in rows] == list(vocabulary.TOKENS)
    without_x = [t for t in theirs if t != "X"]
    rows = hf_checkpoint.vocabulary_rows(without_x)  # as BertTokenizer reads an X it lacks: [UNK]
    assert [without_x[row] for row in rows] == [t if t != "X" else "[UNK]" for t in vocabulary.TOKENS]
    with pytest.raises(CheckpointError, match=r"lacks \['\[UNK\]', 'X'\] and has no unknown token"):
        hf_checkpoint.vocabulary_rows([t for t in without_x if t != "[UNK]"])


def test_wrong_family_and_broken_folders_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="expects a 'albert' checkpoint, not 'bert'"):
        FAMILIES["protalbert"].import_checkpoint(str(FIXTURES / "protbert"))
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURES / "protbert", broken)
    (broken / "model.safetensors").unlink()
    (broken / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="neither model.safetensors nor pytorch_model.bin"):
        FAMILIES["protbert"].import_checkpoint(str(broken))


def _broken_safetensors(header: bytes | None = None, length: int | None = None) -> bytes:
    header = header if header is not None else b'{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}'
    return (length if length is not None else len(header)).to_bytes(8, "little") + header + b"\0" * 8


@pytest.mark.parametrize("damage, message", [
    ({"model.safetensors": _broken_safetensors()}, "model.safetensors: not a readable safetensors file"),
    ({"model.safetensors": _broken_safetensors(length=1 << 62)}, "model.safetensors: not a readable safetensors"),
    ({"model.safetensors": _broken_safetensors(b'{"w": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}')},
     "model.safetensors: not a readable safetensors file"),
    ({"config.json": b'{"model_type": "bert", '}, "config.json: not valid JSON"),
    ({"config.json": b"[1, 2]"}, "config.json: expected a JSON object, not list"),
    ({"weights": "nan"}, "weight 'bert.embeddings.word_embeddings.weight' holds NaN or infinite values"),
    ({"config": {"hidden_size": 48}}, "the weights do not fit the model its config.json describes"),
])
def test_a_damaged_checkpoint_is_refused_in_one_line_naming_the_file(tmp_path, capsys, damage, message):
    from safetensors.numpy import load_file, save_file

    from models.cli import import_checkpoint

    folder = tmp_path / "damaged"
    shutil.copytree(FIXTURES / "protbert", folder)
    (folder / "pytorch_model.bin").unlink(missing_ok=True)
    for name, content in damage.items():
        if name == "weights":
            weights = load_file(folder / "model.safetensors")
            weights["bert.embeddings.word_embeddings.weight"][3, 1] = np.nan
            save_file(weights, folder / "model.safetensors")
        elif name == "config":
            config = json.loads((folder / "config.json").read_text())
            (folder / "config.json").write_text(json.dumps({**config, **content}))
        else:
            (folder / name).write_bytes(content)
    assert import_checkpoint.main(["--from-hf", str(folder), "--family", "protbert",
                                   "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and message in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_cli_exports_a_serving_version_that_embeds_like_transformers(tmp_path):
    from models.cli import import_checkpoint

    assert import_checkpoint.main(["--from-hf", str(FIXTURES / "protbert"), "--family", "protbert",
                                   "--output", str(tmp_path / "protbert")]) == 0
    signature = tf.saved_model.load(str(tmp_path / "protbert" / "1")).signatures["serving_default"]
    reference = expected("protbert")
    served = signature(sequences=tf.constant(reference["sequences"]))
    length = len(reference["sequences"][1])
    np.testing.assert_allclose(served["residue_embeddings"].numpy()[1, :length],
                               reference["last_hidden_state"][1, 1 : 1 + length], atol=TOLERANCE)
    assert json.loads((FIXTURES / "protbert" / "config.json").read_text())["model_type"] == "bert"


def test_a_protein_bert_of_another_group_imports_with_its_own_vocabulary_and_skips_its_extra_head(tmp_path, capsys):
    """The fixture (tests/fixtures/make_hf_fixtures.py other_bert) has 25 tokens — the 20 residues, no X — a
    classifier on the pooled output beside the masked-LM head, and its own `architectures` name."""
    from models.cli import import_checkpoint

    folder = FIXTURES / "other_bert"
    reference = expected("other_bert")
    logged: list[str] = []
    model = FAMILIES["protbert"].import_checkpoint(str(folder), log=logged.append)
    assert len(logged) == 1 and logged[0].startswith("skipped 4 weight(s) of heads beside the family's own")
    assert all(name in logged[0] for name in ("bert.pooler.dense.weight", "classifier.bias", "classifier.weight"))
    token_ids, lengths = vocabulary.encode(tf.constant(reference["sequences"]))
    # our ids reach the rows its own BertTokenizer gives, X included (its [UNK])
    np.testing.assert_array_equal(vocabulary.checkpoint_rows(token_ids, model.backbone.token_rows).numpy(),
                                  reference["token_ids"])
    mask = reference["token_ids"] != 0
    hidden = model.backbone(token_ids).numpy()
    logits = model({"token_ids": token_ids}).numpy()
    assert logits.shape[-1] == 25  # its softmax, over its whole vocabulary
    assert np.abs(hidden - reference["last_hidden_state"])[mask].max() <= TOLERANCE
    assert np.abs(logits - reference["logits"])[mask].max() <= TOLERANCE

    assert import_checkpoint.main(["--from-hf", str(folder), "--family", "protbert",
                                   "--output", str(tmp_path / "served")]) == 0
    assert "prottrans-import: skipped 4 weight(s)" in capsys.readouterr().out
    served = tf.saved_model.load(str(tmp_path / "served" / "1")).signatures["serving_default"](
        sequences=tf.constant(reference["sequences"]))
    for row, length in enumerate(lengths.numpy()):
        np.testing.assert_allclose(served["residue_embeddings"][row, :length].numpy(),
                                   reference["last_hidden_state"][row, 1 : length + 1], atol=TOLERANCE)
