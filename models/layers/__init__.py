"""Reusable Keras 3 layers of the ProtTrans models, each small and testable alone."""

from keras.layers import ReversibleEmbedding  # Keras's tied token embedding, importable from here as before

from models.layers.embeddings import PositionEmbedding
from models.layers.mlm_head import MaskedLMHead
from models.layers.transformer_encoder import TransformerEncoderLayer, activation

__all__ = ["MaskedLMHead", "PositionEmbedding", "ReversibleEmbedding", "TransformerEncoderLayer", "activation"]
