"""What the operations page shows: a short history of the evaluator's snapshots, its alerts, lag.

The evaluator feeds it at each metrics snapshot (:meth:`Dashboard.observe`), at each alert it
publishes (:meth:`Dashboard.alert`) and when it has measured the workers' lag
(:meth:`Dashboard.set_lag`); the page polls :meth:`Dashboard.get` as JSON. Pure code: no Kafka,
no HTTP.

>>> d = Dashboard(points=3)
>>> snap = {"metrics": {"champion": None}, "counts": {"scores": 0}}
>>> d.observe(snap, now=0.0); d.observe({**snap, "counts": {"scores": 500}}, now=2.0)
>>> [p["scores_per_s"] for p in d.get()["history"]]
[None, 250.0]
>>> d.alert({"alert_id": "a", "status": "firing", "detector": "psi", "subject": "amount",
...          "kind": "data", "severity": "warning", "statistic": 0.4, "threshold": 0.35,
...          "event_time": "t", "detected_at": "t"})
>>> d.get()["alerts"][0]["status"], d.get()["alert_counts"]
('firing', {'firing': 1, 'resolved': 0})
"""

from __future__ import annotations

from collections import deque
from typing import Any

_ALERT_FIELDS = (
    "alert_id", "status", "kind", "detector", "subject", "severity", "statistic", "threshold",
    "event_time", "detected_at",
)


def bands_of(scores: dict[str, Any]) -> dict[str, float | None]:
    """Approve/review/decline shares from a :class:`ScoreStats` window (its alert and decline rates).

    >>> bands_of({"alert_rate": 0.1, "decline_rate": 0.02})
    {'approve': 0.9, 'review': 0.08, 'decline': 0.02}
    """
    alert, decline = scores.get("alert_rate"), scores.get("decline_rate")
    if alert is None or decline is None:
        return {"approve": None, "review": None, "decline": None}
    return {"approve": round(1.0 - alert, 6), "review": round(alert - decline, 6), "decline": decline}


class Dashboard:
    """The last ``points`` snapshots, summarised, the last ``alerts`` alerts, and the group's lag."""

    def __init__(self, points: int = 720, alerts: int = 200, window: str = "last_1000") -> None:
        self.window = window
        self.history: deque[dict[str, Any]] = deque(maxlen=points)
        self.alerts: deque[dict[str, Any]] = deque(maxlen=alerts)
        self.fired = 0
        self.resolved = 0
        self.lag: list[dict[str, Any]] = []
        self.lag_group: str | None = None
        self.histograms: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, Any] = {}
        self._last: tuple[float, int] | None = None

    def observe(self, snapshot: dict[str, Any], now: float) -> None:
        """Add a point from a :meth:`Monitor.get` snapshot taken at wall-clock ``now``."""
        scores = int(snapshot["counts"]["scores"])
        rate = None
        if self._last is not None and now > self._last[0]:
            rate = round((scores - self._last[1]) / (now - self._last[0]), 3)
        self._last = (now, scores)
        models: dict[str, Any] = {}
        for model, m in snapshot["metrics"].items():
            if m is None:
                continue
            labelled = m["labelled"]
            live = labelled.get(self.window) or labelled["cumulative"]
            models[model] = {
                "roc_auc": live["roc_auc"],
                "average_precision": live["average_precision"],
                "cumulative_roc_auc": labelled["cumulative"]["roc_auc"],
                "cumulative_average_precision": labelled["cumulative"]["average_precision"],
                "bands": bands_of(m["scores"]["window"]),
            }
            self.histograms[model] = m["scores"]["histogram"]
        self.counts = dict(snapshot["counts"])
        self.history.append({"t": now, "scores_per_s": rate, "models": models})

    def alert(self, alert: dict[str, Any]) -> None:
        """Remember an alert the evaluator published (newest first on the page)."""
        self.alerts.appendleft({k: alert.get(k) for k in _ALERT_FIELDS})
        if alert["status"] == "firing":
            self.fired += 1
        else:
            self.resolved += 1

    def set_lag(self, group: str, members: list[dict[str, Any]]) -> None:
        """The workers' group and, per member, its partitions and lag."""
        self.lag_group, self.lag = group, members

    def get(self) -> dict[str, Any]:
        """Everything the page draws, JSON-ready."""
        return {
            "window": self.window,
            "history": list(self.history),
            "histograms": self.histograms,
            "counts": self.counts,
            "alerts": list(self.alerts),
            "alert_counts": {"firing": self.fired, "resolved": self.resolved},
            "lag": {"group": self.lag_group, "members": self.lag},
        }
