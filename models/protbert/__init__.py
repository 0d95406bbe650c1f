"""ProtBert: BERT (post-LN, GELU, learned absolute positions) trained with masked LM on proteins."""

from models.protbert.presets import PRESETS

__all__ = ["PRESETS"]
