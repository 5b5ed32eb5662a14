"""Housekeeping: snapshots and checkpoints when due (and only when the caller says memory equals
what is committed), a failed snapshot is no failure, and the gauges read the consumer's lag."""

from __future__ import annotations

import time
from typing import Any

from stream_scorer.config import load_settings
from stream_scorer.housekeeping import GAUGES_EVERY_S, Housekeeper, update_gauges
from stream_scorer.pipeline import build_scorer
from stream_scorer.worker_metrics import WorkerMetrics, WorkerStats
from tests.fakes import FakeConsumer


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()  # the checkpointer reads the real clock

    def __call__(self) -> float:
        return self.now


class State:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.snapshots = fail, []

    def snapshot(self, p: int) -> None:
        if self.fail:
            raise OSError("disk full")
        self.snapshots.append(p)


def _keeper(tmp_path: Any, state: State, **settings: Any) -> tuple[Housekeeper, Clock]:
    s = load_settings(metrics_port=None, snapshot_interval_s=60, **settings)
    clock = Clock()
    return Housekeeper(s, state, build_scorer(s), WorkerMetrics(), WorkerStats(), clock), clock


def test_snapshots_when_due_and_a_checkpoint_when_its_interval_passed(tmp_path):
    state = State()
    keeper, clock = _keeper(tmp_path, state, checkpoint={"path": str(tmp_path / "m.ckpt"), "key": "k" * 32,
                                                          "interval_s": 3600})
    assert not keeper.sync_due() and keeper.save_if_due({0, 2}) is False and state.snapshots == []
    clock.now += 60
    assert keeper.sync_due()
    keeper.save_if_due({2, 0})
    assert state.snapshots == [0, 2] and keeper.stats.snapshots == 2 and not keeper.sync_due()
    keeper.checkpointer.last_save -= 3600 + 60
    assert keeper.sync_due() and keeper.save_if_due({0}) is True and (tmp_path / "m.ckpt").exists()


def test_save_all_at_a_clean_stop(tmp_path):
    state = State()
    keeper, _ = _keeper(tmp_path, state, checkpoint={"path": str(tmp_path / "m.ckpt"), "key": "k" * 32})
    keeper.save_all({1, 0})
    assert state.snapshots == [0, 1] and (tmp_path / "m.ckpt").exists()


def test_a_failed_snapshot_is_a_warning(tmp_path, caplog):
    keeper, _ = _keeper(tmp_path, State(fail=True))
    keeper.save_all({0})
    assert keeper.stats.snapshots == 0 and "disk full" in caplog.text


def test_gauges_every_few_seconds_with_the_lag_of_each_partition(tmp_path):
    keeper, clock = _keeper(tmp_path, State())
    consumer = FakeConsumer({("tx", 0): 40, ("labels", 0): 100})
    keeper.gauges_if_due(consumer, {0})
    m = keeper.metrics
    assert m.lag.labels("tx", "0")._value.get() == 60 and m.lag.labels("labels", "0")._value.get() == 0
    assert m.partitions._value.get() == 1
    consumer.offsets[("tx", 0)] = 90
    clock.now += GAUGES_EVERY_S / 2
    keeper.gauges_if_due(consumer, {0})
    assert m.lag.labels("tx", "0")._value.get() == 60, "not yet due"
    clock.now += GAUGES_EVERY_S
    keeper.gauges_if_due(consumer, {0})
    assert m.lag.labels("tx", "0")._value.get() == 10


def test_gauges_without_a_consumer(tmp_path):
    s = load_settings(metrics_port=None)
    m = WorkerMetrics()
    update_gauges(m, build_scorer(s), None, 0)
    assert m.state_entities._value.get() == 0
