"""The promises under faults: a worker killed again and again, workers joining and leaving, a
broker restarted. Every transaction gets exactly one committed score, and its features equal
those of a run that never stopped."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from stream_scorer.simulate import Simulator, shifted_to
from tests.kafka_helpers import (
    WorkerThread,
    committed_total,
    kill_mid_stream,
    produce_events,
    reference_features,
    scores_by_id,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

def _events(n: int, seed: int) -> list[dict]:
    return shifted_to(Simulator(seed=seed).take(n), datetime.now(UTC) - timedelta(hours=20))


def _produce_paced(settings, events: list[dict], rate: float) -> None:
    """Produce ``events`` in slices of a tenth of a second's worth, at about ``rate`` per second."""
    step = max(1, int(rate / 10))
    t0 = time.monotonic()
    for i in range(0, len(events), step):
        produce_events(settings, events[i : i + step])
        time.sleep(max(0.0, t0 + (i + step) / rate - time.monotonic()))


def _assert_exactly_once_with_reference_features(settings, events) -> None:
    n = len(events)
    scores, read = scores_by_id(settings, n)
    assert set(scores) == {e["transaction_id"] for e in events}, "no transaction is missing a score"
    assert read == n, f"{read - n} duplicate committed scores"
    reference = reference_features(settings, n)
    diffs = [tid for tid, rec in scores.items() if rec["features"] != reference[tid]]
    assert not diffs, f"{len(diffs)} transactions got other features than an uninterrupted run, e.g. {diffs[:3]}"


def test_sigkill_five_times_mid_stream(make_settings, tmp_path):
    settings = make_settings(instance_id="worker-1", batch_size=500)
    events = _events(50_000, seed=11)
    produce_events(settings, events)
    kills = kill_mid_stream(settings, len(events), kills=5, seed=5, log_dir=tmp_path, timeout=480)
    assert kills == 5, "the worker was killed five times mid-stream"
    _assert_exactly_once_with_reference_features(settings, events)


def test_workers_join_and_leave_mid_stream(make_settings):
    settings = make_settings(batch_size=200)
    events = _events(30_000, seed=12)
    produce_events(settings, events[:5_000])
    a = WorkerThread(settings.model_copy(update={"instance_id": "a"})).start()
    a.wait_scored(5_000, timeout=180)
    # The rest of the stream keeps coming (about 1,000 ev/s) while b joins and a leaves.
    feed = threading.Thread(target=_produce_paced, args=(settings, events[5_000:], 1_000.0), daemon=True)
    feed.start()
    b = WorkerThread(settings.model_copy(update={"instance_id": "b"})).start()
    deadline = time.monotonic() + 180
    while b.worker.stats.restores < 1:
        assert time.monotonic() < deadline, "the joining worker took partitions and restored their state"
        time.sleep(0.2)
    assert feed.is_alive(), "b joined mid-stream"
    time.sleep(2.0)
    a.stop()  # leaves the group: b takes every partition, with its state from the changelog
    assert feed.is_alive(), "a left mid-stream"
    feed.join(120)
    deadline = time.monotonic() + 240
    while committed_total(settings) < len(events):
        assert time.monotonic() < deadline, f"stuck at {committed_total(settings)}"
        if b.error:
            raise b.error
        time.sleep(0.2)
    b.stop()
    assert b.worker.stats.scored > 0 and a.worker.stats.scored > 0
    # A rebalance commits what was processed (the revoke's commit, from inside the rebalance
    # callback); it never needs to abandon a transaction.
    assert a.worker.stats.aborts == 0 and b.worker.stats.aborts == 0, (a.worker.stats, b.worker.stats)
    _assert_exactly_once_with_reference_features(settings, events)
