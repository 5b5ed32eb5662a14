"""How the worker takes its batches from the consumer: what has arrived, never waiting to fill."""

from __future__ import annotations

import time
from typing import Any

from stream_scorer.config import load_settings
from stream_scorer.worker import Worker


class ArrivingRecords:
    """A consumer whose records arrive one per ``consume`` call that waits (timeout > 0)."""

    def __init__(self, waiting: int, arriving: int) -> None:
        self.waiting = list(range(waiting))
        self.arriving = list(range(1000, 1000 + arriving))
        self.calls: list[tuple[int, float]] = []

    def consume(self, n: int, timeout: float) -> list[Any]:
        self.calls.append((n, timeout))
        if timeout > 0 and not self.waiting and self.arriving:
            self.waiting.append(self.arriving.pop(0))
        out, self.waiting = self.waiting[:n], self.waiting[n:]
        return out


def _worker(consumer: ArrivingRecords, batch_size: int) -> Worker:
    w = Worker(load_settings(batch_size=batch_size, metrics_port=None, poll_timeout_s=0.5))
    w._consumer = consumer  # type: ignore[assignment]
    return w


def test_takes_what_is_waiting_without_waiting():
    c = ArrivingRecords(waiting=30, arriving=5)
    w = _worker(c, batch_size=100)
    assert w._next_batch() == list(range(30))
    assert c.calls == [(100, 0)]


def test_a_backlog_gives_full_batches():
    c = ArrivingRecords(waiting=250, arriving=0)
    w = _worker(c, batch_size=100)
    assert [len(w._next_batch()) for _ in range(4)] == [100, 100, 50, 0]


def test_with_nothing_waiting_it_waits_for_one_record_then_takes_what_came_with_it():
    c = ArrivingRecords(waiting=0, arriving=3)
    w = _worker(c, batch_size=100)
    assert w._next_batch() == [1000]
    assert c.calls == [(100, 0), (1, 0.5), (99, 0)]
    c.calls.clear()
    c.arriving = []
    assert w._next_batch() == []
    assert c.calls == [(100, 0), (1, 0.5)]


def test_with_a_commit_open_it_waits_no_longer_than_until_the_commit_is_due():
    c = ArrivingRecords(waiting=0, arriving=0)
    w = _worker(c, batch_size=100)
    w.settings = w.settings.model_copy(update={"commit_interval_s": 0.2})
    unit = w.commits.unit
    unit.interval_s = 0.2
    unit.batches, unit.last_commit = 1, time.monotonic()
    assert not unit.due()
    assert w._next_batch() == []
    (_, first), (_, wait) = c.calls
    assert first == 0 and 0.1 < wait <= 0.2, c.calls
    unit.last_commit -= 0.2
    assert unit.due()
    c.calls.clear()
    w._next_batch()
    assert c.calls == [(100, 0), (1, 0.0)]


def test_a_record_taken_before_a_rebalance_in_the_same_batch_is_dropped():
    """The first record came from ``consume(1, wait)``; the next call ran a rebalance callback
    (partitions lost, or revoked and given back): that record's partition may be gone, or its
    offsets rewound, so it must not be scored with the batch (it comes again if still ours)."""
    c = ArrivingRecords(waiting=0, arriving=1)
    w = _worker(c, batch_size=100)
    consume = c.consume

    def rebalancing(n: int, timeout: float) -> list[Any]:
        if n == 99:
            w._on_lost(c, [])  # type: ignore[arg-type]  # served inside consume(), as librdkafka does
            c.waiting = [2000, 2001]  # records of the new assignment
        return consume(n, timeout)

    c.consume = rebalancing  # type: ignore[method-assign]
    w._consumer = c  # type: ignore[assignment]
    assert w._next_batch() == [2000, 2001]
