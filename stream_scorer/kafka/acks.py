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

from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message

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
