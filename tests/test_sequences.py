"""Normalisation (docs/contracts.md) repairs what is safe, rejects the rest with a reason."""

import pytest

from beam_jobs import sequences
from beam_jobs.sequences import Normalised, Reject, normalise


def test_multi_line_sequence_with_windows_line_endings_is_joined():
    assert normalise(b"MKT\r\nAYI\r\n AK\t\r\n") == Normalised(b"MKTAYIAK", ())


def test_lowercase_is_uppercased_and_counted_as_a_repair():
    assert normalise(b"mktAYI") == Normalised(b"MKTAYI", (sequences.LOWERCASE_FIXED,))


def test_one_terminal_stop_is_dropped():
    assert normalise(b"MKT*\n") == Normalised(b"MKT", (sequences.TERMINATOR_STRIPPED,))


def test_rare_residues_map_to_x():
    assert normalise(b"MUZOBK") == Normalised(b"MXXXXK", (sequences.RARE_MAPPED,))


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", sequences.EMPTY_SEQUENCE),
        (b" \r\n", sequences.EMPTY_SEQUENCE),
        (b"*", sequences.EMPTY_SEQUENCE),
        (b"MK*T", sequences.ILLEGAL_CHARACTERS),  # a stop codon inside the chain
        (b"MK-T", sequences.ILLEGAL_CHARACTERS),  # an alignment gap is not a residue
        (b"MK1T", sequences.ILLEGAL_CHARACTERS),
        (b"MKJT", sequences.ILLEGAL_CHARACTERS),
        (b"MK\xc3\xa9T", sequences.ILLEGAL_CHARACTERS),
    ],
)
def test_bad_sequences_are_rejected_with_their_reason(raw, reason):
    result = normalise(raw)
    assert isinstance(result, Reject) and result.reason == reason


def test_illegal_characters_are_named_in_the_detail():
    assert "'-1'" in normalise(b"MK-1T").detail


def test_length_limits_apply_after_normalisation():
    assert normalise(b"MKT*", min_length=3) == Normalised(b"MKT", (sequences.TERMINATOR_STRIPPED,))
    assert normalise(b"MK", min_length=3).reason == sequences.TOO_SHORT
    assert normalise(b"M" * 11, max_length=10).reason == sequences.TOO_LONG
    assert normalise(b"M" * 10, max_length=10).sequence == b"M" * 10


def test_alphabet_is_twenty_residues_then_x():
    assert sequences.RESIDUES == "ACDEFGHIKLMNPQRSTVWYX"
