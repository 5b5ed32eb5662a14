"""The demo's live view and summary, drawn from a snapshot and alerts as the topics carry them."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from stream_scorer.config import Settings
from stream_scorer.demo_view import StageRow, TopicReader, WorkerRow, bands, percentile, render, summary


def _snapshot() -> dict:
    labelled = {
        "cumulative": {"n": 900, "roc_auc": 0.91, "average_precision": 0.55},
        "last_1000": {"n": 900, "roc_auc": 0.93, "average_precision": 0.61},
    }
    scores = {"n": 1000, "alert_rate": 0.05, "decline_rate": 0.01}
    return {"metrics": {"champion": {"labelled": labelled, "scores": scores}, "challenger": None}}


def _reader(snapshot: dict | None) -> TopicReader:
    reader = TopicReader(Settings())
    reader.snapshot = snapshot
    reader.alerts = [
        {"status": "firing", "detector": "psi", "subject": "amount", "statistic": 0.5, "threshold": 0.35,
         "severity": "warning", "detected_at": "2026-01-01T10:00:00.000Z"},
        {"status": "resolved", "detector": "psi", "subject": "amount", "statistic": 0.1, "threshold": 0.35,
         "severity": "info", "detected_at": "2026-01-01T10:01:00.000Z"},
    ]
    return reader


def test_bands_from_the_champion_rates():
    assert bands(_snapshot()) == {"approve": 950, "review": 40, "decline": 10}
    assert bands(None) is None


def test_render_shows_workers_quality_and_alerts():
    rows = [WorkerRow("worker-1", [0, 1, 2], 500, 250.0, 2, 7), WorkerRow("worker-2", [3, 4, 5], 480, 240.0, 1, None)]
    console = Console(width=140, record=True)
    for snap in (None, _snapshot()):
        console.print(render("header", "feed", rows, _reader(snap), "last_1000"))
    text = console.export_text()
    assert "worker-1" in text and "0,1,2" in text and "250" in text
    assert "0.930" in text and "0.610" in text  # champion over the last 1000
    assert "1 fired, 1 resolved" in text and "psi:amount" in text
    assert "approve 950" in text and "Dead letters: 3" in text


def _stage() -> StageRow:
    return StageRow(
        partitions=[0, 1, 2, 3, 4, 5], merchants=1_234, events=980, labels=870, published=640, tombstones=2,
        commits=55, aborts=1, lag=17, tables={"worker-1": 1_234, "worker-2": 1_230},
        staleness=[0.25, 0.1, 0.5, 0.2, 0.3], updates=4_000,
    )


def test_percentile_is_the_nearest_rank():
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 0.5) == 50.0 and percentile(samples, 0.95) == 95.0
    assert percentile(samples, 1.0) == 100.0 and percentile(samples, 0.0) == 1.0
    assert percentile([], 0.5) is None


def test_render_shows_the_merchant_stage_and_the_tables():
    rows = [WorkerRow("worker-1", [0, 1, 2], 500, 250.0, 2, 7), WorkerRow("worker-2", [3, 4, 5], 480, 240.0, 1, 3)]
    console = Console(width=80, record=True)
    console.print(render("header", "feed", rows, _reader(None), "last_1000", _stage()))
    text = console.export_text()
    assert "stream-scorer.by-merchant -> stream-scorer.merchant-features" in text
    assert "0,1,2,3,4,5" in text and "1,234" in text and "1,850" in text  # held; folded: 980 + 870
    assert "worker-1 1,234, worker-2 1,230" in text
    assert "p50 0.250s, p95 0.500s (the last 5 of 4000 updates)" in text
    # Not yet measured: dashes, and no quantile.
    console = Console(width=80, record=True)
    console.print(render("header", "feed", rows, _reader(None), "last_1000", StageRow(alive=False)))
    text = console.export_text()
    assert "(stopped)" in text and "no update measured yet" in text
    # Merchant features per partition: no stage to show.
    console = Console(width=80, record=True)
    console.print(render("header", "feed", rows, _reader(None), "last_1000", None))
    assert "per partition" in console.export_text()


def test_summary_has_every_figure():
    rows = [WorkerRow("worker-1", scored=500, dead_letters=2), WorkerRow("worker-2", scored=480, dead_letters=1)]
    feed = SimpleNamespace(sent=990, bad=3, labels=900)
    text = summary(60.0, feed, rows, _reader(_snapshot()), "last_1000", Settings(), broker_kept=True)
    assert "events: 990 transactions sent (3 malformed on purpose), 900 labels" in text
    assert "scores: 980 (worker-1 500, worker-2 480)" in text
    assert "dead letters: 3" in text
    assert "alerts fired: 1, resolved: 1" in text
    assert "champion: ROC AUC 0.910, AP 0.550 over 900 labelled scores" in text
    assert "challenger: no labelled score yet" in text
    assert "drift-alerts" in text and "scorer-metrics" in text and "kcat -C -b" in text


def test_summary_has_the_merchant_stage():
    rows = [WorkerRow("worker-1", scored=500, dead_letters=2), WorkerRow("worker-2", scored=480, dead_letters=1)]
    feed = SimpleNamespace(sent=990, bad=3, labels=900)
    text = summary(60.0, feed, rows, _reader(_snapshot()), "last_1000", Settings(), True, stage=_stage())
    assert (
        "merchant stage: 1234 merchants held, 980 transactions (of 980 scored) and 870 labels folded,"
        " 640 states published, 2 tombstones, 55 commits, 1 aborts"
    ) in text
    assert (
        "merchant tables: worker-1 1234 merchants, worker-2 1230 merchants;"
        " staleness p50 0.250s, p95 0.500s (the last 5 of 4000 updates)"
    ) in text
    assert "stream-scorer.by-merchant" in text and "stream-scorer.merchant-features" in text
    text = summary(60.0, feed, rows, _reader(_snapshot()), "last_1000", Settings(), True)
    assert "merchant features: per partition" in text and "by-merchant" not in text
