"""Exactly-once when a transaction fails to commit.

A commit that fails with an abortable error (a fenced epoch, a coordinator that timed the
transaction out) aborts it; the worker rewinds state, models and offsets to the last commit, and
every transaction still gets exactly one committed score with the features of an uninterrupted run.
"""

from __future__ import annotations

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
    """A worker whose commits number ``fail_at`` fail as an abortable error would."""

    fail_at: frozenset[int] = frozenset({3, 6, 7})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_calls = 0

    def _retrying(self, what: str, call: Any) -> None:
        if what == "commit_transaction":
            self.commit_calls += 1
            if self.commit_calls in self.fail_at:
                raise KafkaException(KafkaError(KafkaError._STATE, "injected commit failure", txn_requires_abort=True))
        super()._retrying(what, call)


def test_failed_commits_abort_and_every_transaction_is_scored_once(make_settings):
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
    scores, read = scores_by_id(settings, len(events))
    assert set(scores) == {e["transaction_id"] for e in events}
    assert read == len(events), f"{read - len(events)} duplicate committed scores"
    reference = reference_features(settings, len(events))
    diffs = [tid for tid, rec in scores.items() if rec["features"] != reference[tid]]
    assert not diffs, f"{len(diffs)} transactions got other features than an uninterrupted run"
