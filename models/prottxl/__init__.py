"""ProtTXL: Transformer-XL's causal language model on protein sequences."""

from models.prottxl.presets import PRESETS

__all__ = ["PRESETS"]
