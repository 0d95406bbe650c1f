"""Reusable Keras 3 layers of the ProtTrans models, each small and testable alone."""

from models.layers.embeddings import PositionEmbedding, ReversibleEmbedding
from models.layers.mlm_head import MaskedLMHead
from models.layers.transformer_encoder import TransformerEncoderLayer, activation

__all__ = ["MaskedLMHead", "PositionEmbedding", "ReversibleEmbedding", "TransformerEncoderLayer", "activation"]
