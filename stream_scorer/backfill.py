"""Backfill: history replayed through the live path.

A backfill sends past transactions to the transactions topic, where the running workers score them
like any other record: same decoding and dead letters, same feature state, same learning, same
exactly-once commits. It is the batch deployment on the live code, where ``backtest`` is the
offline replay. Two sources:

- a JSON Lines file, one transaction a line: each line's bytes go out as they are, keyed by the
  line's ``card_id``; a line that is not a valid transaction still goes out, and the worker
  dead-letters it with its reason, so nothing is dropped on the way;
- a range of another topic (an archive, a mirror of another cluster, another deployment's
  transactions topic; never this deployment's own): the records between two offsets, or two
  times, of each of its partitions, with their keys.

:func:`wait_committed` then follows the worker group's committed offsets until they pass the last
record sent on each partition: every backfilled record has a committed score or dead letter.

Workers keep one event-time clock per card: a backfill of events older than what a card has
already seen scores them as late events. Backfill before live traffic (to warm state and model),
or into a group and topics of its own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from stream_scorer.config import Settings
from stream_scorer.exceptions import ConfigError, StreamScorerError
from stream_scorer.kafka.admin import partition_count
from stream_scorer.kafka.clients import make_consumer, make_producer
from stream_scorer.progress import progress_bar
from stream_scorer.state.changelog import read_partition

logger = logging.getLogger(__name__)

Position = int | datetime
"""Where a topic range starts or ends: an offset (the same on every partition) or a time."""


class BackfillError(StreamScorerError):
    """A backfill could not send every record, or its records were not committed in time."""


@dataclass
class BackfillResult:
    """What a backfill sent, and where each partition's last record landed."""

    sent: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    end_offsets: dict[int, int] = field(default_factory=dict)
    """Per partition of the transactions topic, the offset after the last record sent there."""


class _Sender:
    """A producer to the transactions topic that counts deliveries and keeps, per partition, the
    offset after the last record acknowledged there."""

    def __init__(self, settings: Settings, rate: float | None = None) -> None:
        self.topic = settings.topics.transactions
        self.producer = make_producer(settings)
        self.result = BackfillResult()
        self._t0 = time.monotonic()
        self._every = 1.0 / rate if rate else 0.0
        """Seconds between two records, at a given rate (0: as fast as Kafka takes them)."""

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.result.failed += 1
            if self.result.failed == 1:
                logger.warning("backfill: a record was not delivered: %s", err)
            return
        p, o = msg.partition(), msg.offset()
        ends = self.result.end_offsets
        if p is not None and o is not None and o + 1 > ends.get(p, 0):
            ends[p] = o + 1

    def send(self, value: bytes, key: bytes | None) -> None:
        if self._every:
            due = self._t0 + self.result.sent * self._every
            while (wait := due - time.monotonic()) > 0:
                self.producer.poll(min(wait, 0.05))
        while True:
            try:
                self.producer.produce(self.topic, value, key, on_delivery=self._delivered)
                break
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: serve deliveries (back-pressure)
        self.producer.poll(0)
        self.result.sent += 1
        self.result.bytes += len(value)

    def finish(self) -> BackfillResult:
        """Wait for every acknowledgement; raise if a record could not be delivered."""
        while self.producer.flush(5.0) > 0:
            logger.warning("backfill: waiting for Kafka to acknowledge the records sent")
        self.result.seconds = time.monotonic() - self._t0
        if self.result.failed:
            raise BackfillError(
                f"{self.result.failed} of {self.result.sent} records were not delivered to {self.topic!r}"
            )
        return self.result


def _card_key(line: bytes) -> bytes | None:
    """The partition key of a transaction line: its card id, or none when it has no readable one
    (the worker dead-letters such a line anyway)."""
    try:
        card = orjson.loads(line).get("card_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return card.encode() if isinstance(card, str) else None


def backfill_file(
    settings: Settings, path: str | Path, progress: bool | None = None, rate: float | None = None
) -> BackfillResult:
    """Send the transactions of a JSON Lines file, in file order, keyed by card (blank lines are
    skipped), at most ``rate`` a second if given; a progress bar shows on a terminal
    (``progress=None``)."""
    path = Path(path)
    sender = _Sender(settings, rate)
    with path.open("rb") as f, progress_bar(path.stat().st_size, "backfill", show=progress) as bar:
        unshown = 0
        for line in f:
            unshown += len(line)
            if bar is not None and unshown >= 1 << 20:
                bar.update(unshown)
                unshown = 0
            line = line.rstrip(b"\r\n")
            if line.strip():
                sender.send(line, _card_key(line))
        if bar is not None:
            bar.update(unshown)
    return sender.finish()


def _resolve(consumer: Any, topic: str, partitions: list[int], at: Position | None, default: int) -> list[int]:
    """Per partition, the offset a position names: an offset as given (bounded by the partition's
    low and high watermarks), the first offset at or after a time, or ``default`` (a watermark
    index: 0 low, 1 high) when ``at`` is none."""
    marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in partitions]
    if at is None:
        return [m[default] for m in marks]
    if isinstance(at, int):
        return [min(max(at, low), high) for low, high in marks]
    ms = int(at.timestamp() * 1000)
    found = consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in partitions], timeout=30)
    # No record at or after the time (offset -1, OFFSET_END): the range starts or ends at the
    # partition's end.
    return [tp.offset if tp.offset >= 0 else high for tp, (_, high) in zip(found, marks, strict=True)]


def backfill_topic(
    settings: Settings,
    source: str,
    start: Position | None = None,
    end: Position | None = None,
    progress: bool | None = None,
    rate: float | None = None,
) -> BackfillResult:
    """Send the records of topic ``source`` from ``start`` (default: its beginning) up to, not
    including, ``end`` (default: its end when the backfill starts), partition by partition in
    offset order, keeping their keys.

    The source is read as a restore reads the changelog (:func:`~stream_scorer.state.changelog.read_partition`:
    committed records only, no group joined, nothing committed). Raises
    :class:`~stream_scorer.exceptions.ConfigError` if the source is the transactions topic itself
    (the records would come back forever) or does not exist.
    """
    if source == settings.topics.transactions:
        raise ConfigError(f"backfill: the source {source!r} is the transactions topic it would write to")
    n = partition_count(settings, source)
    if n == 0:
        raise ConfigError(f"backfill: the source topic {source!r} does not exist")
    parts = list(range(n))
    consumer = make_consumer(settings, group_id=f"{settings.group_id}-backfill")
    try:
        firsts = _resolve(consumer, source, parts, start, 0)
        stops = _resolve(consumer, source, parts, end, 1)
    finally:
        consumer.close()
    ranges = list(zip(parts, firsts, stops, strict=True))
    sender = _Sender(settings, rate)
    with progress_bar(sum(max(0, e - b) for _, b, e in ranges), "backfill", "records", progress) as bar:

        def send(key: bytes, value: bytes | None) -> None:
            sender.send(value or b"", key or None)
            if bar is not None and sender.result.sent % 1000 == 0:
                bar.update(1000)

        for p, first, stop in ranges:
            if stop > first:
                read_partition(settings, p, first, send, timeout_s=math.inf, topic=source, end=stop)
        if bar is not None:
            bar.update(sender.result.sent % 1000)
    return sender.finish()


def wait_committed(
    settings: Settings,
    end_offsets: dict[int, int],
    timeout: float | None = None,
    progress: bool | None = None,
    poll_s: float = 1.0,
) -> float:
    """Wait until the worker group has committed, on every partition of the transactions topic,
    an offset at or past ``end_offsets``; return the seconds waited.

    Raises :class:`BackfillError` after ``timeout`` seconds (``None``: wait as long as it takes).
    """
    topic = settings.topics.transactions
    consumer = make_consumer(settings)  # the workers' group id; it never joins the group
    t0 = time.monotonic()
    want = {p: o for p, o in end_offsets.items() if o > 0}
    try:
        first = _committed(consumer, topic, want)
        total = sum(max(0, o - first.get(p, 0)) for p, o in want.items())
        done_before = 0
        with progress_bar(total, "committed", "records", progress) as bar:
            while True:
                now = _committed(consumer, topic, want)
                done = sum(min(now.get(p, 0), o) - min(first.get(p, 0), o) for p, o in want.items())
                if bar is not None:
                    bar.update(done - done_before)
                done_before = done
                if all(now.get(p, 0) >= o for p, o in want.items()):
                    return time.monotonic() - t0
                if timeout is not None and time.monotonic() - t0 > timeout:
                    raise BackfillError(
                        f"the group {settings.group_id!r} committed {done} of {total} backfilled records"
                        f" within {timeout:.0f}s; are its workers running?"
                    )
                time.sleep(poll_s)
    finally:
        consumer.close()


def _committed(consumer: Any, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    except KafkaException as exc:
        logger.warning("backfill: reading the group's committed offsets: %s", exc)
        return {}
    return {tp.partition: max(tp.offset, 0) for tp in got}
