"""The evaluator over a real broker: drifted scores in, firing then resolved alerts out."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import jsonschema
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_scorer.evaluation.synthetic import synthetic_scores
from stream_scorer.evaluator import Evaluator
from stream_scorer.events import DriftAlert, Score
from stream_scorer.kafka.admin import ensure_topics
from tests.kafka_helpers import produce, read_all

pytestmark = [pytest.mark.integration]

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "drift_alert.json").read_text()
)
N = 9_000
DRIFT = (3_000, 5_000)
LATE = 300
"""The last LATE scores carry no inline label: theirs come on the labels topic, before or after."""

# Small windows so that a few thousand scores are enough; no cooldown.
EVALUATION = {
    "warmup": 0,
    "reference_size": 2_000,
    "drift_window": 1_000,
    "check_every": 100,
    "performance_min_labels": 1_000,
    "label_window": 1_000,
    "cooldown_s": 0,
    "metrics_port": 0,
    "metrics_host": "127.0.0.1",
    "publish_interval_s": 1.0,
}


class EvaluatorThread:
    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.evaluator.run()
        except BaseException as exc:
            self.error = exc

    def start(self) -> EvaluatorThread:
        self.thread.start()
        return self

    def wait(self, scores: int, labels: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        st = self.evaluator.stats
        while st.scores < scores or st.labels < labels:
            if self.error is not None:
                raise self.error
            assert time.monotonic() < deadline, f"evaluator read {st.as_dict()} in {timeout}s"
            time.sleep(0.1)

    def stop(self) -> None:
        self.evaluator.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "evaluator did not stop within 60s"
        if self.error is not None:
            raise self.error


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_drift_fires_then_resolves_and_metrics_flow(make_settings):
    metrics_topic = f"scorer-metrics-{uuid.uuid4().hex[:8]}"
    # One partition per topic: the evaluator then sees the scores in the order they were produced.
    settings = make_settings(
        topics={"partitions": 1},
        evaluation={**EVALUATION, "metrics_topic": metrics_topic},
        batch_size=500,
    )
    ensure_topics(
        settings,
        [
            settings.topics.scores,
            settings.topics.labels,
            settings.topics.drift_alerts,
            metrics_topic,
        ],
    )
    scores = list(
        synthetic_scores(N, seed=11, amount_shift=DRIFT, new_fraud=DRIFT, new_fraud_rate=0.05)
    )
    labels = []
    for s in scores[-LATE:]:
        labels.append(
            {
                "transaction_id": s["transaction_id"],
                "card_id": s["card_id"],
                "is_fraud": s["label"],
                "label_time": s["event_time"],
            }
        )
        s["label"] = None
    for s in scores[:50] + scores[-50:]:
        Score.model_validate(s)

    # Half the late labels come before the evaluator starts (label before score is possible).
    produce(
        settings,
        ((lb["card_id"].encode(), orjson.dumps(lb)) for lb in labels[: LATE // 2]),
        settings.topics.labels,
    )
    ev = EvaluatorThread(Evaluator(settings)).start()
    produce(
        settings, ((s["card_id"].encode(), orjson.dumps(s)) for s in scores), settings.topics.scores
    )
    produce(
        settings,
        ((lb["card_id"].encode(), orjson.dumps(lb)) for lb in labels[LATE // 2 :]),
        settings.topics.labels,
    )
    ev.wait(scores=N, labels=LATE)

    # Prometheus and the probes answer while it runs.
    port = ev.evaluator.server.port
    status, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    for name in (
        "stream_scorer_eval_records_total",
        "stream_scorer_eval_roc_auc",
        "stream_scorer_eval_average_precision",
        "stream_scorer_eval_log_loss",
        "stream_scorer_eval_alert_rate",
        "stream_scorer_eval_score_quantile",
        "stream_scorer_eval_drift_statistic",
        "stream_scorer_eval_drift_active",
        "stream_scorer_drift_alerts_total",
    ):
        assert name.encode() in body, name
    assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    assert _get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    ev.stop()
    assert _get_refused(port)

    # Alerts: each valid against the schema, keyed detector:subject, firing then resolved.
    msgs = read_all(settings, settings.topics.drift_alerts, expected=4, idle=2.0, timeout=60)
    by_key: dict[str, list[str]] = {}
    for m in msgs:
        alert = orjson.loads(m.value())
        jsonschema.validate(alert, SCHEMA, format_checker=jsonschema.FormatChecker())
        DriftAlert.model_validate(alert)
        key = f"{alert['detector']}:{alert['subject']}"
        assert m.key() == key.encode()
        by_key.setdefault(key, []).append(alert["status"])
    assert by_key.get("psi:amount") == ["firing", "resolved"], by_key
    assert by_key.get("psi:log_amount") == ["firing", "resolved"], by_key
    assert by_key.get("adwin:log_loss", [])[:1] == ["firing"], by_key
    assert "psi:score" not in by_key and "mean_abs_diff:champion_vs_challenger" not in by_key, (
        by_key
    )

    # Metrics snapshots: JSON on the metrics topic; the last one has seen everything.
    snaps = [
        orjson.loads(m.value())
        for m in read_all(settings, metrics_topic, expected=1, idle=2.0, timeout=60)
    ]
    assert snaps and all(m["evaluator"] == f"{settings.group_id}-evaluator" for m in snaps)
    last = max(snaps, key=lambda m: m["stats"]["scores"])
    assert last["counts"] == {"scores": N, "labels": LATE, "labelled": N}
    assert last["join"]["joined"] == N and last["join"]["inline"] == N - LATE
    champion = last["metrics"]["champion"]["labelled"]
    assert (
        champion["cumulative"]["n"] == N and 0.7 < champion["cumulative"]["roc_auc"] <= 1.0
    )  # unlearned fraud drags it
    assert champion["last_1000"]["n"] == 1_000
    assert last["metrics"]["challenger"] is not None
    kinds = Counter(d["kind"] for d in last["detectors"])
    assert kinds["data"] >= 2 and kinds["prediction"] == 1 and kinds["performance"] >= 1

    # Offsets were committed after delivery: the evaluator's group is at the end of both topics.
    c = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"{settings.group_id}-evaluator",
        }
    )
    try:
        committed = c.committed(
            [TopicPartition(settings.topics.scores, 0), TopicPartition(settings.topics.labels, 0)],
            timeout=10,
        )
    finally:
        c.close()
    assert [tp.offset for tp in committed] == [N, LATE]


def _get_refused(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except (urllib.error.URLError, ConnectionError):
        return True
    return False
