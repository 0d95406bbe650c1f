"""A generated fixture set of bad FASTA inputs, with the outcome the job must give each record."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

LONG_RESIDUES = 100_000


@dataclass
class Expected:
    written: dict[str, str] = field(default_factory=dict)  # id -> normalised sequence
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    duplicates: int = 0
    repairs: dict[str, int] = field(default_factory=dict)

    @property
    def read(self) -> int:
        return len(self.written) + sum(self.rejected.values()) + self.duplicates


def write_bad_inputs(directory: Path) -> Expected:
    """Write `messy.fasta`, `windows.fasta` (CRLF) and `more.fasta.gz`; return what the job must do."""
    directory.mkdir(parents=True, exist_ok=True)
    messy = (
        "MKVLAAGIV\n"  # residues before any header
        ">\nMKTAYIAK\n"  # a header with no id
        ">empty_seq some description\n"
        ">illegal_char\nMKT#QRS\n"
        ">internal_stop\nMKT*QRS\n"
        ">gap\nMKT-QRS\n"
        ">lowercase\nmktayiakqr\n"
        ">terminator\nMKTAYIAK*\n"
        ">rare\nMUKZOB\n"
        ">conflict first copy\nMKTAAA\n"
        ">same_twice\nGGGSSS\n"
        f">huge\n{'A' * LONG_RESIDUES}\n"
        ">ok\nACDEFGHIKLMNPQRSTVWY\n"
    )
    (directory / "messy.fasta").write_text(messy)
    (directory / "windows.fasta").write_bytes(b">crlf_record\r\nMKTA\r\nYIAK\r\n>conflict second copy\r\nMKTGGG\r\n"
                                              # ids that could not name a record exactly: not UTF-8, a NUL
                                              b">latin1_\xe9\r\nMKTA\r\n>nul\x00id\r\nMKTA\r\n")
    (directory / "more.fasta.gz").write_bytes(gzip.compress(b">same_twice\nGGGSSS\n>gz_ok\nMSTNPKPQ\n"))
    return Expected(
        written={
            "lowercase": "MKTAYIAKQR",
            "terminator": "MKTAYIAK",
            "rare": "MXKXXX",
            "same_twice": "GGGSSS",
            "ok": "ACDEFGHIKLMNPQRSTVWY",
            "crlf_record": "MKTAYIAK",
            "gz_ok": "MSTNPKPQ",
        },
        rejected={
            "missing_header": 1,
            "missing_id": 1,
            "empty_sequence": 1,
            "illegal_characters": 3,
            "too_long": 1,
            "conflicting_duplicate_id": 2,
            "invalid_id": 2,
        },
        duplicates=1,
        repairs={"lowercase_uppercased": 1, "terminator_stripped": 1, "rare_residues_mapped_to_x": 1},
    )
