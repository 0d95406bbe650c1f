"""Labelled sets for the probes, read from the public formats with clear errors on malformed rows.

- Secondary structure: the shared TSV (``id, sequence, dssp8, dssp3, asa``) and the NetSurfP-2.0 CSV files
  ProtTrans used (``input, dssp3, dssp8, disorder, cb513_mask``; Train/Validation/CASP12/TS115/CB513/NEW364).
- Localization: DeepLoc FASTA (``>Q9H400 Cell.membrane-M test``) and a per-protein CSV
  (``id, sequence, location, membrane``).

DSSP's 8 states map to 3 the standard way: H, G, I → H (helix); E, B → E (strand); T, S, C (and the blank
or ``-`` some tools write for coil) → C.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

from beam_jobs.fasta import read_fasta

DSSP8 = "HGIEBTSC"
DSSP3 = "HEC"
# Small subsets of the shared real sets, in their layout (see sample_data/README.md).
SAMPLE_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data")
_EIGHT_TO_THREE = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E", "T": "C", "S": "C", "C": "C", "-": "C", " ": "C"}

LOCATIONS = ("Nucleus", "Cytoplasm", "Extracellular", "Mitochondrion", "Cell.membrane", "Endoplasmic.reticulum",
             "Plastid", "Golgi.apparatus", "Lysosome/Vacuole", "Peroxisome")
MEMBRANE, SOLUBLE = "M", "S"


class DatasetError(ValueError):
    """A malformed input row, named by file and line."""


def dssp8_to_dssp3(dssp8: str) -> str:
    """3-state labels of an 8-state DSSP string (see the module docstring)."""
    try:
        return "".join(_EIGHT_TO_THREE[state] for state in dssp8)
    except KeyError as error:
        raise ValueError(f"not a DSSP 8-state label: {error.args[0]!r}") from None


@dataclass(frozen=True)
class StructureRecord:
    id: str
    sequence: str
    dssp8: str
    dssp3: str
    mask: tuple[bool, ...] | None = None  # residues to score (NetSurfP's cb513_mask / disorder); None: all


@dataclass(frozen=True)
class LocalizationRecord:
    id: str
    sequence: str
    location: str
    membrane: str  # "M" or "S"
    is_test: bool = False


def _check_structure(where: str, record_id: str, sequence: str, dssp8: str, dssp3: str) -> None:
    if not sequence:
        raise DatasetError(f"{where}: {record_id!r} has an empty sequence")
    if len(dssp8) != len(sequence) or len(dssp3) != len(sequence):
        raise DatasetError(f"{where}: {record_id!r} has {len(sequence)} residues but {len(dssp8)} DSSP8 and "
                           f"{len(dssp3)} DSSP3 labels")
    bad8 = set(dssp8) - set(DSSP8)
    bad3 = set(dssp3) - set(DSSP3)
    if bad8 or bad3:
        raise DatasetError(f"{where}: {record_id!r} has unknown DSSP labels {sorted(bad8 | bad3)}")
    if dssp8_to_dssp3(dssp8) != dssp3:
        raise DatasetError(f"{where}: {record_id!r}: its DSSP3 labels are not the standard 3-state map of its DSSP8")


def read_structure_tsv(path: str) -> list[StructureRecord]:
    """The shared secondary-structure TSV (header ``id sequence dssp8 dssp3 asa``)."""
    records = []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = {"id", "sequence", "dssp8", "dssp3"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}: header lacks columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            record = StructureRecord(row["id"], row["sequence"] or "", row["dssp8"] or "", row["dssp3"] or "")
            _check_structure(where, record.id, record.sequence, record.dssp8, record.dssp3)
            records.append(record)
    return records


def _mask(where: str, record_id: str, text: str, length: int) -> list[bool]:
    values = text.split()
    if len(values) != length:
        raise DatasetError(f"{where}: {record_id!r} has {length} residues but {len(values)} mask values")
    try:
        return [float(value) > 0.5 for value in values]
    except ValueError:
        raise DatasetError(f"{where}: {record_id!r} has a non-numeric mask value") from None


def read_netsurfp_csv(path: str) -> list[StructureRecord]:
    """A NetSurfP-2.0 CSV as ProtTrans used it. Scored residues: ``cb513_mask`` (1 = score) where present,
    and residues with ``disorder`` 1 (resolved) — NetSurfP marks unresolved residues 0."""
    records = []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or ())
        missing = {"input", "dssp3", "dssp8"} - fields
        if missing:
            raise DatasetError(f"{path}: header lacks columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            sequence, dssp3, dssp8 = (row[key].strip() for key in ("input", "dssp3", "dssp8"))
            record_id = row.get("id") or f"{path}:{line}"
            _check_structure(where, record_id, sequence, dssp8, dssp3)
            mask = [True] * len(sequence)
            for column in ("disorder", "cb513_mask"):
                if row.get(column, "").strip():
                    mask = [keep and flag for keep, flag in zip(mask, _mask(where, record_id, row[column], len(sequence)))]
            records.append(StructureRecord(record_id, sequence, dssp8, dssp3, tuple(mask)))
    return records


def _parse_deeploc_header(where: str, header: str) -> tuple[str, str, str, bool]:
    fields = header.split()
    if len(fields) < 2 or "-" not in fields[1]:
        raise DatasetError(f"{where}: header {header!r} is not 'ID Location-M|S [test]'")
    location, _, membrane = fields[1].rpartition("-")
    if location not in LOCATIONS:
        raise DatasetError(f"{where}: unknown location {location!r}; expected one of {LOCATIONS}")
    if membrane not in (MEMBRANE, SOLUBLE, "U"):
        raise DatasetError(f"{where}: membrane label {membrane!r} is not M, S or U")
    return fields[0], location, membrane, len(fields) > 2 and fields[2] == "test"


def read_deeploc_fasta(path: str) -> list[LocalizationRecord]:
    """DeepLoc's FASTA: ``>ACCESSION Location-M|S [test]``. Proteins with an unknown membrane label (U) are
    kept with membrane ``U`` (scored for Q10, not for Q2)."""
    records = []
    for entry in read_fasta(path):
        where = f"{path}:{entry.line}"
        record_id, location, membrane, is_test = _parse_deeploc_header(where, entry.header)
        if entry.oversized:
            raise DatasetError(f"{where}: {record_id!r} is larger than the FASTA reader's bound")
        if not entry.sequence:
            raise DatasetError(f"{where}: {record_id!r} has an empty sequence")
        records.append(LocalizationRecord(record_id, entry.sequence.upper(), location, membrane, is_test))
    return records


_CSV_ALIASES = {"id": ("id", "ID", "accession"), "sequence": ("sequence", "seq", "input"),
                "location": ("location", "loc", "label"), "membrane": ("membrane", "mem")}


def read_localization_csv(path: str) -> list[LocalizationRecord]:
    """A per-protein CSV (``id, sequence, location, membrane``; common aliases accepted: ``seq``/``input``,
    ``loc``/``label``, ``mem``); membrane as M/S, membrane/soluble or 1/0."""
    records = []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        columns = {}
        for name, aliases in _CSV_ALIASES.items():
            found = next((alias for alias in aliases if alias in fields), None)
            if found is None and name != "membrane":
                raise DatasetError(f"{path}: header lacks a {name!r} column (one of {aliases})")
            columns[name] = found
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            location = row[columns["location"]].strip()
            if location not in LOCATIONS:
                raise DatasetError(f"{where}: unknown location {location!r}")
            membrane = "U"
            if columns["membrane"]:
                raw = row[columns["membrane"]].strip().lower()
                membrane = {"m": "M", "membrane": "M", "1": "M", "s": "S", "soluble": "S", "0": "S", "u": "U"}.get(raw)
                if membrane is None:
                    raise DatasetError(f"{where}: membrane value {raw!r} is not M/S, membrane/soluble or 1/0")
            sequence = row[columns["sequence"]].strip().upper()
            if not sequence:
                raise DatasetError(f"{where}: empty sequence")
            records.append(LocalizationRecord(row[columns["id"]].strip(), sequence, location, membrane))
    return records
