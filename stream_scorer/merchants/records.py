"""What the card stage tells the merchant stage, and the topics between them.

A record of ``<group>.by-merchant`` is keyed by the merchant id; its value is 17 bytes: a kind
(``E``: a transaction, ``L``: a label), a time and a number (the amount of a transaction; 1.0 or
0.0 for a fraud or genuine label, whose time is when it became known). A transaction then carries
the values of the binned features (``FeatureSettings.bins``), 8 bytes each, which the stage counts
in the quantile sketches that every worker reads its bin edges from. Its partition is chosen
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
_VALUES: dict[int, struct.Struct] = {}
SKETCHES_KEY = b"~quantile-sketches~" + b"~" * 110
"""The key of a stage partition's quantile sketches in ``<group>.merchant-features``: 129 bytes,
longer than any merchant id can be (128), so no merchant shares it."""


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


def encode_event(ts: float, amount: float, values: tuple[float, ...] = ()) -> bytes:
    """A transaction at event time ``ts``, with its binned features' ``values``."""
    head = _RECORD.pack(EVENT, ts, amount)
    if not values:
        return head
    st = _VALUES.get(len(values))
    if st is None:
        st = _VALUES[len(values)] = struct.Struct(f"<{len(values)}d")
    return head + st.pack(*values)


def encode_label(known_ts: float, is_fraud: bool) -> bytes:
    """A label known from ``known_ts`` on."""
    return _RECORD.pack(LABEL, known_ts, 1.0 if is_fraud else 0.0)


def decode(value: bytes | None) -> tuple[bytes, float, float, tuple[float, ...]]:
    """``(kind, time, number, binned values)``; ``ValueError`` for anything else.

    >>> decode(encode_label(10.0, True))
    (b'L', 10.0, 1.0, ())
    >>> decode(encode_event(10.0, 5.0, (1.5, 2.0)))
    (b'E', 10.0, 5.0, (1.5, 2.0))
    """
    if value is None or len(value) < _RECORD.size or (len(value) - _RECORD.size) % 8:
        raise ValueError("not a by-merchant record (17 bytes and 8 a value)")
    kind, ts, number = _RECORD.unpack_from(value, 0)
    if kind not in (EVENT, LABEL) or not (ts == ts and number == number):  # NaN
        raise ValueError(f"not a by-merchant record (kind {kind!r})")
    n = (len(value) - _RECORD.size) // 8
    if not n:
        return kind, ts, number, ()
    if kind == LABEL:
        raise ValueError("a by-merchant label carries no values")
    st = _VALUES.get(n)
    if st is None:
        st = _VALUES[n] = struct.Struct(f"<{n}d")
    return kind, ts, number, st.unpack_from(value, _RECORD.size)
