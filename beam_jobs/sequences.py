"""Residue normalisation and validation (docs/contracts.md), on bytes so the Beam job's hot path stays in C.

Normalising strips whitespace and line endings, uppercases, drops one terminal ``*`` and maps the rare
residues ``U Z O B`` to ``X``, as ProtTrans does. Anything else outside the alphabet rejects the record.
"""

from __future__ import annotations

from typing import NamedTuple

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
UNKNOWN_RESIDUE = "X"
# The residue alphabet of normalised sequences: 20 standard residues, then X.
RESIDUES = STANDARD_RESIDUES + UNKNOWN_RESIDUE
RARE_RESIDUES = "UZOB"

_WHITESPACE = b" \t\r\n\v\f"
_ALLOWED = (RESIDUES + RARE_RESIDUES).encode("ascii")
_RARE_TO_X = bytes.maketrans(RARE_RESIDUES.encode("ascii"), UNKNOWN_RESIDUE.encode("ascii") * len(RARE_RESIDUES))


class Reject(NamedTuple):
    """Why a record was not written; `reason` is one of :data:`REJECT_REASONS`."""

    reason: str
    detail: str = ""


# Every reason a record can be rejected for, in the order a reader of the manifest meets them.
MISSING_HEADER = "missing_header"
MISSING_ID = "missing_id"
INVALID_ID = "invalid_id"
RECORD_TOO_LARGE = "record_too_large"
EMPTY_SEQUENCE = "empty_sequence"
ILLEGAL_CHARACTERS = "illegal_characters"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
CONFLICTING_DUPLICATE_ID = "conflicting_duplicate_id"
REJECT_REASONS = (
    MISSING_HEADER,
    MISSING_ID,
    INVALID_ID,
    RECORD_TOO_LARGE,
    EMPTY_SEQUENCE,
    ILLEGAL_CHARACTERS,
    TOO_SHORT,
    TOO_LONG,
    CONFLICTING_DUPLICATE_ID,
)

# Repairs that normalisation makes without rejecting; counted so users can see how dirty an input was.
LOWERCASE_FIXED = "lowercase_uppercased"
TERMINATOR_STRIPPED = "terminator_stripped"
RARE_MAPPED = "rare_residues_mapped_to_x"


class Normalised(NamedTuple):
    sequence: bytes
    repairs: tuple[str, ...]


def normalise(raw: bytes, min_length: int = 1, max_length: int | None = None) -> Normalised | Reject:
    """Normalise raw residue bytes (possibly multi-line) or say why the record is rejected."""
    sequence = raw.translate(None, _WHITESPACE)
    repairs = []
    upper = sequence.upper()
    if upper != sequence:
        repairs.append(LOWERCASE_FIXED)
        sequence = upper
    if sequence.endswith(b"*"):
        repairs.append(TERMINATOR_STRIPPED)
        sequence = sequence[:-1]
    if not sequence:
        return Reject(EMPTY_SEQUENCE)
    illegal = sequence.translate(None, _ALLOWED)
    if illegal:
        return Reject(ILLEGAL_CHARACTERS, f"illegal characters '{_as_typed(sequence)}'")
    mapped = sequence.translate(_RARE_TO_X)
    if mapped != sequence:
        repairs.append(RARE_MAPPED)
        sequence = mapped
    if len(sequence) < min_length:
        return Reject(TOO_SHORT, f"length {len(sequence)} < min_length {min_length}")
    if max_length is not None and len(sequence) > max_length:
        return Reject(TOO_LONG, f"length {len(sequence)} > max_length {max_length}")
    return Normalised(sequence, tuple(repairs))


def _as_typed(sequence: bytes) -> str:
    """The distinct characters of `sequence` that are not residues, as the user typed them (UTF-8 decoded), or
    as ``\\xNN`` escapes where the bytes are not UTF-8."""
    allowed = set(_ALLOWED.decode("ascii"))
    try:
        return "".join(sorted(set(sequence.decode("utf-8")) - allowed))
    except UnicodeDecodeError:
        illegal = set(sequence.translate(None, _ALLOWED))
        return "".join(chr(b) if b < 128 else f"\\x{b:02x}" for b in sorted(illegal))
