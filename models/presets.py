"""Model families and their presets, by name: what `--family` and `--preset` resolve to."""

from __future__ import annotations

from typing import Any

from models import protalbert, protbert
from models.encoder_backbone import EncoderBackbone

FAMILIES: dict[str, dict[str, dict[str, Any]]] = {
    "protbert": protbert.PRESETS,
    "protalbert": protalbert.PRESETS,
}


def preset_config(family: str, preset: str) -> dict[str, Any]:
    """The backbone config of a family's preset; the family's own name means its `paper` preset."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; built: {sorted(FAMILIES)}")
    presets = FAMILIES[family]
    name = "paper" if preset == family else preset
    if name not in presets:
        raise ValueError(f"{family} has no preset {preset!r}; presets: {sorted(presets)} (or {family!r})")
    return dict(presets[name])


def build_backbone(family: str, preset: str, **overrides: Any) -> EncoderBackbone:
    """A new, randomly initialised backbone of a family's preset (with any config `overrides`)."""
    return EncoderBackbone(**{**preset_config(family, preset), **overrides}, name=f"{family}_backbone")
