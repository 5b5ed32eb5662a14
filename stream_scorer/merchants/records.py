"""What the card stage tells the merchant stage, and the topics between them.

A record of ``<group>.by-merchant`` is keyed by the merchant id; its value is 17 bytes: a kind
(``E``: a transaction, ``L``: a label), a time and a number (the amount of a transaction; 1.0 or
0.0 for a fraud or genuine label, whose time is when it became known). Its partition is chosen
here (:func:`partition_of`), not by a client's partitioner, and the merchant stage publishes a
merchant to the same partition of ``<group>.merchant-features``: each merchant's records and state
live in one partition of each topic whatever client wrote them.
"""

from __future__ import annotations

import struct
import zlib

EVENT = b"E"
LABEL = b"L"
_RECORD = struct.Struct("<cdd")


def by_merchant_topic(group_id: str) -> str:
    """The repartition topic of the card workers of ``group_id``."""
    return f"{group_id}.by-merchant"


def features_topic(group_id: str) -> str:
    """The compacted topic of merchant states (the global table and the stage's changelog)."""
    return f"{group_id}.merchant-features"


def stage_group(group_id: str) -> str:
    """The consumer group of the merchant stages serving the card workers of ``group_id``."""
    return f"{group_id}.merchants"


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a merchant's records and state (CRC-32 of its id: stable everywhere).

    >>> partition_of(b"m1", 6) == partition_of(b"m1", 6)
    True
    """
    return zlib.crc32(key) % partitions


def encode_event(ts: float, amount: float) -> bytes:
    """A transaction at event time ``ts``."""
    return _RECORD.pack(EVENT, ts, amount)


def encode_label(known_ts: float, is_fraud: bool) -> bytes:
    """A label known from ``known_ts`` on."""
    return _RECORD.pack(LABEL, known_ts, 1.0 if is_fraud else 0.0)


def decode(value: bytes | None) -> tuple[bytes, float, float]:
    """``(kind, time, number)``; ``ValueError`` for anything else.

    >>> decode(encode_label(10.0, True))
    (b'L', 10.0, 1.0)
    """
    if value is None or len(value) != _RECORD.size:
        raise ValueError("not a by-merchant record (17 bytes)")
    kind, ts, number = _RECORD.unpack(value)
    if kind not in (EVENT, LABEL) or not (ts == ts and number == number):  # NaN
        raise ValueError(f"not a by-merchant record (kind {kind!r})")
    return kind, ts, number
