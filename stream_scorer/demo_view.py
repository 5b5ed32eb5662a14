"""The demo's live terminal view (rich), and the reader of the topics it shows.

:class:`TopicReader` follows the evaluator's metrics topic and the drift-alerts topic as any
downstream reader would; :func:`render` draws one frame from what the demo knows (its feed, its
workers, its merchant stage, the reader) and :func:`summary` the lines printed at the end.
"""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stream_scorer.config import Settings
from stream_scorer.evaluation.alerts import rfc3339
from stream_scorer.kafka.clients import make_consumer
from stream_scorer.merchants.records import by_merchant_topic, features_topic


class TopicReader(threading.Thread):
    """Keeps the last metrics snapshot and every drift alert, read from their topics."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="demo-reader", daemon=True)
        self.settings = settings
        self.snapshot: dict[str, Any] | None = None
        self.alerts: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        self.ready = threading.Event()

    @property
    def fired(self) -> int:
        return sum(1 for a in self.alerts if a["status"] == "firing")

    @property
    def resolved(self) -> int:
        return sum(1 for a in self.alerts if a["status"] == "resolved")

    def run(self) -> None:
        s = self.settings
        consumer = make_consumer(
            s, f"stream-scorer-demo-view-{uuid.uuid4().hex[:8]}", **{"auto.offset.reset": "earliest"}
        )
        metrics_topic = s.evaluation.metrics_topic
        consumer.subscribe([metrics_topic, s.topics.drift_alerts], on_assign=lambda c, p: self.ready.set())
        try:
            while not self.stop_event.is_set():
                for msg in consumer.consume(500, 0.2):
                    if msg.error():
                        continue
                    try:
                        rec = orjson.loads(msg.value() or b"")
                    except orjson.JSONDecodeError:
                        continue
                    if msg.topic() == metrics_topic:
                        self.snapshot = rec
                    else:
                        self.alerts.append(rec)
        finally:
            consumer.close()


@dataclass
class WorkerRow:
    """One worker as the view shows it."""

    name: str
    partitions: list[int] = field(default_factory=list)
    scored: int = 0
    rate: float = 0.0
    dead_letters: int = 0
    lag: int | None = None
    alive: bool = True


@dataclass
class StageRow:
    """The merchant stage, and the merchant tables the workers read from it, as the view shows them."""

    name: str = "merchants"
    partitions: list[int] = field(default_factory=list)
    merchants: int | None = None
    """Merchants held (the stage's gauge; None before its first reading)."""
    events: int = 0
    labels: int = 0
    published: int = 0
    tombstones: int = 0
    commits: int = 0
    aborts: int = 0
    lag: int | None = None
    alive: bool = True
    tables: dict[str, int] = field(default_factory=dict)
    """Worker name -> merchants in its table."""
    staleness: list[float] = field(default_factory=list)
    """The workers' latest staleness samples (seconds), all together."""
    updates: int = 0
    """Staleness samples taken since the start, all workers."""


def percentile(samples: list[float], q: float) -> float | None:
    """The ``q``-quantile of ``samples`` (nearest rank), None when there are none.

    >>> percentile([0.3, 0.1, 0.2, 0.4], 0.5), percentile([0.3, 0.1, 0.2, 0.4], 0.95), percentile([], 0.5)
    (0.2, 0.4, None)
    """
    if not samples:
        return None
    ranked = sorted(samples)
    return ranked[min(len(ranked) - 1, max(0, math.ceil(q * len(ranked)) - 1))]


def staleness_text(stage: StageRow) -> str:
    """The workers' table staleness, p50 and p95 of their latest samples.

    >>> staleness_text(StageRow(staleness=[0.2, 0.4], updates=10))
    'p50 0.200s, p95 0.400s (the last 2 of 10 updates)'
    """
    p50, p95 = percentile(stage.staleness, 0.5), percentile(stage.staleness, 0.95)
    if p50 is None or p95 is None:
        return "no update measured yet"
    return f"p50 {p50:.3f}s, p95 {p95:.3f}s (the last {len(stage.staleness)} of {stage.updates} updates)"


def _stage_table(stage: StageRow, settings: Settings) -> Group:
    st = Table(
        title=f"Merchant stage ({by_merchant_topic(settings.group_id)} -> {features_topic(settings.group_id)})",
        title_justify="left",
        expand=True,
    )
    for col in ("stage", "partitions", "merchants", "folded", "lag (records)", "aborts"):
        st.add_column(col, justify="left" if col in ("stage", "partitions") else "right")
    st.add_row(
        stage.name if stage.alive else f"{stage.name} (stopped)",
        ",".join(map(str, stage.partitions)) or "-",
        "-" if stage.merchants is None else f"{stage.merchants:,}",
        f"{stage.events + stage.labels:,}",
        "-" if stage.lag is None else f"{stage.lag:,}",
        f"{stage.aborts:,}",
    )
    tables = ", ".join(f"{name} {n:,}" for name, n in stage.tables.items()) or "-"
    return Group(
        st,
        Text.assemble(("Merchant tables (merchants per worker): ", "bold"), tables),
        Text.assemble(("Table staleness: ", "bold"), staleness_text(stage)),
    )


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def model_quality(snapshot: dict[str, Any] | None, window: str) -> dict[str, dict[str, Any]]:
    """Per model: ROC AUC and AP over ``window`` and cumulative, and the labelled count.

    >>> snap = {"metrics": {"champion": {"labelled": {
    ...     "cumulative": {"n": 9, "roc_auc": 0.9, "average_precision": 0.5},
    ...     "last_1000": {"n": 9, "roc_auc": 0.8, "average_precision": 0.4}}}, "challenger": None}}
    >>> model_quality(snap, "last_1000")["champion"]["roc_auc"]
    0.8
    """
    out: dict[str, dict[str, Any]] = {}
    for model, m in ((snapshot or {}).get("metrics") or {}).items():
        if m is None:
            continue
        cum = m["labelled"]["cumulative"]
        live = m["labelled"].get(window, cum)
        out[model] = {
            "n": cum["n"],
            "roc_auc": live["roc_auc"],
            "average_precision": live["average_precision"],
            "cumulative_roc_auc": cum["roc_auc"],
            "cumulative_average_precision": cum["average_precision"],
        }
    return out


def bands(snapshot: dict[str, Any] | None) -> dict[str, int] | None:
    """The champion's scores so far by band (from its alert and decline rates)."""
    m = ((snapshot or {}).get("metrics") or {}).get("champion")
    if not m:
        return None
    sc = m["scores"]
    n, ar, dr = sc["n"], sc["alert_rate"] or 0.0, sc["decline_rate"] or 0.0
    decline, review = round(n * dr), round(n * (ar - dr))
    return {"approve": n - review - decline, "review": review, "decline": decline}


def render(
    header: str,
    feed_line: str,
    workers: list[WorkerRow],
    reader: TopicReader,
    window: str,
    stage: StageRow | None = None,
) -> Group:
    """One frame of the live view; ``stage`` is None when the workers keep merchant features per
    partition (``STREAM_SCORER_MERCHANT_FEATURES=partition``: no stage runs)."""
    wt = Table(title="Workers (one consumer group, sharing the partitions)", title_justify="left", expand=True)
    for col in ("worker", "partitions", "scored", "scores/s", "lag (records)", "dead letters"):
        wt.add_column(col, justify="left" if col in ("worker", "partitions") else "right")
    for w in workers:
        name = w.name if w.alive else f"{w.name} (stopped)"
        lag = "-" if w.lag is None else f"{w.lag:,}"
        parts = ",".join(map(str, w.partitions)) or "-"
        wt.add_row(name, parts, f"{w.scored:,}", f"{w.rate:,.0f}", lag, f"{w.dead_letters:,}")

    b = bands(reader.snapshot)
    dead = sum(w.dead_letters for w in workers)
    if b:
        total = max(sum(b.values()), 1)
        band_line = "  ".join(f"{k} {v:,} ({100 * v / total:.1f}%)" for k, v in b.items())
    else:
        band_line = "waiting for the evaluator's first snapshot"
    bands_text = Text.assemble(
        ("Bands (champion, all scores): ", "bold"), band_line, ("   Dead letters: ", "bold"), f"{dead:,}"
    )

    mt = Table(
        title=f"Models (metrics topic {reader.settings.evaluation.metrics_topic};"
        f" {window.replace('_', ' ')} labelled / all)",
        title_justify="left",
        expand=True,
    )
    for col in ("model", "ROC AUC", "AP", "ROC AUC (all)", "AP (all)", "labelled"):
        mt.add_column(col, justify="left" if col == "model" else "right")
    quality = model_quality(reader.snapshot, window)
    for model in ("champion", "challenger"):
        q = quality.get(model)
        if q is None:
            mt.add_row(model, "-", "-", "-", "-", "-")
            continue
        mt.add_row(
            model, _fmt(q["roc_auc"]), _fmt(q["average_precision"]), _fmt(q["cumulative_roc_auc"]),
            _fmt(q["cumulative_average_precision"]), f"{q['n']:,}",
        )

    at = Table(
        title=f"Drift alerts (topic {reader.settings.topics.drift_alerts}):"
        f" {reader.fired} fired, {reader.resolved} resolved",
        title_justify="left",
        expand=True,
    )
    for col in ("detected at", "status", "detector:subject", "statistic", "threshold", "severity"):
        at.add_column(col, justify="right" if col in ("statistic", "threshold") else "left")
    for a in reader.alerts[-10:]:
        style = "red" if a["status"] == "firing" else "green"
        at.add_row(
            str(a.get("detected_at", ""))[11:19], Text(a["status"], style=style), f"{a['detector']}:{a['subject']}",
            _fmt(a.get("statistic")), _fmt(a.get("threshold")), str(a.get("severity", "")),
        )
    if not reader.alerts:
        at.add_row("-", "none yet", "", "", "", "")
    merchants = (
        _stage_table(stage, reader.settings)
        if stage is not None
        else Text("Merchant features: per partition (STREAM_SCORER_MERCHANT_FEATURES=partition), no stage")
    )
    return Group(Panel(Text(header + "\n" + feed_line)), wt, merchants, bands_text, mt, at)


def summary(
    seconds: float,
    feed: Any,
    workers: list[WorkerRow],
    reader: TopicReader,
    window: str,
    settings: Settings,
    broker_kept: bool,
    stage: StageRow | None = None,
) -> str:
    """The lines printed when the demo ends; each figure on a line of its own, ``name: value``."""
    scores = sum(w.scored for w in workers)
    dead = sum(w.dead_letters for w in workers)
    quality = model_quality(reader.snapshot, window)
    lines = [
        f"summary after {seconds:.0f}s",
        f"  events: {feed.sent} transactions sent ({feed.bad} malformed on purpose), {feed.labels} labels",
        f"  scores: {scores} ({', '.join(f'{w.name} {w.scored}' for w in workers)})",
        f"  dead letters: {dead}",
        f"  alerts fired: {reader.fired}, resolved: {reader.resolved}",
    ]
    began = getattr(feed, "drift_began", None)
    drift_at = getattr(feed, "drift_at", None)
    if began is not None:
        lines.insert(2, f"  drift: from event {drift_at}, began {rfc3339(began)}")
    elif drift_at is not None:
        lines.insert(2, f"  drift: scheduled at event {drift_at}, not reached")
    for a in reader.alerts:
        lines.append(
            f"    {a.get('detected_at', '')} {a['status']:8} {a['detector']}:{a['subject']}"
            f" statistic {_fmt(a.get('statistic'))} threshold {_fmt(a.get('threshold'))}"
        )
    if stage is None:
        lines.append("  merchant features: per partition (STREAM_SCORER_MERCHANT_FEATURES=partition)")
    else:
        lines += [
            f"  merchant stage: {stage.merchants or 0} merchants held, {stage.events} transactions"
            f" (of {scores} scored) and {stage.labels} labels folded, {stage.published} states published,"
            f" {stage.tombstones} tombstones, {stage.commits} commits, {stage.aborts} aborts",
            "  merchant tables: "
            + ", ".join(f"{name} {n} merchants" for name, n in stage.tables.items())
            + f"; staleness {staleness_text(stage)}",
        ]
    for model in ("champion", "challenger"):
        q = quality.get(model)
        if q is None:
            lines.append(f"  {model}: no labelled score yet")
            continue
        lines.append(
            f"  {model}: ROC AUC {_fmt(q['cumulative_roc_auc'])}, AP {_fmt(q['cumulative_average_precision'])}"
            f" over {q['n']} labelled scores ({window.replace('_', ' ')}: ROC AUC {_fmt(q['roc_auc'])},"
            f" AP {_fmt(q['average_precision'])})"
        )
    t = settings.topics
    if broker_kept:
        b = settings.bootstrap_servers
        lines.append(f"  topics, on {b}; read one with kcat -C -b {b} -t TOPIC -e")
    else:
        lines.append(
            f"  topics, on the demo's broker at {settings.bootstrap_servers}, stopped with it (to keep them, run"
            " `stream-scorer kafka start` elsewhere and the demo with KAFKA_BOOTSTRAP_SERVERS=localhost:9092;"
            " read one with kcat -C -b localhost:9092 -t TOPIC -e)"
        )
    topics = [
        ("transactions in", t.transactions),
        ("labels", t.labels),
        ("scores", t.scores),
        ("dead letters", t.dlq),
        ("drift alerts", t.drift_alerts),
        ("evaluator metrics", settings.evaluation.metrics_topic),
    ]
    if stage is not None:
        topics += [
            ("to merchant stage", by_merchant_topic(settings.group_id)),
            ("merchant features", features_topic(settings.group_id)),
        ]
    for what, topic in topics:
        lines.append(f"    {what:18} {topic}")
    return "\n".join(lines)
