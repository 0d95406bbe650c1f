"""Model families and their presets, by name: what `--family` and `--preset` resolve to."""

from __future__ import annotations

from typing import Any

import keras

from models import protalbert, protbert, prottxl, protxlnet
from models.encoder_backbone import EncoderBackbone
from models.protxlnet.backbone import XLNetBackbone
from models.prottxl.backbone import TransformerXLBackbone

FAMILIES: dict[str, dict[str, dict[str, Any]]] = {
    "protbert": protbert.PRESETS,
    "protalbert": protalbert.PRESETS,
    "protxlnet": protxlnet.PRESETS,
    "prottxl": prottxl.PRESETS,
}
BACKBONES: dict[str, type[keras.layers.Layer]] = {
    "protbert": EncoderBackbone,
    "protalbert": EncoderBackbone,
    "protxlnet": XLNetBackbone,
    "prottxl": TransformerXLBackbone,
}
# What each family is trained on: masked LM (auto-encoding), permutation LM, causal LM on segment streams.
OBJECTIVES = {"protbert": "masked_lm", "protalbert": "masked_lm", "protxlnet": "permutation_lm",
              "prottxl": "causal_lm"}


def preset_config(family: str, preset: str) -> dict[str, Any]:
    """The backbone config of a family's preset; the family's own name means its `paper` preset."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; built: {sorted(FAMILIES)}")
    presets = FAMILIES[family]
    name = "paper" if preset == family else preset
    if name not in presets:
        raise ValueError(f"{family} has no preset {preset!r}; presets: {sorted(presets)} (or {family!r})")
    return dict(presets[name])


def build_backbone(family: str, preset: str, **overrides: Any) -> keras.layers.Layer:
    """A new, randomly initialised backbone of a family's preset (with any config `overrides`)."""
    return BACKBONES[family](**{**preset_config(family, preset), **overrides}, name=f"{family}_backbone")
