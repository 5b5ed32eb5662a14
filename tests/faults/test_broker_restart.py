"""A broker that goes away and comes back: the worker waits, resumes by itself, loses nothing and
scores nothing twice."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from stream_scorer.config import Settings
from stream_scorer.kafka.admin import ensure_topics
from stream_scorer.kafka.launcher import LocalKafka
from stream_scorer.simulate import Simulator, shifted_to
from tests.kafka_helpers import WorkerThread, committed_total, produce_events, scores_by_id

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_broker_restart_mid_stream(tmp_path, guarantee):
    kafka = LocalKafka(data_dir=tmp_path / "kafka")
    kafka.start()
    try:
        s = uuid.uuid4().hex[:6]
        settings = Settings(
            bootstrap_servers=kafka.bootstrap_servers, group_id=f"g-{s}", instance_id="w",
            topics={"transactions": f"tx-{s}", "scores": f"sc-{s}", "labels": f"lb-{s}", "dlq": f"dlq-{s}",
                    "drift_alerts": f"da-{s}", "partitions": 3},
            state_dir=tmp_path / "state", processing_guarantee=guarantee, batch_size=200, log_format="text",
            metrics_port=0,  # a free port: never 9108, which a running worker may hold
        )
        ensure_topics(settings)
        events = shifted_to(Simulator(seed=21).take(60_000), datetime.now(UTC) - timedelta(hours=3))
        produce_events(settings, events)
        w = WorkerThread(settings).start()
        w.wait_scored(4_000, timeout=120)
        kafka.stop()  # mid-stream: tens of thousands of events still to score
        time.sleep(8)
        assert w.error is None and w.thread.is_alive(), "the worker waits for the broker"
        kafka.start()
        deadline = time.monotonic() + 240
        while committed_total(settings) < len(events):
            assert time.monotonic() < deadline, f"no recovery: committed {committed_total(settings)}"
            if w.error:
                raise w.error
            time.sleep(0.5)
        w.stop()
        scores, read = scores_by_id(settings, len(events))
        assert set(scores) == {e["transaction_id"] for e in events}, "nothing lost"
        learned = w.worker.scorer.champion.n_learned  # every event carries its label inline
        if guarantee == "exactly_once":
            assert read == len(events), f"{read - len(events)} duplicates"
            # What an aborted transaction taught the models was rolled back with it.
            assert learned == len(events), f"learned {learned} for {len(events)} ({w.worker.stats})"
        else:
            assert learned >= len(events)
    finally:
        kafka.close()
