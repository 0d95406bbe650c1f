"""FASTA header parsing for UniRef (100/90/50), UniProt (sp|/tr|) and plain headers.

UniRef:  ``UniRef100_P12345 Description n=3 Tax=Homo sapiens TaxID=9606 RepID=P12345_HUMAN``
UniProt: ``sp|P12345|NAME_HUMAN Description OS=Homo sapiens OX=9606 GN=… PE=1 SV=2``
Other:   the first whitespace-separated token is the id (BFD, bare accessions, DeepLoc-style headers).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from beam_jobs import schema

_UNIREF = re.compile(r"^UniRef(100|90|50)_\S+$")
_UNIPROT = re.compile(r"^(sp|tr)\|([^|]+)\|(\S*)$")
_MEMBERS = re.compile(r"\sn=(\d+)(?=\s|$)")
_TAX_NAME = re.compile(r"\sTax=(.*?)(?=\s(?:TaxID|RepID|n)=|$)")
_TAX_ID = re.compile(r"\s(?:TaxID|OX)=(\d+)(?=\s|$)")
_UNIPROT_OS = re.compile(r"\sOS=(.*?)(?=\s[A-Z]{2}=|$)")
_REP_ID = re.compile(r"\sRepID=(\S+)")
_DESCRIPTION_END = re.compile(r"\s(?:n|Tax|TaxID|RepID|OS|OX|GN|PE|SV)=")


def id_problem(record_id: str) -> str | None:
    """Why `record_id` cannot name a record exactly (bytes that are not UTF-8: read as surrogate escapes, or as
    U+FFFD where a reader replaced them, as the Beam sources do so that Beam can encode the header; a control
    character such as NUL, which HDF5 names and attributes cut), or None."""
    if any("\udc80" <= char <= "\udcff" or char == "\ufffd" for char in record_id):
        return "the id is not valid UTF-8"
    if any(unicodedata.category(char) == "Cc" for char in record_id):
        return "the id holds a control character (such as NUL)"
    return None


def printable_id(record_id: str) -> str:
    """`record_id` as a rejects file can hold it: Python's escapes for what is not printable ASCII."""
    return ascii(record_id)[1:-1]


@dataclass(frozen=True)
class Header:
    """What a header line says about its record."""

    id: str
    description: str
    source: str
    taxon_id: int = schema.UNKNOWN_TAXON
    taxon_name: str | None = None
    members: int | None = None  # UniRef `n=`: cluster size
    rep_id: str | None = None  # UniRef `RepID=`: the cluster's representative
    entry_name: str | None = None  # UniProt entry name, e.g. `FA69B_HUMAN`


def parse_header(line: str, default_source: str = "fasta") -> Header:
    """Parse a header line (with or without the leading ``>``).

    `default_source` is the `source` of records whose header does not name one (UniRef headers do).
    An empty id is returned as ``""``; the caller rejects it.
    """
    text = line[1:] if line.startswith(">") else line
    text = text.strip()
    token, _, rest = text.partition(" ")
    rest = " " + rest.strip() if rest.strip() else ""
    end = _DESCRIPTION_END.search(rest)
    description = (rest[: end.start()] if end else rest).strip()

    taxon = _TAX_ID.search(rest)
    taxon_id = int(taxon.group(1)) if taxon else schema.UNKNOWN_TAXON

    uniref = _UNIREF.match(token)
    if uniref:
        members = _MEMBERS.search(rest)
        tax_name = _TAX_NAME.search(rest)
        rep = _REP_ID.search(rest)
        return Header(
            id=token,
            description=description,
            source=f"uniref{uniref.group(1)}",
            taxon_id=taxon_id,
            taxon_name=tax_name.group(1).strip() if tax_name else None,
            members=int(members.group(1)) if members else None,
            rep_id=rep.group(1) if rep else None,
        )
    uniprot = _UNIPROT.match(token)
    if uniprot:
        organism = _UNIPROT_OS.search(rest)
        return Header(
            id=uniprot.group(2),
            description=description,
            source=default_source,
            taxon_id=taxon_id,
            taxon_name=organism.group(1).strip() if organism else None,
            entry_name=uniprot.group(3) or None,
        )
    return Header(id=token, description=description, source=default_source, taxon_id=taxon_id)
