"""The merchant stage over a real broker: card workers send it every transaction and label, it
publishes whole merchants, and every card worker reads the same table."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from stream_scorer.simulate import Simulator
from tests.kafka_helpers import (
    StageThread,
    WorkerThread,
    merchant_states,
    produce_events,
    read_all,
    stage_caught_up,
)
from tests.merchant_helpers import compressed, decoded, differences, reference_states

pytestmark = [pytest.mark.integration]


def _wait_table(worker, n_merchants: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(worker.table.merchants) < n_merchants or worker.table_reader.lag() > 2:
        assert time.monotonic() < deadline, (len(worker.table.merchants), n_merchants)
        time.sleep(0.2)


def test_two_workers_read_the_same_whole_merchant(make_settings):
    settings = make_settings(merchant_features="stage", topics={"partitions": 6})
    events = compressed(Simulator(seed=31).take(6_000))
    stage = StageThread(settings).start()
    a = WorkerThread(settings).start()
    b = WorkerThread(settings.model_copy(update={"instance_id": settings.instance_id + "-b"})).start()
    # Both in the group before the stream: else the first to join scores it all alone, and the
    # check below finds the group rebalancing (or one worker with nothing).
    deadline = time.monotonic() + 60
    while not (a.worker._owned and b.worker._owned and len(a.worker._owned | b.worker._owned) == 6):
        assert time.monotonic() < deadline, (a.worker._owned, b.worker._owned, a.error, b.error)
        time.sleep(0.1)
    produce_events(settings, events)
    deadline = time.monotonic() + 180
    while a.worker.stats.scored + b.worker.stats.scored < len(events):
        assert time.monotonic() < deadline, (a.worker.stats, b.worker.stats)
        for t in (a, b, stage):
            if t.error:
                raise t.error
        time.sleep(0.2)
    assert a.worker._owned and b.worker._owned and not a.worker._owned & b.worker._owned
    stage_caught_up(settings)
    want = reference_states(events)
    assert differences(decoded(merchant_states(settings)), want) == []
    # Each worker's table holds every merchant whole, the same on both: a merchant's features
    # read on either worker count the transactions of cards in the other's partitions too.
    for w in (a, b):
        _wait_table(w.worker, len(want))
    assert differences(a.worker.table.merchants, want) == []
    assert differences(b.worker.table.merchants, want) == []
    mid, n = Counter(e["merchant_id"] for e in events).most_common(1)[0]
    ts = max(m.max_ts for m in want.values()) + 1.0
    xa: dict[str, float] = {}
    xb: dict[str, float] = {}
    a.worker.table.read(mid, ts, xa)
    b.worker.table.read(mid, ts, xb)
    assert xa == xb and round(xa["merchant_1h_log_count"], 9) == round(__import__("math").log1p(n), 9)
    for t in (a, b, stage):
        t.stop()
    scores = read_all(settings, settings.topics.scores, expected=len(events))
    ids = Counter(orjson.loads(m.value())["transaction_id"] for m in scores)
    assert len(scores) == len(events) and set(ids) == {e["transaction_id"] for e in events}
    # The bins' sketches are the whole stream's on both workers: every transaction counted once.
    assert [b.n for b in a.worker.table.sketches.bins] == [len(events)] * 3
    assert [b.n for b in b.worker.table.sketches.bins] == [len(events)] * 3
    # Staleness was measured: publications reached the tables.
    assert a.worker.table_reader.recent and b.worker.table_reader.recent


def test_workers_adopt_one_model_learned_from_every_label(make_settings):
    settings = make_settings(merchant_features="stage", learning="stage", topics={"partitions": 4})
    events = compressed(Simulator(seed=32).take(3_000))
    stage = StageThread(settings).start()
    a = WorkerThread(settings).start()
    b = WorkerThread(settings.model_copy(update={"instance_id": settings.instance_id + "-b"})).start()
    deadline = time.monotonic() + 60
    while not (a.worker._owned and b.worker._owned):
        assert time.monotonic() < deadline, "the two workers did not share the partitions"
        time.sleep(0.2)
    produce_events(settings, events)
    deadline = time.monotonic() + 180
    # Each worker learned only its own partitions' labels; the model both adopt learned them all.
    while not all(w.worker.model_reader.adopted_examples == len(events) for w in (a, b)):
        assert time.monotonic() < deadline, [w.worker.model_reader.adopted_examples for w in (a, b)]
        for t in (a, b, stage):
            if t.error:
                raise t.error
        time.sleep(0.2)
    assert 0 < a.worker.stats.learned < len(events) and 0 < b.worker.stats.learned < len(events)
    assert a.worker.stats.learned + b.worker.stats.learned == len(events)
    assert stage.stage.learner is not None and stage.stage.learner.examples == len(events)
    wa = dict(a.worker.scorer.champion.state()["weights"])
    wb = dict(b.worker.scorer.champion.state()["weights"])
    assert wa == wb and wa == dict(stage.stage.learner.scorer.champion.state()["weights"])
    assert a.worker.metrics.model_adoptions._value.get() >= 1
    for t in (a, b, stage):
        t.stop()
