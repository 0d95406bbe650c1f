"""Header parsing: UniRef cluster headers, UniProt headers and plain ids."""

from beam_jobs.headers import parse_header


def test_uniref100_header():
    header = parse_header(
        ">UniRef100_A0A5A9P0L4 Peptidylprolyl isomerase n=1 Tax=Triplophysa tibetana TaxID=1572043 "
        "RepID=A0A5A9P0L4_9TELE"
    )
    assert header.id == "UniRef100_A0A5A9P0L4"
    assert header.source == "uniref100"
    assert header.description == "Peptidylprolyl isomerase"
    assert (header.members, header.taxon_name, header.taxon_id, header.rep_id) == (
        1, "Triplophysa tibetana", 1572043, "A0A5A9P0L4_9TELE")


def test_uniref50_header_with_parentheses_in_taxon_name():
    header = parse_header(
        "UniRef50_Q6GZX4 Putative transcription factor 001R n=2 Tax=Frog virus 3 (isolate Goorha) "
        "TaxID=654924 RepID=001R_FRG3G"
    )
    assert (header.id, header.source, header.members) == ("UniRef50_Q6GZX4", "uniref50", 2)
    assert header.taxon_name == "Frog virus 3 (isolate Goorha)"
    assert header.taxon_id == 654924


def test_uniref_header_without_taxonomy_has_unknown_taxon():
    header = parse_header(">UniRef90_X1 Uncharacterized protein n=5 Tax=unknown RepID=X1")
    assert (header.source, header.taxon_id, header.members) == ("uniref90", -1, 5)


def test_uniprot_header_gives_the_accession_and_ox_taxon():
    header = parse_header(">sp|P12345|AATM_RABIT Aspartate aminotransferase OS=Oryctolagus cuniculus OX=9986 GN=GOT2 PE=1 SV=2")
    assert (header.id, header.entry_name, header.taxon_id) == ("P12345", "AATM_RABIT", 9986)
    assert header.description == "Aspartate aminotransferase"
    assert header.taxon_name == "Oryctolagus cuniculus"
    assert header.source == "fasta"


def test_plain_header_uses_the_first_token_and_the_default_source():
    header = parse_header(">Q9H400 Cell.membrane-M test", default_source="bfd")
    assert (header.id, header.source, header.taxon_id, header.description) == ("Q9H400", "bfd", -1, "Cell.membrane-M test")


def test_empty_header_has_an_empty_id():
    assert parse_header(">   ").id == ""
