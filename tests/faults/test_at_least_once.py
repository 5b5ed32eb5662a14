"""At-least-once under faults: its commits do not wait for Kafka's acknowledgements, so these
check that an offset is never committed over a record Kafka did not take. Every transaction gets
at least one score, after failed deliveries and after a worker is killed again and again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from stream_scorer.simulate import Simulator, shifted_to
from tests.kafka_helpers import WorkerThread, committed_total, kill_mid_stream, produce_events, read_all

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

def _events(n: int, seed: int) -> list[dict]:
    return shifted_to(Simulator(seed=seed).take(n), datetime.now(UTC) - timedelta(hours=20))


def _scored_ids(settings, n: int) -> set[str]:
    import orjson

    return {orjson.loads(m.value())["transaction_id"] for m in read_all(settings, settings.topics.scores, n)}


def _set_max_message_bytes(settings, topic: str, value: int) -> None:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", str(value), incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(30)


def _wait_committed(settings, n: int, timeout: float, w: WorkerThread | None = None) -> None:
    deadline = time.monotonic() + timeout
    while committed_total(settings) < n:
        if w is not None and w.error is not None:
            raise w.error
        assert time.monotonic() < deadline, f"{committed_total(settings)} of {n} committed in {timeout}s"
        time.sleep(0.2)


def test_records_the_scores_topic_refuses_are_scored_again_once_it_takes_them(make_settings):
    settings = make_settings(processing_guarantee="at_least_once", batch_size=200, commit_interval_s=0.05)
    first, second = _events(3_000, seed=31)[:1_000], _events(3_000, seed=31)[1_000:]
    w = WorkerThread(settings).start()
    produce_events(settings, first)
    _wait_committed(settings, 1_000, 90, w)
    # Every batch of scores is now too large for the topic: its deliveries fail (the changelog's
    # do not), so the units carrying them must not commit.
    _set_max_message_bytes(settings, settings.topics.scores, 64)
    try:
        produce_events(settings, second)
        deadline = time.monotonic() + 60
        while w.worker.stats.aborts < 2:
            assert time.monotonic() < deadline, w.worker.stats
            assert w.error is None, w.error
            time.sleep(0.05)
        stuck = committed_total(settings)
        assert stuck < 3_000, "offsets were committed over scores Kafka refused"
    finally:
        _set_max_message_bytes(settings, settings.topics.scores, 1_048_588)
    _wait_committed(settings, 3_000, 120, w)
    w.stop()
    st = w.worker.stats
    assert st.delivery_failures >= 1 and st.aborts >= 2, st
    missing = {e["transaction_id"] for e in first + second} - _scored_ids(settings, 3_000)
    assert not missing, f"{len(missing)} transactions have no score, e.g. {sorted(missing)[:3]}"


def test_sigkill_three_times_at_least_once_loses_no_score(make_settings, tmp_path):
    settings = make_settings(instance_id="worker-1", batch_size=500, processing_guarantee="at_least_once")
    events = _events(30_000, seed=12)
    produce_events(settings, events)
    # Each kill lands with units in flight: records produced, their offsets not yet committed.
    kills = kill_mid_stream(settings, len(events), kills=3, seed=6, log_dir=tmp_path, timeout=300)
    assert kills == 3
    missing = {e["transaction_id"] for e in events} - _scored_ids(settings, len(events))
    assert not missing, f"{len(missing)} transactions have no score, e.g. {sorted(missing)[:3]}"
