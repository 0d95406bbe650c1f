"""ProtXLNet: XLNet's permutation language model on protein sequences."""

from models.protxlnet.presets import PRESETS

__all__ = ["PRESETS"]
