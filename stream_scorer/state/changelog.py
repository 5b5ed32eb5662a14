"""The state changelog: a compacted topic that makes each partition's state durable, key by key.

Layout: one topic per consumer group, ``<group_id>.state-changelog``, compacted, with as many
partitions as the transactions topic; the state of input partition ``p`` goes to changelog
partition ``p``, so it moves with its partition. A record's key names what it holds:

- ``f`` + a feature-engine key (``c:<card>``, ``m:<merchant>``): that entity's window state;
- ``p`` + a transaction id: a scored transaction waiting for its label (the pending store);

and a ``None`` value is a tombstone (evicted, or labelled). Each record carries, in its
``input_offsets`` header, the next input offsets (transactions, labels) of the commit unit that
wrote it: at least once, a unit's records can be written while its offsets never commit, and a
restore that knows the committed offsets skips them (as Quix Streams compares the processed offset
it stores in a header), so that the records consumed again do not count twice. Writing is the
worker's job (:mod:`stream_scorer.state.changelog_writer`); this module names the topic, encodes
pending entries and headers, and reads a partition back.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from stream_scorer.config import Settings
from stream_scorer.exceptions import StateError
from stream_scorer.kafka.clients import consumer_config
from stream_scorer.kafka.offsets import watermark_offsets
from stream_scorer.model.pending import Pending

logger = logging.getLogger(__name__)

FEATURE = b"f"
PENDING = b"p"
_PENDING_HEAD = struct.Struct("<dH")
INPUT_OFFSETS = "input_offsets"
_INPUT_OFFSETS = struct.Struct("<qq")


def encode_input_offsets(transactions: int, labels: int) -> bytes:
    """The header value: the unit's next offsets on the input partition (-1: the unit read none).

    >>> decode_input_offsets([(INPUT_OFFSETS, encode_input_offsets(120, -1))])
    (120, -1)
    """
    return _INPUT_OFFSETS.pack(transactions, labels)


def decode_input_offsets(headers: list[tuple[str, bytes | None]] | None) -> tuple[int, int] | None:
    """The record's unit offsets, or None (a record written before the header existed)."""
    for name, value in headers or ():
        if name == INPUT_OFFSETS and value is not None and len(value) == _INPUT_OFFSETS.size:
            tx, labels = _INPUT_OFFSETS.unpack(value)
            return int(tx), int(labels)
    return None


def ahead_of(unit: tuple[int, int] | None, committed: tuple[int, int]) -> bool:
    """The record's unit is past the committed offsets (its own offsets never committed)."""
    if unit is None:
        return False
    return unit[0] > max(committed[0], 0) or unit[1] > max(committed[1], 0)


def changelog_topic(settings: Settings) -> str:
    """The changelog topic of the settings' consumer group."""
    return f"{settings.group_id}.state-changelog"


def encode_pending(entry: Pending, names: tuple[str, ...]) -> bytes:
    """A pending entry as bytes: event time, the label key, then the features in ``names`` order."""
    merchant = entry.label_key.encode()
    feats = entry.features
    values = struct.pack(f"<{len(names)}d", *(feats.get(n, 0.0) for n in names))
    return _PENDING_HEAD.pack(entry.event_ts, len(merchant)) + merchant + values


def decode_pending(value: bytes, names: tuple[str, ...]) -> Pending:
    """The entry :func:`encode_pending` wrote; StateError when it does not fit ``names``."""
    try:
        event_ts, mlen = _PENDING_HEAD.unpack_from(value, 0)
        at = _PENDING_HEAD.size
        merchant = value[at : at + mlen].decode()
        values = struct.unpack_from(f"<{len(names)}d", value, at + mlen)
    except (struct.error, UnicodeDecodeError) as exc:
        raise StateError(f"pending entry is corrupt: {exc}") from exc
    if at + mlen + 8 * len(names) != len(value):
        raise StateError("pending entry was written with another feature set")
    return Pending(dict(zip(names, values, strict=True)), merchant, event_ts)


def end_offset(settings: Settings, partition: int) -> int:
    """The high watermark of changelog partition ``partition``."""
    conf = consumer_config(settings, group_id=f"{settings.group_id}.restore")
    conf.pop("error_cb", None)
    consumer = Consumer(conf)
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(changelog_topic(settings), partition), timeout=30)[1])
    finally:
        consumer.close()


def read_partition(
    settings: Settings,
    partition: int,
    start: int,
    apply: Callable[[bytes, bytes | None], None],
    timeout_s: float = 300.0,
    topic: str | None = None,
    end: int | None = None,
    headers: bool = False,
) -> tuple[int, int]:
    """Apply every committed record of changelog partition ``partition`` from ``start`` on.

    Another ``topic`` and an ``end`` offset (exclusive) serve other restores from a log, such as
    the worker's recent transaction ids, read back from its input. With ``headers``, ``apply``
    gets each record's headers too.

    Reads with ``isolation.level=read_committed`` up to the last stable offset, so records of
    aborted (or still open) transactions are never applied. Returns (records applied, next offset).
    """
    topic = topic or changelog_topic(settings)
    conf = consumer_config(settings, group_id=f"{settings.group_id}.restore", **{"auto.offset.reset": "earliest"})
    conf.pop("error_cb", None)
    consumer = Consumer(conf)
    tp = TopicPartition(topic, partition)
    try:
        low, high = watermark_offsets(consumer, tp)
        if end is not None:
            high = min(high, end)
        begin = max(start, low)
        if begin >= high:
            return 0, max(start, high)
        consumer.assign([TopicPartition(topic, partition, begin)])
        n = 0
        deadline = time.monotonic() + timeout_s
        position = begin
        while position < high:
            if time.monotonic() > deadline:
                raise StateError(
                    f"restoring {topic}[{partition}] took over {timeout_s:.0f}s (at {position} of {high})"
                )
            msgs = consumer.consume(10_000, 0.5)
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise KafkaException(err)
                    continue
                if end is not None and msg.offset() >= end:  # type: ignore[operator,unused-ignore]
                    continue
                if headers:
                    apply(msg.key() or b"", msg.value(), msg.headers())  # type: ignore[call-arg]
                else:
                    apply(msg.key() or b"", msg.value())
                n += 1
            # Control records (transaction markers) are never delivered: ask where we stand.
            pos = consumer.position([tp])[0].offset
            if pos >= 0:
                position = pos
            elif not msgs:
                # No record fetched yet; the offsets below the LSO may all be markers.
                _, high2 = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                if begin >= high2:
                    break
        return n, position if end is None else min(position, end)
    finally:
        consumer.close()
