"""The canonical vocabulary of the models we train (docs/contracts.md), and in-graph tokenisation.

``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4``, then the 20 standard residues and ``X``. Tokenisation runs
inside the TF graph with core ops only (UTF-8 decode and a gather from a constant 256-entry table), so a
SavedModel that takes raw sequence strings loads in a stock TF Serving binary. Lower-case residues map like
upper-case ones and ``U Z O B`` map to ``X``, as the Beam job's normalisation does; anything else is
``[UNK]``.

An imported checkpoint keeps its own vocabulary: its embedding table and LM head keep every row, in the
publisher's order, and the backbone's ``token_rows`` maps each of our token ids to the row the checkpoint's own
tokenizer would use (:func:`checkpoint_rows`): the same token, or the checkpoint's unknown token for one it lacks.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from beam_jobs.sequences import RARE_RESIDUES, RESIDUES, UNKNOWN_RESIDUE

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
TOKENS = SPECIAL_TOKENS + tuple(RESIDUES)
TOKEN_IDS = {token: index for index, token in enumerate(TOKENS)}
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = (TOKEN_IDS[token] for token in SPECIAL_TOKENS)
FIRST_RESIDUE_ID = len(SPECIAL_TOKENS)
VOCABULARY_SIZE = len(TOKENS)


def _byte_table() -> np.ndarray:
    table = np.full(256, UNK_ID, dtype=np.int32)
    for residue in RESIDUES:
        table[ord(residue)] = table[ord(residue.lower())] = TOKEN_IDS[residue]
    for rare in RARE_RESIDUES:
        table[ord(rare)] = table[ord(rare.lower())] = TOKEN_IDS[UNKNOWN_RESIDUE]
    return table


BYTE_TO_ID = _byte_table()


def tokenize(sequences: tf.Tensor) -> tf.RaggedTensor:
    """Residue ids of a batch of sequence strings (``[batch]`` tf.string → ragged ``[batch, (length)]`` int32).

    Bytes are looked up one by one, so a sequence of n characters gives n ids.
    """
    codes = tf.strings.unicode_decode(sequences, "UTF-8", errors="replace", replacement_char=0xFFFD)
    return tf.ragged.map_flat_values(lambda c: tf.gather(BYTE_TO_ID, tf.minimum(c, 255)), codes)


def checked_residues(sequences: tf.Tensor) -> tf.RaggedTensor:
    """:func:`tokenize`, refusing in the graph — with an InvalidArgumentError (gRPC INVALID_ARGUMENT in TF
    Serving) that names the sequence, instead of a shape error deep inside — an empty batch and any sequence
    holding a character that is not a residue."""
    # The emptiness check gates everything after it: the ops naming a refused sequence cannot run on an empty batch.
    with tf.control_dependencies([tf.debugging.assert_positive(
            tf.size(sequences), message="empty batch: send at least one sequence")]):
        sequences = tf.identity(sequences)
    residues = tokenize(sequences)
    # Names the first sequence refused and its characters as typed.
    unknown = tf.equal(residues, UNK_ID)
    refused = tf.reduce_any(unknown, axis=1)
    first = tf.argmax(tf.cast(refused, tf.int32), output_type=tf.int32)
    typed = tf.ragged.boolean_mask(tf.strings.unicode_decode(sequences, "UTF-8", errors="replace"), unknown)
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(refused)), [
        "a sequence holds characters that are not residues (allowed: the 20 amino acids, X, U, Z, O, B; upper "
        "or lower case): sequence", first, "has", tf.strings.unicode_encode(typed, "UTF-8")[first]])
    with tf.control_dependencies([check]):
        return residues.with_flat_values(tf.identity(residues.flat_values))


# Where the special tokens go around a sequence's residues: (leading, trailing) token ids.
LAYOUTS = {
    "cls_sep": ((CLS_ID,), (SEP_ID,)),  # BERT and ALBERT, ProtTXL: [CLS] residues [SEP]
    "sep_cls": ((), (SEP_ID, CLS_ID)),  # XLNet: residues [SEP] [CLS]
    "eos": ((), (SEP_ID,)),  # T5: residues </s> (our [SEP])
}


def layout_of(backbone) -> str:
    """The token layout a backbone was trained (or imported) with; ``cls_sep`` unless it names another."""
    return getattr(backbone, "token_layout", "cls_sep")


def add_special_tokens(residue_ids: tf.RaggedTensor, layout: str = "cls_sep") -> tf.RaggedTensor:
    """Each sequence of a ragged batch with the special tokens of `layout` (see :data:`LAYOUTS`)."""
    leading, trailing = LAYOUTS[layout]
    batch = residue_ids.nrows()

    def tokens(ids):
        return [tf.fill([batch, 1], tf.constant(i, residue_ids.dtype)) for i in ids]

    return tf.concat([*tokens(leading), residue_ids, *tokens(trailing)], axis=1)


def encode(sequences: tf.Tensor, max_length: int | None = None, layout: str = "cls_sep") -> tuple[tf.Tensor, tf.Tensor]:
    """Padded model inputs for raw sequences: ``token_ids`` ``[batch, max_len + specials]`` and residue ``lengths``.

    The specials are those of `layout` (``[CLS] residues [SEP]`` by default); padding on the right. Sequences
    longer than `max_length` residues are truncated to it (callers that must not truncate check lengths first).
    """
    residues = tokenize(sequences)
    if max_length is not None:
        residues = residues[:, :max_length]
    lengths = tf.cast(residues.row_lengths(), tf.int32)
    token_ids = add_special_tokens(residues, layout).to_tensor(default_value=PAD_ID)
    return token_ids, lengths


def checkpoint_rows(token_ids: tf.Tensor, token_rows: "list[int] | None") -> tf.Tensor:
    """Our token ids as rows of a backbone's embedding table: through `token_rows` for an imported vocabulary,
    unchanged for our own (`token_rows` None)."""
    if token_rows is None:
        return token_ids
    return tf.gather(tf.constant(token_rows, token_ids.dtype), token_ids)


def check_token_rows(token_rows: "list[int] | None", vocabulary_size: int) -> "list[int] | None":
    """`token_rows` as a list of ints, checked: one row per token of ours, each inside the embedding table."""
    if token_rows is None:
        return None
    rows = [int(row) for row in token_rows]
    if len(rows) != VOCABULARY_SIZE or not all(0 <= row < vocabulary_size for row in rows):
        raise ValueError(f"token_rows must give one row in [0, {vocabulary_size}) for each of our "
                         f"{VOCABULARY_SIZE} tokens, not {token_rows!r}")
    return rows


def decode(token_ids) -> str:
    """Residues of one id sequence (specials and padding dropped): for tests and debugging."""
    return "".join(TOKENS[int(i)] for i in np.asarray(token_ids) if int(i) >= FIRST_RESIDUE_ID)
