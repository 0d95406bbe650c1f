"""Keras 3 protein language models of the ProtTrans family, their vocabulary, embeddings and training."""
