"""Variant scores from a model's own head: the in-graph parts that the objectives' serving signatures share.

``wildtype_marginals`` — input ``sequences`` (tf.string ``[batch]``) → ``log_probs`` (float32
``[batch, max_len, 20]``: at each residue, the log-softmax over the model's whole vocabulary at that position with
nothing masked, the 20 columns in the order ``ACDEFGHIKLMNPQRSTVWY``, zeros past each length) and ``lengths``.

``masked_marginals`` — inputs ``sequences`` and ``positions`` (int32 ``[batch, n]``: 1-based residue positions to
mask, 0 for none; ``n`` = 0 masks every residue) → ``log_probs`` (the same, with the residue at each requested
position masked alone; zeros at the positions not requested) and ``lengths``. Each masked copy of a sequence is
one more forward pass: the copies are built in the graph and scored in chunks of about
:data:`TOKENS_PER_CHUNK` tokens.

``log_likelihood`` — input ``sequences`` → ``log_likelihood`` (float32 ``[batch]``: Σ log p(token | the tokens
before it) over the residues, left to right, and, for a model that predicts it, the end token) and ``lengths``: the
score of a left-to-right model (ProtTXL) or of a permutation LM read in the left-to-right order (ProtXLNet), for
which a substitution moves every later conditional, so a mutant's score is the ratio of two whole sequences.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from beam_jobs.sequences import STANDARD_RESIDUES
from models import vocabulary
from models.networks.backbone import max_residues

WILDTYPE_MARGINALS = "wildtype_marginals"
LOG_LIKELIHOOD = "log_likelihood"
MASKED_MARGINALS = "masked_marginals"
POSITIONS = "positions"
LOG_PROBS = "log_probs"
TOKENS_PER_CHUNK = 16384  # tokens of masked copies per forward pass

SEQUENCES_SPEC = tf.TensorSpec([None], tf.string, name="sequences")
POSITIONS_SPEC = tf.TensorSpec([None, None], tf.int32, name=POSITIONS)

# (masked token ids [copies, length], the masked position of each copy [copies], wild-type token ids
# [copies, length]) → log-probabilities over the 20 residues at that position [copies, 20]
CopyScorer = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def residue_columns(backbone) -> tf.Tensor:
    """The rows of the backbone's vocabulary (its embedding table and LM head) holding the 20 standard residues,
    in ``ACDEFGHIKLMNPQRSTVWY`` order."""
    ids = tf.constant([vocabulary.TOKEN_IDS[residue] for residue in STANDARD_RESIDUES], tf.int32)
    return vocabulary.checkpoint_rows(ids, getattr(backbone, "token_rows", None))


def residue_log_probs(logits: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
    """Log-softmax over the whole vocabulary (the last axis), then the residues' columns."""
    return tf.gather(tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1), columns, axis=-1)


def leading_specials(layout: str) -> int:
    """How many special tokens come before the first residue in `layout`."""
    return len(vocabulary.LAYOUTS[layout][0])


def checked_tokens(sequences: tf.Tensor, backbone) -> tuple[tf.Tensor, tf.Tensor]:
    """Padded token ids in the backbone's layout and the residue lengths, refusing in the graph (with a message)
    an empty batch, a character that is not a residue, and a sequence longer than the backbone takes in one pass
    (scores are not stitched from windows)."""
    residues = vocabulary.checked_residues(sequences)
    lengths = tf.cast(residues.row_lengths(), tf.int32)
    limit = max_residues(backbone)
    if limit is not None:
        longest = tf.reduce_max(tf.concat([lengths, [0]], axis=0))
        check = tf.debugging.Assert(longest <= limit, [
            f"a sequence is longer than the {limit} residues this model scores in one pass: its longest has",
            longest])
        with tf.control_dependencies([check]):
            lengths = tf.identity(lengths)
    layout = vocabulary.layout_of(backbone)
    return vocabulary.add_special_tokens(residues, layout).to_tensor(default_value=vocabulary.PAD_ID), lengths


def requested_positions(lengths: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """``[batch, max_len]`` bool: the residues to mask — those at the 1-based `positions` of each row (0: none),
    or every residue when `positions` has no column. A position outside its sequence, or a `positions` with
    another number of rows, is refused in the graph."""
    width = tf.reduce_max(tf.concat([lengths, [0]], axis=0))
    inside = tf.sequence_mask(lengths, width)

    def chosen():
        checks = [
            tf.debugging.Assert(tf.equal(tf.shape(positions)[0], tf.shape(lengths)[0]), [
                "positions must have one row per sequence: rows", tf.shape(positions)[0], "sequences",
                tf.shape(lengths)[0]]),
            tf.debugging.Assert(tf.reduce_all((positions >= 0) & (positions <= lengths[:, None])), [
                "a position is outside its sequence (1-based residue positions, 0 for none)"]),
        ]
        with tf.control_dependencies(checks):
            one_hot = tf.one_hot(positions - 1, width, on_value=True, off_value=False, dtype=tf.bool)  # 0 → none
        return tf.reduce_any(one_hot, axis=1) & inside

    return tf.cond(tf.shape(positions)[1] > 0, chosen, lambda: inside)


def masked_copies_log_probs(token_ids: tf.Tensor, requested: tf.Tensor, lead: int, score: CopyScorer) -> tf.Tensor:
    """``[batch, max_len, 20]``: at each requested residue, `score` of the sequence with that residue alone
    masked; zeros elsewhere. The copies are made and scored in chunks inside the graph."""
    batch, width = tf.shape(requested)[0], tf.shape(requested)[1]
    where = tf.cast(tf.where(requested), tf.int32)  # [copies, 2]: (row, residue index)
    copies = tf.shape(where)[0]
    chunk = tf.maximum(1, TOKENS_PER_CHUNK // tf.maximum(tf.shape(token_ids)[1], 1))
    output = tf.zeros([batch, width, len(STANDARD_RESIDUES)], tf.float32)

    def body(start, output):
        pairs = where[start:start + chunk]
        count = tf.shape(pairs)[0]
        wildtype = tf.gather(token_ids, pairs[:, 0])
        position = pairs[:, 1] + lead
        masked = tf.tensor_scatter_nd_update(wildtype, tf.stack([tf.range(count), position], axis=1),
                                             tf.fill([count], tf.constant(vocabulary.MASK_ID, token_ids.dtype)))
        return start + chunk, tf.tensor_scatter_nd_update(output, pairs, score(masked, position, wildtype))

    _, output = tf.while_loop(lambda start, _: start < copies, body, [tf.constant(0), output])
    return output


def per_residue(log_probs: tf.Tensor, lengths: tf.Tensor, lead: int) -> tf.Tensor:
    """Log-probabilities at every token ``[batch, tokens, 20]`` → at the residues ``[batch, max_len, 20]``, zeros
    past each length."""
    width = tf.reduce_max(tf.concat([lengths, [0]], axis=0))
    residues = log_probs[:, lead:lead + width]
    return residues * tf.cast(tf.sequence_mask(lengths, width), residues.dtype)[:, :, None]


def marginal_signatures(backbone, wildtype_log_probs: Callable[[tf.Tensor], tf.Tensor],
                        score: CopyScorer) -> dict[str, tf.types.experimental.GenericFunction]:
    """The two signatures of a model that reads a masked residue: `wildtype_log_probs(token_ids)` gives
    ``[batch, tokens, 20]`` with nothing masked, `score` one masked copy per row."""
    lead = leading_specials(vocabulary.layout_of(backbone))

    @tf.function(input_signature=[SEQUENCES_SPEC])
    def wildtype_marginals(sequences):
        token_ids, lengths = checked_tokens(sequences, backbone)
        return {LOG_PROBS: per_residue(wildtype_log_probs(token_ids), lengths, lead), "lengths": lengths}

    @tf.function(input_signature=[SEQUENCES_SPEC, POSITIONS_SPEC])
    def masked_marginals(sequences, positions):
        token_ids, lengths = checked_tokens(sequences, backbone)
        requested = requested_positions(lengths, positions)
        return {LOG_PROBS: masked_copies_log_probs(token_ids, requested, lead, score), "lengths": lengths}

    return {WILDTYPE_MARGINALS: wildtype_marginals, MASKED_MARGINALS: masked_marginals}


def likelihood_signature(backbone, token_log_likelihoods: Callable[[tf.Tensor], tf.Tensor]
                         ) -> dict[str, tf.types.experimental.GenericFunction]:
    """The ``log_likelihood`` signature: `token_log_likelihoods(token_ids)` gives ``[batch, tokens]``, the log
    probability of each token the model predicts (zero at the others: padding, context-only specials)."""

    @tf.function(input_signature=[SEQUENCES_SPEC])
    def log_likelihood(sequences):
        token_ids, lengths = checked_tokens(sequences, backbone)
        return {LOG_LIKELIHOOD: tf.reduce_sum(token_log_likelihoods(token_ids), axis=1), "lengths": lengths}

    return {LOG_LIKELIHOOD: log_likelihood}
