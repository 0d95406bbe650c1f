"""Runners of the one pipeline definition: local (LocalDagRunner + SQLite ML Metadata) and Vertex AI (KFP v2)."""
