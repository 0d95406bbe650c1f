"""The canonical vocabulary of docs/contracts.md and in-graph tokenisation of raw sequence strings."""

import tensorflow as tf

from models import vocabulary


def test_token_ids_are_the_design_contract():
    assert vocabulary.TOKENS[:5] == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert (vocabulary.PAD_ID, vocabulary.UNK_ID, vocabulary.CLS_ID, vocabulary.SEP_ID, vocabulary.MASK_ID) == (0, 1, 2, 3, 4)
    assert "".join(vocabulary.TOKENS[5:]) == "ACDEFGHIKLMNPQRSTVWYX"
    assert vocabulary.VOCABULARY_SIZE == 26


def test_tokenize_maps_lowercase_rare_and_unknown_characters():
    ids = vocabulary.tokenize(tf.constant(["MkT", "UZOBuzob", "M*1é"])).to_list()
    assert vocabulary.decode(ids[0]) == "MKT"
    assert ids[1] == [vocabulary.TOKEN_IDS["X"]] * 8
    assert ids[2][0] == vocabulary.TOKEN_IDS["M"]
    assert set(ids[2][1:]) == {vocabulary.UNK_ID}


def test_encode_adds_cls_and_sep_pads_and_reports_lengths():
    token_ids, lengths = vocabulary.encode(tf.constant(["MKT", "", "ACDEF"]))
    assert lengths.numpy().tolist() == [3, 0, 5]
    assert token_ids.numpy().tolist() == [
        [2, 15, 13, 21, 3, 0, 0],
        [2, 3, 0, 0, 0, 0, 0],
        [2, 5, 6, 7, 8, 9, 3],
    ]


def test_encode_truncates_only_when_asked():
    token_ids, lengths = vocabulary.encode(tf.constant(["ACDEFGH"]), max_length=4)
    assert lengths.numpy().tolist() == [4]
    assert vocabulary.decode(token_ids[0]) == "ACDE"
    assert token_ids.numpy()[0, -1] == vocabulary.SEP_ID


def test_tokenisation_works_inside_a_tf_function_with_unknown_batch_size():
    encode = tf.function(vocabulary.encode, input_signature=[tf.TensorSpec([None], tf.string)])
    token_ids, lengths = encode(tf.constant(["MK", "MKTA"]))
    assert token_ids.shape == (2, 6) and lengths.numpy().tolist() == [2, 4]
