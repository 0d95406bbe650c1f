"""The export and inference contract: the serving SavedModel's signature and writer, the embedding functions behind
it, and the :class:`~models.export.embedders.Embedder` protocol that every embedder satisfies."""
