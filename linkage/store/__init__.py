"""Storage. The embedded SQLite store is the system of record; Neo4j is written from it (``push``).

One seam: stages read and write DataFrames through :class:`EmbeddedStore`; the Neo4j writer in
``linkage.store.neo4j`` mirrors what the embedded store holds.
"""
from linkage.store.embedded import EmbeddedStore, default_store_path

__all__ = ["EmbeddedStore", "default_store_path"]
