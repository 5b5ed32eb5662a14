"""The evaluator's batch step without a broker: decode, monitor, alert, flush, then commit."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter

from stream_scorer.config import Settings
from stream_scorer.evaluation.synthetic import synthetic_scores
from stream_scorer.evaluator import Evaluator
from stream_scorer.exceptions import DeliveryError
from stream_scorer.metrics import start_metrics_server


class FakeMsg:
    def __init__(self, topic: str, offset: int, value: bytes) -> None:
        self._topic, self._offset, self._value = topic, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


class FakeProducer:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.pending: list[Any] = []

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.sent.append((topic, key, value))
        self.pending.append(on_delivery)

    def flush(self, timeout: float) -> int:
        for cb in self.pending:
            cb("boom" if self.fail else None, None)
        self.pending = []
        return 0


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[list[Any]] = []

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.commits.append(offsets)


def _evaluator(fail: bool = False) -> tuple[Evaluator, FakeProducer, FakeConsumer]:
    settings = Settings(
        evaluation={
            "warmup": 0,
            "reference_size": 1_000,
            "drift_window": 500,
            "check_every": 50,
            "metrics_port": None,
            "publish_interval_s": 3600,
        }
    )
    ev = Evaluator(settings)
    producer, consumer = FakeProducer(fail), FakeConsumer()
    ev._producer, ev._consumer = producer, consumer  # type: ignore[assignment]
    return ev, producer, consumer


def test_a_batch_is_monitored_alerted_flushed_then_committed():
    ev, producer, consumer = _evaluator()
    t = ev.settings.topics
    scores = list(synthetic_scores(3_000, seed=31, amount_shift=(1_500, None)))
    msgs = [FakeMsg(t.scores, i, orjson.dumps(s)) for i, s in enumerate(scores)]
    msgs += [FakeMsg(t.scores, 3_000, b"not json"), FakeMsg(t.scores, 3_001, b'{"score": 2}')]
    msgs += [FakeMsg(t.labels, 0, b'{"transaction_id": "x", "is_fraud": true}')]  # no label_time
    ev.process_batch(msgs)
    assert ev.stats.scores == 3_000 and ev.stats.malformed == 3 and ev.stats.labels == 0
    alerts = [(k, orjson.loads(v)) for topic, k, v in producer.sent if topic == t.drift_alerts]
    assert alerts and all(k == f"{a['detector']}:{a['subject']}".encode() for k, a in alerts)
    assert {a["subject"] for _, a in alerts} >= {"amount"}
    offsets = {(tp.topic, tp.offset) for tp in consumer.commits[-1]}
    assert offsets == {(t.scores, 3_002), (t.labels, 1)}


def test_a_failed_delivery_leaves_the_batch_uncommitted():
    ev, _producer, consumer = _evaluator(fail=True)
    t = ev.settings.topics
    scores = list(synthetic_scores(3_000, seed=32, amount_shift=(1_500, None)))
    with pytest.raises(DeliveryError):
        ev.process_batch([FakeMsg(t.scores, i, orjson.dumps(s)) for i, s in enumerate(scores)])
    assert consumer.commits == []


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_metrics_server_serves_the_registry_and_the_probes():
    registry = CollectorRegistry()
    Counter("unit_things", "Things.", registry=registry).inc(3)
    state = {"ready": False}

    def broken() -> bool:
        raise RuntimeError("probe bug")

    server = start_metrics_server(
        0, "127.0.0.1", registry, health=broken, ready=lambda: state["ready"]
    )
    try:
        base = f"http://127.0.0.1:{server.port}"
        body = urllib.request.urlopen(base + "/metrics", timeout=5).read()
        assert b"unit_things_total 3.0" in body
        assert _get(base + "/healthz") == 503, "a probe that raises is a failing probe"
        assert _get(base + "/readyz") == 503
        state["ready"] = True
        assert _get(base + "/readyz") == 200
        assert _get(base + "/nope") == 404
    finally:
        server.close()
