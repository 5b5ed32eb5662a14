"""At-least-once commits that do not stop the stream.

A commit unit is the batches between two commits. Its input offsets may be committed once every
record it produced (scores, dead letters, changelog) is acknowledged by Kafka: then nothing it
wrote can be lost, whatever happens next. Flushing the producer and committing synchronously
gives that, but stops the worker for a broker round trip at every commit (tens of milliseconds,
while events queue up behind it).

Instead, each unit counts its records' delivery reports, and the worker goes on with the next
unit. Units are confirmed in the order they were closed, and only while none has failed: the
offsets of a later unit include an earlier one's, so committing them asynchronously in that
order keeps "committed implies acknowledged". A failed delivery stops the pipeline: the worker
waits for what is in flight, then rewinds to the last confirmed unit.

>>> unit = CommitUnit(lambda partition, offset: None)
>>> unit.produced = 2
>>> unit.on_delivery(None, None); unit.settled
False
>>> unit.on_delivery(None, None); unit.settled, unit.failed
(True, 0)
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from stream_scorer.exceptions import InvariantError
from stream_scorer.kafka.offsets import Offsets, partition_errors, topic_partitions

logger = logging.getLogger(__name__)

MAX_UNITS_IN_FLIGHT = 4
"""Closed units awaiting their reports; past this the worker waits (the cluster is slow)."""


class CommitUnit:
    """The records of one commit unit and their delivery reports.

    ``produced`` is set by the worker as it produces (per batch, not per record); the callbacks
    are passed to ``produce()`` for every record of the unit.
    """

    __slots__ = ("_on_changelog", "acked", "failed", "first_error", "models", "offsets", "produced")

    def __init__(self, on_changelog: Callable[[int, int], None]) -> None:
        self.produced = 0
        self.acked = 0
        self.failed = 0
        self.first_error: KafkaError | None = None
        self.offsets: dict[tuple[str, int], int] = {}
        """The next input offsets the unit covers, set when it closes."""
        self.models: Any = None
        """The models as of the unit's end: the worker's rollback point once it is confirmed."""
        self._on_changelog = on_changelog

    def on_delivery(self, err: KafkaError | None, msg: Message | None) -> None:
        if err is None:
            self.acked += 1
        else:
            self._fail(err)

    def on_changelog_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """Also tells the state store where the changelog record landed."""
        if err is None:
            self.acked += 1
            self._on_changelog(msg.partition(), msg.offset())  # type: ignore[arg-type]  # set once delivered
        else:
            self._fail(err)

    def _fail(self, err: KafkaError) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = err

    @property
    def settled(self) -> bool:
        """Every record has its report (acknowledged or failed)."""
        return self.acked + self.failed >= self.produced


class AckQueue:
    """Closed commit units, oldest first, until their records are acknowledged."""

    def __init__(self) -> None:
        self._units: deque[CommitUnit] = deque()

    def __len__(self) -> int:
        return len(self._units)

    def push(self, unit: CommitUnit) -> None:
        self._units.append(unit)

    def failed(self) -> CommitUnit | None:
        """The oldest unit with a failed record, if any: the stream must rewind."""
        for unit in self._units:
            if unit.failed:
                return unit
        return None

    def n_failed(self) -> int:
        return sum(unit.failed for unit in self._units)

    def pop_confirmed(self) -> CommitUnit | None:
        """Take the leading units whose records are all acknowledged; return the newest of them
        with the offsets of all of them merged (None: the oldest unit is still waiting)."""
        units = self._units
        newest: CommitUnit | None = None
        merged: dict[tuple[str, int], int] = {}
        while units and not units[0].failed and units[0].settled:
            newest = units.popleft()
            merged.update(newest.offsets)
        if newest is not None:
            newest.offsets = merged
        return newest

    def clear(self) -> None:
        self._units.clear()


class _Producer(Protocol):
    producer: Any

    def drain(self) -> None: ...


class _Stats(Protocol):
    commits: int
    aborts: int
    delivery_failures: int


class AckCommitter:
    """At least once: commit the offsets of closed units, in order, once their records are
    acknowledged.

    The worker closes a unit with :meth:`close` and goes on; :meth:`poll` (per loop turn) commits
    what the reports confirm, asynchronously; :meth:`drain` waits for every report and commits
    synchronously. Both return False when a record failed: the worker then calls :meth:`fail` and
    rewinds to the last confirmed unit. ``on_confirmed`` receives a confirmed unit's models: the
    worker's new rollback point.
    """

    def __init__(
        self, producer: _Producer, stats: _Stats, metrics: Any, on_confirmed: Callable[[Any], None],
    ) -> None:
        self.producer = producer
        self.stats = stats
        self.metrics = metrics
        self.on_confirmed = on_confirmed
        self.queue = AckQueue()
        self.confirmed_offsets: list[TopicPartition] = []
        """The offsets last committed (those of the rollback models)."""

    def __len__(self) -> int:
        return len(self.queue)

    def close(self, unit: CommitUnit | None, offsets: Offsets, models: Any, consumer: Any, wait: bool) -> bool:
        """Queue the closed unit (None: it had no batch) for confirmation, then :meth:`drain`
        (``wait``, or too many units in flight: the cluster is slow) or :meth:`poll`. ``models``
        are the models as of the unit's end, its rollback point once confirmed."""
        if unit is not None:
            unit.offsets = offsets
            unit.models = models
            self.queue.push(unit)
        if wait or len(self.queue) > MAX_UNITS_IN_FLIGHT:
            return self.drain(consumer)
        return self.poll(consumer)

    def poll(self, consumer: Any) -> bool:
        """Serve delivery reports; commit the offsets of the units now fully acknowledged
        (asynchronously, in order). False: a record failed."""
        self.producer.producer.poll(0)
        if self.queue.failed() is not None:
            return False
        unit = self.queue.pop_confirmed()
        if unit is not None:
            self._confirmed(consumer, unit, asynchronous=True)
        return True

    def drain(self, consumer: Any) -> bool:
        """Wait for every delivery report, then commit what they confirm, synchronously.
        False: a record failed."""
        self.producer.drain()
        if self.queue.failed() is not None:
            return False
        unit = self.queue.pop_confirmed()
        if self.queue:
            # Flushed, yet a unit misses reports: it counted records it did not produce.
            raise InvariantError(f"{len(self.queue)} commit units still wait for reports after a flush")
        if unit is not None:
            self._confirmed(consumer, unit, asynchronous=False)
        return True

    def _confirmed(self, consumer: Any, unit: CommitUnit, asynchronous: bool) -> None:
        """Every record up to ``unit`` is written: commit its offsets; its models become the
        rollback point."""
        self.on_confirmed(unit.models)
        self.metrics.commits.inc()
        if not unit.offsets:
            return
        offsets = topic_partitions(unit.offsets)
        self.confirmed_offsets = offsets
        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)  # reported to on_commit
            else:
                _raise_partition_errors(consumer.commit(offsets=offsets, asynchronous=False))
            self.stats.commits += 1
        except KafkaException as exc:
            # A rebalance took the partitions away: their new owner scores from the last commit.
            logger.warning("commit failed (%s); the records may be scored again after a rebalance", exc)

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's ``on_commit``: how an asynchronous commit went, as a whole or per partition."""
        errors = partition_errors(partitions or [])
        if err is None and errors:
            err = errors[0]
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            # A rebalance took the partitions away: their new owner scores from the last commit.
            logger.warning("asynchronous commit failed (%s); the records may be scored again", err)

    def fail(self, consumer: Any) -> None:
        """A record in flight failed: wait for the others, forget every unit, and commit the
        confirmed offsets again, synchronously, so that the broker's offsets and the rollback
        models agree (the caller then rewinds)."""
        self.producer.drain()
        failed = self.queue.failed()
        n = self.queue.n_failed()
        logger.warning(
            "%d records in flight failed (first: %s); rewinding to the last confirmed commit",
            n, failed.first_error if failed is not None else None,
        )
        self.stats.delivery_failures += n
        self.stats.aborts += 1
        self.metrics.aborts.inc()
        self.queue.clear()
        if self.confirmed_offsets:
            try:
                _raise_partition_errors(consumer.commit(offsets=self.confirmed_offsets, asynchronous=False))
            except KafkaException as exc:
                logger.warning("commit of the confirmed offsets failed (%s)", exc)

    def abandon(self) -> None:
        """Forget the units in flight without committing them (their partitions were lost)."""
        self.queue.clear()


def _raise_partition_errors(answer: list[TopicPartition] | None) -> None:
    """A synchronous commit succeeds as a call while partitions fail: raise the first (as Quix does)."""
    errors = partition_errors(answer or [])
    if errors:
        raise KafkaException(errors[0])
