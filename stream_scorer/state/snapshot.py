"""Snapshot files: opaque bytes plus a JSON metadata dict, written atomically and checked on read.

The worker stores the feature engine's and the pending labels' bytes here, with the Kafka offsets
the state reflects in the metadata (``{"offsets": {...}}``), so that a restart resumes from the
snapshot and replays only what came after. File layout, little-endian::

    magic  b"SSSNAP\\x00\\x01"        8 bytes, the last two are the format version
    digest SHA-256(meta + body)      32 bytes
    u32    len(meta)                 then meta, UTF-8 JSON object
    u64    len(body)                 then body

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "state.snap"
>>> write_snapshot(p, b"state", {"offsets": {"transactions:0": 42}})
>>> read_snapshot(p)
(b'state', {'offsets': {'transactions:0': 42}})
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import orjson

from stream_scorer.exceptions import StateError
from stream_scorer.files import write_atomic

MAGIC = b"SSSNAP"
VERSION = 1
_HEADER = struct.Struct("<6sH32sI")
_BODY_LEN = struct.Struct("<Q")


def _digest(meta: bytes, body: bytes | memoryview) -> bytes:
    h = hashlib.sha256(meta)
    h.update(body)
    return h.digest()


def write_snapshot(path: str | os.PathLike[str], body: bytes, metadata: dict[str, Any]) -> None:
    """Write ``body`` and ``metadata`` to ``path``: a reader sees the old file or the new one.

    Steps, in this order because a crash may fall between any two of them:

    1. write everything to a temporary file in the same directory (same file system);
    2. ``fsync`` it, so its bytes are on disk before its name can point at them;
    3. ``os.replace`` it over ``path`` (atomic on POSIX);
    4. ``fsync`` the directory, so the rename itself survives a power cut.
    """
    meta = orjson.dumps(metadata)
    header = _HEADER.pack(MAGIC, VERSION, _digest(meta, body), len(meta))
    write_atomic(path, b"".join((header, meta, _BODY_LEN.pack(len(body)), body)))


def read_snapshot(path: str | os.PathLike[str]) -> tuple[bytes, dict[str, Any]]:
    """The body and metadata of a snapshot file; StateError if it is foreign, truncated or altered.

    A missing file raises ``FileNotFoundError``: the caller decides if that means a fresh start.
    """
    data = Path(path).read_bytes()
    try:
        magic, version, digest, meta_len = _HEADER.unpack_from(data, 0)
    except struct.error as exc:
        raise StateError(f"snapshot {path} is truncated") from exc
    if magic != MAGIC:
        raise StateError(f"{path} is not a stream-scorer snapshot")
    if version != VERSION:
        raise StateError(f"snapshot {path} has format version {version}, this code reads {VERSION}")
    at = _HEADER.size
    meta = data[at : at + meta_len]
    at += meta_len
    try:
        (body_len,) = _BODY_LEN.unpack_from(data, at)
    except struct.error as exc:
        raise StateError(f"snapshot {path} is truncated") from exc
    at += _BODY_LEN.size
    if len(meta) != meta_len or len(data) != at + body_len:
        raise StateError(f"snapshot {path} is truncated or has trailing bytes")
    body = data[at:]
    if _digest(meta, body) != digest:
        raise StateError(f"snapshot {path} does not match its digest: altered or damaged")
    try:
        metadata = orjson.loads(meta)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"snapshot {path} has unreadable metadata") from exc
    if not isinstance(metadata, dict):
        raise StateError(f"snapshot {path} metadata is not a JSON object")
    return body, metadata
