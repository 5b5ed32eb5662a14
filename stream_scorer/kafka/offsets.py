"""Input offsets: the open commit unit, and the group's committed offsets read back.

The open unit is what the worker processed since its last commit: the next offset of every input
partition it read, and how many batches that took. Within a unit the offsets only grow; one that
goes backwards means records would be committed as processed while they were not (or twice), so
it raises :class:`~stream_scorer.exceptions.InvariantError` instead (as Quix Streams' checkpoint
refuses a stored offset that does not increase). A unit is due for its commit ``interval_s`` after
the last one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream_scorer.config import TXN_TIMEOUT_S
from stream_scorer.exceptions import InvariantError

logger = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]
"""Next offset to consume, by (topic, partition)."""


class OpenUnit:
    """The batches processed since the last commit, and their next offsets.

    >>> unit = OpenUnit(interval_s=0.1, clock=lambda: 0.0)
    >>> unit.add({("tx", 0): 11}); unit.add({("tx", 0): 25, ("labels", 0): 3})
    >>> unit.offsets, unit.batches
    ({('tx', 0): 25, ('labels', 0): 3}, 2)
    >>> unit.add({("tx", 0): 20})
    Traceback (most recent call last):
    ...
    stream_scorer.exceptions.InvariantError: offset of tx[0] goes back from 25 to 20 within a commit unit
    """

    __slots__ = ("batches", "clock", "interval_s", "last_commit", "offsets")

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.offsets: Offsets = {}
        self.batches = 0
        """Batches in the unit (0: everything processed is committed)."""
        self.last_commit = clock()

    def add(self, batch: Offsets) -> None:
        """One more batch, with the next offsets it reached (per batch, not per record)."""
        offsets = self.offsets
        for tp, offset in batch.items():
            before = offsets.get(tp)
            if before is not None and offset < before:
                raise InvariantError(
                    f"offset of {tp[0]}[{tp[1]}] goes back from {before} to {offset} within a commit unit"
                )
            offsets[tp] = offset
        self.batches += 1

    def due(self) -> bool:
        """Commits are at least ``interval_s`` apart: a record that comes after a quiet spell
        commits at once, and a busy stream costs the cluster a bounded number of transactions,
        however its records are spread over batches."""
        return self.clock() - self.last_commit >= self.interval_s

    def wait_s(self, longest: float) -> float:
        """How long the loop may wait for records before the unit is due (at most ``longest``)."""
        return min(longest, max(0.0, self.last_commit + self.interval_s - self.clock()))

    def close(self) -> Offsets:
        """End the unit; return its next offsets."""
        offsets = self.offsets
        self.offsets = {}
        self.batches = 0
        return offsets

    def committed(self) -> None:
        """The unit's commit is done (or given up): the interval starts again."""
        self.last_commit = self.clock()


def topic_partitions(offsets: Offsets) -> list[TopicPartition]:
    return [TopicPartition(t, p, o) for (t, p), o in offsets.items()]


RETRIABLE_CODES = frozenset({
    KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._WAIT_COORD, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR, KafkaError.UNSTABLE_OFFSET_COMMIT,
})
"""Errors a partition of an answer may carry that a later try can clear: the error objects of a
``TopicPartition`` do not say ``retriable()`` themselves."""


def retriable(err: KafkaError) -> bool:
    return bool(err.retriable()) or err.code() in RETRIABLE_CODES


def partition_errors(partitions: Iterable[Any]) -> list[KafkaError]:
    """The errors of single partitions in a ``commit()``/``committed()`` answer: the call itself
    succeeds, and the partitions that failed carry an ``error`` (their offset then invalid)."""
    return [tp.error for tp in partitions if tp.error is not None]


def committed_offsets(consumer: Any, partitions: list[TopicPartition], pause_s: float = 0.5) -> list[TopicPartition]:
    """The group's committed offsets, waiting while the cluster does not answer: a rewind after
    the broker went away must not kill the worker when the coordinator is slow to return.

    A partition that answers with an error of its own is not "nothing committed" (its offset is
    then invalid, and seeking there would go back to the beginning): it is retried like the call,
    or raised.
    """
    last_warning = 0.0
    while True:
        try:
            answer = list(consumer.committed(partitions, timeout=TXN_TIMEOUT_S))
            errors = partition_errors(answer)
            if not errors:
                return answer
            raise KafkaException(errors[0])
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if not retriable(err):
                raise
            now = time.monotonic()
            if now - last_warning > 10.0:
                logger.warning("reading the committed offsets: %s; retrying until the cluster answers", err)
                last_warning = now
            time.sleep(pause_s)


NEW_TOPIC_CODES = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART,
})
"""What a topic created a moment ago answers until its leaders are known (librdkafka does not
flag them ``retriable()``)."""


def watermark_offsets(
    consumer: Any, tp: TopicPartition, timeout_s: float = 30.0, pause_s: float = 0.2
) -> tuple[int, int]:
    """``(low, high)`` of a partition, retrying for up to ``timeout_s`` while the answer is an error
    a later try can clear: a topic created a moment ago answers ``NOT_LEADER_FOR_PARTITION`` until
    its leader is known (a worker that creates the merchant topics reads them at once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
            return int(low), int(high)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if not (retriable(err) or err.code() in NEW_TOPIC_CODES) or time.monotonic() > deadline:
                raise
            time.sleep(pause_s)
