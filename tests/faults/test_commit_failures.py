"""Exactly-once when a transaction fails to commit while the worker goes on scoring.

The commit runs on a helper thread and the batches scored meanwhile are held for the next
transaction. A commit that fails must take them with it: the abort rewinds to the last commit, and
every transaction still gets exactly one committed score with the features of an uninterrupted run.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from stream_scorer.simulate import Simulator, shifted_to
from stream_scorer.worker import Worker
from tests.kafka_helpers import WorkerThread, committed_total, produce_events, reference_features, scores_by_id

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]


class FailingCommits(Worker):
    """A worker whose commits number ``fail_at`` fail as an abortable error would (a fenced
    epoch, a coordinator that timed the transaction out), after a pause in which the worker
    scores and holds more batches."""

    fail_at: frozenset[int] = frozenset({3, 6, 7})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_calls = 0
        self.held_when_failing: list[int] = []
        self._lock = threading.Lock()

    def _retrying(self, what: str, call: Any) -> None:
        if what == "commit_transaction":
            with self._lock:
                self.commit_calls += 1
                n = self.commit_calls
            if n in self.fail_at:
                time.sleep(0.15)  # the worker goes on meanwhile
                self.held_when_failing.append(len(self._held))
                raise KafkaException(KafkaError(KafkaError._STATE, "injected commit failure", txn_requires_abort=True))
        super()._retrying(what, call)


def test_a_failed_commit_drops_what_was_held_and_scores_it_again_exactly_once(make_settings):
    settings = make_settings(batch_size=100, commit_interval_s=0.05)
    events = shifted_to(Simulator(seed=23).take(6_000), datetime.now(UTC) - timedelta(hours=20))
    produce_events(settings, events)
    w = WorkerThread(settings, factory=FailingCommits).start()
    deadline = time.monotonic() + 180
    while committed_total(settings) < len(events):
        assert time.monotonic() < deadline, f"stuck at {committed_total(settings)}: {w.worker.stats}"
        if w.error is not None:
            raise w.error
        time.sleep(0.2)
    w.stop()
    worker: FailingCommits = w.worker  # type: ignore[assignment]
    assert worker.stats.aborts == 3, worker.stats
    assert any(worker.held_when_failing), f"no batch was held when a commit failed: {worker.held_when_failing}"
    scores, read = scores_by_id(settings, len(events))
    assert set(scores) == {e["transaction_id"] for e in events}
    assert read == len(events), f"{read - len(events)} duplicate committed scores"
    reference = reference_features(settings, len(events))
    diffs = [tid for tid, rec in scores.items() if rec["features"] != reference[tid]]
    assert not diffs, f"{len(diffs)} transactions got other features than an uninterrupted run"
