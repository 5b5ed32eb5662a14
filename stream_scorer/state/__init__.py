"""Durable state: snapshot files now; the changelog and restore-on-assign live with the worker.

Pure code, no Kafka: bytes and metadata in, bytes and metadata out.
"""

from stream_scorer.state.snapshot import read_snapshot, write_snapshot

__all__ = ["read_snapshot", "write_snapshot"]
