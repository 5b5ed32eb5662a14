"""Signed, versioned checkpoints of the champion and the challenger.

A checkpoint file is one header line, a JSON payload, and an HMAC-SHA256 tag::

    SSCKPT 1 <key id> <payload length>\\n
    <payload: JSON with format, generation, created_at, champion state, challenger state>
    <32-byte tag: HMAC-SHA256(key, header line + payload)>

The key id (a short digest of the key, not the key) lets a refusal say "signed with another key"
rather than only "altered". The champion's state is plain JSON (scaler statistics, weights,
intercept, optimizer step count); a tree challenger's state is River's pickle, unpickled only after
the tag was verified. Loading refuses, with :class:`CheckpointError`, a file that is not a
checkpoint, is truncated, was signed with another key, or was altered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import pickle
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from stream_scorer.exceptions import CheckpointError
from stream_scorer.files import write_atomic
from stream_scorer.model.logistic import OnlineLogit
from stream_scorer.model.tree import OnlineTree

logger = logging.getLogger(__name__)

MAGIC = b"SSCKPT"
FORMAT_VERSION = 1
TAG_BYTES = 32
MAX_HEADER_BYTES = 256


def key_id(key: bytes) -> str:
    """A short public name of ``key`` (16 hex digits of an HMAC of a fixed message)."""
    return hmac.new(key, b"stream-scorer checkpoint key id", hashlib.sha256).hexdigest()[:16]


@dataclass
class Checkpoint:
    """A loaded checkpoint: its generation, when it was made, and the rebuilt models."""

    generation: int
    created_at: datetime
    champion: OnlineLogit
    challenger: OnlineLogit | OnlineTree | None
    meta: dict[str, Any]
    features: bytes | None = None
    """A feature-engine snapshot saved with the models (by ``backtest``), if any."""


def encode(
    champion: OnlineLogit,
    challenger: OnlineLogit | OnlineTree | None,
    key: bytes,
    generation: int,
    meta: dict[str, Any] | None = None,
    features: bytes | None = None,
) -> bytes:
    """The signed bytes of a checkpoint of generation ``generation``."""
    if not key:
        raise CheckpointError("a checkpoint needs a non-empty key")
    payload = orjson.dumps(
        {
            "format": FORMAT_VERSION,
            "generation": generation,
            "created_at": datetime.now(UTC).isoformat(),
            "champion": champion.state(),
            "challenger": challenger.state() if challenger is not None else None,
            "meta": meta or {},
            "features_b64": base64.b64encode(features).decode() if features is not None else None,
        }
    )
    header = b"%s %d %s %d\n" % (MAGIC, FORMAT_VERSION, key_id(key).encode(), len(payload))
    tag = hmac.new(key, header + payload, hashlib.sha256).digest()
    return header + payload + tag


def decode(data: bytes, key: bytes, source: str = "checkpoint") -> Checkpoint:
    """Verify and rebuild a checkpoint; raise :class:`CheckpointError` saying why it is refused.

    Steps, in this order on purpose: parse the header; check the length (truncation); check the
    key id (foreign key); verify the tag in constant time (alteration); only then parse the JSON
    and, for a tree challenger, unpickle.
    """
    if not key:
        raise CheckpointError("a checkpoint needs a non-empty key")
    newline = data.find(b"\n", 0, MAX_HEADER_BYTES)
    parts = data[:newline].split(b" ") if newline > 0 else []
    if len(parts) != 4 or parts[0] != MAGIC:
        raise CheckpointError(f"{source}: not a stream-scorer checkpoint (bad header)")
    try:
        version, length = int(parts[1]), int(parts[3])
    except ValueError:
        raise CheckpointError(f"{source}: not a stream-scorer checkpoint (bad header)") from None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format {version} is not supported (want {FORMAT_VERSION})"
        )
    header_end = newline + 1
    expected = header_end + length + TAG_BYTES
    if len(data) < expected:
        raise CheckpointError(f"{source}: truncated checkpoint ({len(data)} of {expected} bytes)")
    if len(data) > expected:
        raise CheckpointError(
            f"{source}: {len(data) - expected} unexpected bytes after the checkpoint"
        )
    theirs = parts[2].decode("ascii", "replace")
    if not hmac.compare_digest(theirs, key_id(key)):
        raise CheckpointError(
            f"{source}: signed with another key (key id {theirs}, ours {key_id(key)}); refusing it"
        )
    body = data[: header_end + length]
    tag = data[header_end + length :]
    if not hmac.compare_digest(tag, hmac.new(key, body, hashlib.sha256).digest()):
        raise CheckpointError(
            f"{source}: integrity check failed (HMAC mismatch): the file was altered"
        )
    # Verified: from here on the bytes are ours.
    try:
        obj = orjson.loads(data[header_end : header_end + length])
        champion = OnlineLogit.from_state(obj["champion"])
        ch = obj["challenger"]
        challenger: OnlineLogit | OnlineTree | None = None
        if ch is not None:
            challenger = (
                OnlineLogit.from_state(ch)
                if ch["kind"] == "logreg"
                else OnlineTree.from_verified_state(ch)
            )
        return Checkpoint(
            generation=int(obj["generation"]),
            created_at=datetime.fromisoformat(obj["created_at"]),
            champion=champion,
            challenger=challenger,
            meta=dict(obj.get("meta") or {}),
            features=base64.b64decode(f, validate=True) if (f := obj.get("features_b64")) else None,
        )
    except (
        binascii.Error,
        orjson.JSONDecodeError,
        KeyError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        pickle.UnpicklingError,
    ) as exc:
        raise CheckpointError(f"{source}: signed but unreadable checkpoint: {exc}") from exc


def save(
    path: str | os.PathLike[str],
    champion: OnlineLogit,
    challenger: OnlineLogit | OnlineTree | None,
    key: bytes,
    meta: dict[str, Any] | None = None,
    features: bytes | None = None,
) -> int:
    """Write the next generation of checkpoint to ``path``; return its generation.

    Steps: 1. the next generation is one above the champion's; 2. the models take it (their
    ``version`` names it from now on, so records scored after this save say which checkpoint
    their model descends from); 3. encode and sign; 4. write atomically.
    """
    generation = champion.generation + 1
    champion.generation = generation
    if challenger is not None:
        challenger.generation = generation
    write_atomic(path, encode(champion, challenger, key, generation, meta, features))
    return generation


def load(path: str | os.PathLike[str], key: bytes) -> Checkpoint:
    """Read and verify the checkpoint at ``path`` (see :func:`decode`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {exc.strerror or exc}") from exc
    return decode(data, key, source=str(path))


class Checkpointer:
    """Saves a scorer's models every ``interval_s`` seconds of wall clock, and on demand.

    >>> import tempfile, os
    >>> from stream_scorer.model.settings import ModelSettings
    >>> m = OnlineLogit(ModelSettings())
    >>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> c = Checkpointer(path, b"0123456789abcdef", interval_s=300)
    >>> c.save(m, None), load(path, b"0123456789abcdef").champion.version
    (1, 'logreg-sgd/1')
    """

    def __init__(self, path: str | os.PathLike[str], key: bytes, interval_s: float = 300.0) -> None:
        self.path = path
        self.key = key
        self.interval_s = interval_s
        self.last_save = time.monotonic()

    def due(self, now: float | None = None) -> bool:
        return (now if now is not None else time.monotonic()) - self.last_save >= self.interval_s

    def save(
        self,
        champion: OnlineLogit,
        challenger: OnlineLogit | OnlineTree | None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        generation = save(self.path, champion, challenger, self.key, meta)
        self.last_save = time.monotonic()
        logger.info("checkpoint generation %d written to %s", generation, self.path)
        return generation

    def maybe_save(
        self,
        champion: OnlineLogit,
        challenger: OnlineLogit | OnlineTree | None,
        meta: dict[str, Any] | None = None,
    ) -> int | None:
        """Save when the interval has passed (call once per batch, not per event)."""
        return self.save(champion, challenger, meta) if self.due() else None
