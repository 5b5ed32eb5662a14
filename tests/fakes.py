"""Small fakes of the confluent-kafka client interfaces the worker's protocols use.

Each fake call pops its next scripted outcome: None (it works), an exception to raise (use
:func:`retriable`, :func:`abortable`, :func:`fatal`), or :data:`WEDGED` (the call blocks until the
test ends, as librdkafka's transactional calls can after the cluster went away). They record
what they were asked, so a test can check the protocol's order.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException

WEDGED = object()
"""Scripted outcome: the call never returns (within the test)."""

_never = threading.Event()


def retriable(reason: str = "broker away") -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TRANSPORT, reason, retriable=True))


def abortable(reason: str = "coordinator timed the transaction out") -> KafkaException:
    return KafkaException(KafkaError(KafkaError._STATE, reason, txn_requires_abort=True))


def fatal(reason: str = "producer fenced") -> KafkaException:
    return KafkaException(KafkaError(KafkaError._FENCED, reason, fatal=True))


def refused(reason: str = "message too large") -> KafkaError:
    """A delivery report's error."""
    return KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, reason)


class Scripted:
    """Calls that pop their outcome from ``script[name]`` (empty: the call works)."""

    def __init__(self, **script: list[Any]) -> None:
        self.script: dict[str, list[Any]] = defaultdict(list, script)
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        outcomes = self.script[name]
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is WEDGED:
            _never.wait(30)
        elif isinstance(outcome, BaseException):
            raise outcome


@dataclass
class Msg:
    """A consumed or delivered record."""

    _topic: str = "tx"
    _partition: int = 0
    _offset: int = 0
    _value: bytes | None = b"{}"
    _key: bytes | None = None
    _error: Any = None
    _headers: list[Any] | None = None
    _timestamp: tuple[int, int] = (1, 1_700_000_000_000)

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def error(self) -> Any:
        return self._error

    def headers(self) -> list[Any] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


@dataclass
class TP:
    """A TopicPartition as ``commit()``/``committed()`` return it, with an ``error`` of its own."""

    topic: str
    partition: int
    offset: int = -1001
    error: Any = None


class FakeProducer(Scripted):
    """A ``Producer``: records what is produced; delivery reports come on ``poll``/``flush``.

    ``refuse`` names topics whose records fail delivery; ``full`` makes the next ``produce``
    calls raise ``BufferError`` (a full local queue).
    """

    def __init__(self, refuse: set[str] | None = None, full: int = 0, **script: list[Any]) -> None:
        super().__init__(**script)
        self.refuse = refuse or set()
        self.full = full
        self.produced: list[Msg] = []
        self._reports: list[tuple[Any, Any, Msg]] = []
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self.sent_offsets: Any = None

    def init_transactions(self, timeout: float) -> None:
        self._call("init_transactions")

    def begin_transaction(self) -> None:
        self._call("begin_transaction")

    def send_offsets_to_transaction(self, offsets: Any, group: Any, timeout: float) -> None:
        self._call("send_offsets_to_transaction")
        self.sent_offsets = offsets

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit_transaction")

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort_transaction")

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int = -1,
        on_delivery: Any = None, headers: Any = None,
    ) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        p = max(partition, 0)
        msg = Msg(topic, p, self._offsets[(topic, p)], value, key, _headers=headers)
        self._offsets[(topic, p)] += 1
        self.produced.append(msg)
        if on_delivery is not None:
            self._reports.append((on_delivery, refused() if topic in self.refuse else None, msg))

    def poll(self, timeout: float = 0) -> int:
        reports, self._reports = self._reports, []
        for cb, err, msg in reports:
            cb(err, msg)
        return len(reports)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


class FakeConsumer(Scripted):
    """A ``Consumer``'s commit side: ``committed`` answers from ``offsets`` (or scripted
    answers in ``answers``, popped first), ``commit`` records and answers ``commit_answers``."""

    def __init__(self, offsets: dict[tuple[str, int], int] | None = None, **script: list[Any]) -> None:
        super().__init__(**script)
        self.offsets = dict(offsets or {})
        self.answers: list[list[TP]] = []
        self.commit_answers: list[list[TP]] = []
        self.commits: list[tuple[list[Any], bool]] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.assigned: list[TP] = [TP(t, p) for (t, p) in self.offsets]

    def committed(self, partitions: list[Any], timeout: float = 0) -> list[Any]:
        self._call("committed")
        if self.answers:
            return self.answers.pop(0)
        return [TP(tp.topic, tp.partition, self.offsets.get((tp.topic, tp.partition), -1001)) for tp in partitions]

    def commit(self, offsets: list[Any] | None = None, asynchronous: bool = True) -> list[Any] | None:
        self._call("commit")
        self.commits.append((list(offsets or []), asynchronous))
        if asynchronous:
            return None
        if self.commit_answers:
            return self.commit_answers.pop(0)
        return [TP(tp.topic, tp.partition, tp.offset) for tp in offsets or []]

    def assignment(self) -> list[Any]:
        return list(self.assigned)

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def close(self) -> None:
        self._call("close")

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def position(self, partitions: list[Any]) -> list[Any]:
        return [TP(tp.topic, tp.partition, self.offsets.get((tp.topic, tp.partition), -1001)) for tp in partitions]

    def get_watermark_offsets(self, tp: Any, cached: bool = False, timeout: float = 0) -> tuple[int, int]:
        return 0, 100


@dataclass
class Counter:
    n: float = 0

    def inc(self, by: float = 1) -> None:
        self.n += by


@dataclass
class FakeMetrics:
    commits: Counter = field(default_factory=Counter)
    aborts: Counter = field(default_factory=Counter)
