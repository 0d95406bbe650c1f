"""ProtAlbert: ALBERT (factorised embedding, one Transformer layer shared by all layers) with masked LM."""

from models.protalbert.presets import PRESETS

__all__ = ["PRESETS"]
