"""The data layer: FASTA/a3m readers, normalisation, splits, the record schema and the Beam job that writes
TFRecords. Every other package may import it, and it imports neither them nor TensorFlow at import time (Beam
workers stay light).

`beam_jobs.console` is the one module here that is not about data: the quiet start and the progress lines that
every command shares. It lives in this layer because it must run before TensorFlow is imported, and this is the
only package that every command, this layer's own included, can import without importing upward.
"""
