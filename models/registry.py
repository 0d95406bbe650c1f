"""The model families, by name: the one place that lists them. `--family` everywhere resolves here.

A family is one folder under `models/` that defines a :class:`~models.family.Family` record (backbone class,
task model, training input, checkpoint importer, presets); adding a family is that folder plus one line here.
"""

from __future__ import annotations

from models import protalbert, protbert, prott5, prottxl, protxlnet
from models.family import Family
from models.networks.backbone import Backbone

FAMILIES: dict[str, Family] = {
    family.name: family for family in (protbert.FAMILY, protalbert.FAMILY, protxlnet.FAMILY, prottxl.FAMILY, prott5.FAMILY)
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; built: {sorted(FAMILIES)}")
    return FAMILIES[name]


def preset_config(family: str, preset: str) -> dict:
    """The backbone config of a family's preset (the family's own name means its `paper` preset)."""
    return get_family(family).preset_config(preset)


def build_backbone(family: str, preset: str, **overrides) -> Backbone:
    """A new, randomly initialised backbone of a family's preset (with any config `overrides`)."""
    return get_family(family).build_backbone(preset, **overrides)
