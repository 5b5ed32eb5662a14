"""The side evaluator: join scores with labels, measure the model live, detect drift, alert.

It runs in its own consumer group (``<group_id>-evaluator``), reads the scores and labels topics
(read_committed), and drives a :class:`~stream_scorer.evaluation.monitor.Monitor`. Alerts go to the
drift-alerts topic keyed ``detector:subject``; a metrics snapshot goes to the metrics topic every
``publish_interval_s`` seconds; Prometheus scrapes ``/metrics``; ``/healthz`` and ``/readyz`` answer
probes. The same port serves the operations page at ``/`` (stream_scorer/web/index.html), which
polls ``/api/dashboard`` (a :class:`~stream_scorer.evaluation.dashboard.Dashboard`: the recent
snapshots, the alerts, and the workers' lag, measured by a thread of its own every publish
interval so that a slow group coordinator never holds the loop).

Per batch (the steps, in the order correctness needs):

1. ``consume()`` up to ``batch_size`` records from both topics;
2. per record: decode and fold it into the monitor (malformed records are counted and skipped);
3. ``poll()`` the monitor and produce the alerts whose state changed;
4. if the publish interval has passed, produce a metrics snapshot and refresh the Prometheus gauges;
5. ``flush()`` the producer: if a record failed, stop without committing (the batch is read again);
6. commit the next offset of every partition the batch touched, synchronously.

The monitor's state (join buffer, reference windows) lives in memory: after a restart the
evaluator resumes from its committed offsets and builds new references; alerts already published
are not repeated, and labels whose scores were read before the restart stay unmatched (counted).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_scorer.config import Settings
from stream_scorer.evaluation.alerts import rfc3339
from stream_scorer.evaluation.dashboard import Dashboard
from stream_scorer.evaluation.monitor import Monitor
from stream_scorer.events import SCHEMA_VERSION
from stream_scorer.exceptions import ConfigError, DeliveryError
from stream_scorer.kafka.admin import admin_client, ensure_topics
from stream_scorer.kafka.clients import make_consumer, make_producer
from stream_scorer.kafka.lag import group_lag
from stream_scorer.metrics import MetricsServer, Route, start_metrics_server

logger = logging.getLogger(__name__)

_NAN = float("nan")


@dataclass
class EvaluatorStats:
    """Running counts of what the evaluator did."""

    consumed: int = 0
    scores: int = 0
    labels: int = 0
    malformed: int = 0
    batches: int = 0
    commits: int = 0
    alerts: int = 0
    metrics_records: int = 0
    delivery_failures: int = 0
    consumer_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class EvaluatorMetrics:
    """The evaluator's Prometheus metrics, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        # The Grafana dashboard (deploy/grafana) reads stream_scorer_eval_* and drift_alerts_total.
        p = "stream_scorer_eval_"
        self.records = Counter(
            p + "records", "Records read, by kind (score, label, malformed).", ["kind"], registry=r
        )
        self.alerts = Counter(
            "stream_scorer_drift_alerts", "Drift alerts published.", ["kind", "status"], registry=r
        )
        self.batch_seconds = Histogram(
            p + "batch_seconds", "Time to process one batch.", registry=r
        )
        self.join = Gauge(p + "join", "Join counts and pending entries.", ["count"], registry=r)
        labels = ["model", "window"]
        self.roc_auc = Gauge(p + "roc_auc", "ROC AUC of labelled scores.", labels, registry=r)
        self.average_precision = Gauge(
            p + "average_precision", "Average precision.", labels, registry=r
        )
        self.precision = Gauge(
            p + "precision", "Precision at the review threshold.", labels, registry=r
        )
        self.recall = Gauge(p + "recall", "Recall at the review threshold.", labels, registry=r)
        self.log_loss = Gauge(p + "log_loss", "Mean log loss.", labels, registry=r)
        self.label_rate = Gauge(
            p + "label_rate", "Share of labelled scores that are fraud.", labels, registry=r
        )
        self.alert_rate = Gauge(
            p + "alert_rate", "Share of scores at or above review.", labels, registry=r
        )
        self.decline_rate = Gauge(
            p + "decline_rate", "Share of scores at or above decline.", labels, registry=r
        )
        self.score_quantile = Gauge(
            p + "score_quantile",
            "Score quantiles, recent window.",
            ["model", "quantile"],
            registry=r,
        )
        det = ["kind", "detector", "subject"]
        self.drift_statistic = Gauge(
            p + "drift_statistic", "A drift detector's statistic.", det, registry=r
        )
        self.drift_threshold = Gauge(
            p + "drift_threshold", "A drift detector's threshold.", det, registry=r
        )
        self.drift_active = Gauge(
            p + "drift_active", "1 while a drift condition holds.", det, registry=r
        )
        self.last_publish = Gauge(
            p + "last_publish_timestamp_seconds",
            "Wall-clock time of the last snapshot.",
            registry=r,
        )

    def observe(self, snapshot: dict[str, Any]) -> None:
        """Refresh the gauges from a :meth:`Monitor.get` snapshot."""
        for name, value in snapshot["join"].items():
            self.join.labels(name).set(value)
        for model, m in snapshot["metrics"].items():
            if m is None:
                continue
            for window, values in m["labelled"].items():
                for gauge, key in (
                    (self.roc_auc, "roc_auc"),
                    (self.average_precision, "average_precision"),
                    (self.precision, "precision"),
                    (self.recall, "recall"),
                    (self.log_loss, "log_loss"),
                    (self.label_rate, "label_rate"),
                ):
                    v = values[key]
                    gauge.labels(model, window).set(_NAN if v is None else v)
            scores = m["scores"]
            for window, rates in (("cumulative", scores), ("recent", scores["window"])):
                self.alert_rate.labels(model, window).set(
                    _NAN if rates["alert_rate"] is None else rates["alert_rate"]
                )
                self.decline_rate.labels(model, window).set(
                    _NAN if rates["decline_rate"] is None else rates["decline_rate"]
                )
            for q, v in scores["window"]["quantiles"].items():
                self.score_quantile.labels(model, q).set(v)
        for d in snapshot["detectors"]:
            detector, subject = d["key"].split(":", 1)
            names = (d["kind"], detector, subject)
            self.drift_statistic.labels(*names).set(d["statistic"])
            self.drift_threshold.labels(*names).set(d["threshold"])
            self.drift_active.labels(*names).set(1.0 if d["active"] else 0.0)
        self.last_publish.set(time.time())


class Evaluator:
    """The evaluator's consume -> monitor -> alert/metrics -> commit loop."""

    def __init__(self, settings: Settings, monitor: Monitor | None = None) -> None:
        self.settings = settings
        self.group_id = f"{settings.group_id}-evaluator"
        self.monitor = monitor or Monitor(
            settings.evaluation, settings.review_threshold, settings.decline_threshold
        )
        self.stats = EvaluatorStats()
        self.metrics = EvaluatorMetrics()
        self.dashboard = Dashboard(window=f"last_{min(settings.evaluation.windows)}")
        self.server: MetricsServer | None = None
        self._lag_thread: threading.Thread | None = None
        self._lag_stop = threading.Event()
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._assigned = False
        self._last_loop = 0.0
        self._last_publish = 0.0

    # -- probes ---------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Alive: the loop turned within the last minute (a consume call never blocks that long)."""
        return self._consumer is not None and time.monotonic() - self._last_loop < 60.0

    def ready(self) -> bool:
        """Ready: healthy and holding partitions of the group."""
        return self.healthy() and self._assigned

    # -- life cycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its batch, publish, flush, commit and return."""
        self._stop.set()

    def _open(self) -> None:
        s, ev = self.settings, self.settings.evaluation
        if s.create_topics:
            ensure_topics(
                s, [s.topics.scores, s.topics.labels, s.topics.drift_alerts, ev.metrics_topic]
            )
        if ev.metrics_port is not None and self.server is None:
            try:
                self.server = start_metrics_server(
                    ev.metrics_port,
                    ev.metrics_host,
                    self.metrics.registry,
                    self.healthy,
                    self.ready,
                    routes=self.routes(),
                )
            except OSError as exc:
                raise ConfigError(
                    f"STREAM_SCORER_EVALUATION__METRICS_PORT: cannot listen on "
                    f"{ev.metrics_host}:{ev.metrics_port}: {exc}"
                ) from None
        self._producer = make_producer(s)
        self._consumer = make_consumer(s, self.group_id, **{"isolation.level": "read_committed"})
        self._consumer.subscribe(
            [s.topics.scores, s.topics.labels],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._last_loop = time.monotonic()
        if ev.metrics_port is not None:
            self._lag_stop.clear()
            self._lag_thread = threading.Thread(target=self._measure_lag, name="evaluator-lag", daemon=True)
            self._lag_thread.start()

    def routes(self) -> dict[str, Route]:
        """The operations page (``/``) and its data (``/api/dashboard``)."""
        from importlib.resources import files

        def page() -> tuple[bytes, str]:
            return files("stream_scorer").joinpath("web/index.html").read_bytes(), "text/html; charset=utf-8"

        def data() -> tuple[bytes, str]:
            return orjson.dumps(self.dashboard.get()), "application/json"

        return {"/": page, "/index.html": page, "/api/dashboard": data}

    def _measure_lag(self) -> None:
        """Every publish interval, the worker group's lag per member on the transactions topic."""
        s = self.settings
        admin = admin_client(s)
        consumer = make_consumer(s, f"{self.group_id}-lag")
        try:
            while not self._lag_stop.wait(min(s.evaluation.publish_interval_s, 5.0)):
                try:
                    members = group_lag(admin, consumer, s.group_id, s.topics.transactions)
                except KafkaException as exc:
                    logger.debug("lag of group %s: %s", s.group_id, exc)
                    continue
                self.dashboard.set_lag(s.group_id, [m.as_dict() for m in members])
        except Exception:
            logger.exception("measuring the workers' lag failed; the page shows none")
        finally:
            consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = True
        logger.info("evaluator assigned %d partitions", len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = False
        logger.info("evaluator revoked %d partitions", len(partitions))

    def run(self) -> EvaluatorStats:
        """Evaluate until :meth:`stop` is called; return the counts."""
        s = self.settings
        try:
            self._open()
            assert self._consumer is not None
            consumer = self._consumer
            logger.info(
                "evaluator started: group=%s topics=%s,%s",
                self.group_id,
                s.topics.scores,
                s.topics.labels,
            )
            while not self._stop.is_set():
                msgs = consumer.consume(s.batch_size, s.poll_timeout_s)
                self._last_loop = time.monotonic()
                if msgs:
                    self.process_batch(msgs)
                elif time.monotonic() - self._last_publish >= s.evaluation.publish_interval_s:
                    self.publish_metrics()
                    self._flush_or_raise(self.stats.delivery_failures)
        finally:
            self._close()
        logger.info("evaluator stopped: %s", self.stats.as_dict())
        return self.stats

    def _close(self) -> None:
        try:
            if self._producer is not None:
                self.publish_metrics()
                self._producer.flush(30)
        finally:
            if self._consumer is not None:
                self._consumer.close()
            self._consumer = self._producer = None
            self._assigned = False
            if self._lag_thread is not None:
                self._lag_stop.set()
                self._lag_thread.join(15)
                self._lag_thread = None
            if self.server is not None:
                self.server.close()
                self.server = None

    # -- the hot path ---------------------------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.stats.delivery_failures += 1

    def process_batch(self, msgs: list[Message]) -> None:
        """Fold one batch into the monitor, publish what changed, and commit (steps 2-6)."""
        assert self._consumer is not None and self._producer is not None
        t0 = time.perf_counter()
        s = self.settings
        scores_topic = s.topics.scores
        monitor = self.monitor
        update_score, update_label = monitor.update_score, monitor.update_label
        loads = orjson.loads
        failures_before = self.stats.delivery_failures
        next_offsets: dict[tuple[str, int], int] = {}
        n_scores = n_labels = bad = 0

        for msg in msgs:
            err = msg.error()
            if err is not None:
                self._consumer_error(err)
                continue
            # Topic, partition and offset are set on every consumed record.
            topic: str = msg.topic()  # type: ignore[assignment,unused-ignore]
            next_offsets[(topic, msg.partition())] = msg.offset() + 1  # type: ignore[index,operator,unused-ignore]
            try:
                record = loads(msg.value() or b"")
                if topic == scores_topic:
                    if not _looks_like_score(record):
                        raise ValueError("not a score")
                    update_score(record)
                    n_scores += 1
                else:
                    if not _looks_like_label(record):
                        raise ValueError("not a label")
                    update_label(record)
                    n_labels += 1
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                bad += 1

        st = self.stats
        st.consumed += len(msgs)
        st.scores += n_scores
        st.labels += n_labels
        st.malformed += bad
        st.batches += 1
        self.metrics.records.labels("score").inc(n_scores)
        self.metrics.records.labels("label").inc(n_labels)
        if bad:
            self.metrics.records.labels("malformed").inc(bad)
            logger.warning("skipped %d malformed records in a batch of %d", bad, len(msgs))

        for alert in monitor.poll():
            self._produce(
                s.topics.drift_alerts,
                f"{alert['detector']}:{alert['subject']}".encode(),
                orjson.dumps(alert),
            )
            self.metrics.alerts.labels(alert["kind"], alert["status"]).inc()
            self.dashboard.alert(alert)
            st.alerts += 1
            logger.info(
                "drift alert %s %s:%s statistic=%.4g",
                alert["status"],
                alert["detector"],
                alert["subject"],
                alert["statistic"],
            )
        if time.monotonic() - self._last_publish >= s.evaluation.publish_interval_s:
            self.publish_metrics()
        self._flush_or_raise(failures_before)
        if next_offsets:
            self._commit(next_offsets)
        self.metrics.batch_seconds.observe(time.perf_counter() - t0)

    def publish_metrics(self) -> None:
        """Produce a metrics snapshot (JSON) to the metrics topic; refresh the Prometheus gauges."""
        assert self._producer is not None
        snapshot = self.monitor.get()
        self.metrics.observe(snapshot)
        self.dashboard.observe(snapshot, time.time())
        record = {
            "schema_version": SCHEMA_VERSION,
            "evaluator": self.group_id,
            "emitted_at": rfc3339(time.time()),
            **snapshot,
            "stats": self.stats.as_dict(),
        }
        self._produce(
            self.settings.evaluation.metrics_topic, self.group_id.encode(), orjson.dumps(record)
        )
        self.stats.metrics_records += 1
        self._last_publish = time.monotonic()

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        assert self._producer is not None
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                return
            except BufferError:
                self._producer.poll(0.05)

    def _flush_or_raise(self, failures_before: int) -> None:
        assert self._producer is not None
        remaining = self._producer.flush(60)
        failed = self.stats.delivery_failures - failures_before
        if remaining or failed:
            raise DeliveryError(
                f"{failed} alert/metrics records failed and {remaining} are undelivered; "
                "the batch's offsets are not committed"
            )

    def _consumer_error(self, err: KafkaError) -> None:
        self.stats.consumer_errors += 1
        if err.fatal():
            raise KafkaException(err)
        logger.warning("consumer error: %s", err)

    def _commit(self, next_offsets: dict[tuple[str, int], int]) -> None:
        assert self._consumer is not None
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
            self.stats.commits += 1
        except KafkaException as exc:
            # A rebalance took the partitions away; their new owner re-reads from the last commit.
            logger.warning("commit failed (%s); the batch may be read again after a rebalance", exc)


def _looks_like_score(r: Any) -> bool:
    if type(r) is not dict:
        return False
    p: Any = r.get("score")
    c: Any = r.get("challenger_score")
    return (
        type(r.get("transaction_id")) is str
        and type(r.get("event_time")) is str
        and type(p) in (float, int)
        and 0.0 <= p <= 1.0
        and (c is None or (type(c) in (float, int) and 0.0 <= c <= 1.0))
    )


def _looks_like_label(r: Any) -> bool:
    return (
        type(r) is dict
        and type(r.get("transaction_id")) is str
        and type(r.get("is_fraud")) is bool
        and type(r.get("label_time")) is str
    )
