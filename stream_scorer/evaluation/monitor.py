"""The evaluation pipeline in one object: join, live metrics, drift detectors and alerts.

``evaluator.py`` drives it from Kafka, the tests and benchmarks from plain lists; the code path is
the same. Per score and per label the work is a few deque and counter updates; the detectors
recompute their statistics every ``check_every`` values; :meth:`Monitor.poll` (once per batch)
turns the detectors' states into alerts.

>>> from stream_scorer.evaluation.settings import EvaluationSettings
>>> m = Monitor(EvaluationSettings(), review=0.5, decline=0.8)
>>> m.update_score({"transaction_id": "t1", "event_time": "2026-01-01T00:00:00Z", "score": 0.7,
...     "amount": 12.0, "features": {"log_amount": 2.56}})
>>> m.update_label({"transaction_id": "t1", "is_fraud": True, "label_time": "2026-01-02T00:00:00Z"})
>>> m.get()["join"]["joined"], m.poll()
(1, [])
"""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from stream_scorer.evaluation.alerts import AlertManager, rfc3339
from stream_scorer.evaluation.drift import (
    Check,
    DisagreementDrift,
    DistributionDrift,
    PerformanceDrift,
    RateDrift,
)
from stream_scorer.evaluation.join import Joined, LabelJoin
from stream_scorer.evaluation.metrics import LiveMetrics, log_loss_one
from stream_scorer.evaluation.settings import EvaluationSettings


def epoch_seconds(value: Any) -> float:
    """Epoch seconds of an RFC 3339 string (as the topics carry) or an aware datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


class Monitor:
    """Everything the evaluator knows about the scores it has seen."""

    def __init__(
        self,
        settings: EvaluationSettings,
        review: float,
        decline: float,
        alerts: AlertManager | None = None,
    ) -> None:
        s = self.settings = settings
        self.review = s.review_threshold if s.review_threshold is not None else review
        self.decline = s.decline_threshold if s.decline_threshold is not None else decline
        self.join = LabelJoin(s.join_max_pending, s.join_max_age_s)
        self.metrics = LiveMetrics(
            s.windows, self.review, self.decline, s.quantiles, s.histogram_bins
        )
        self.alerts = alerts or AlertManager(s.cooldown_s, s.critical_factor)
        self.prediction = self._distribution("score", "prediction", s.prediction_psi_threshold)
        self.data: dict[str, DistributionDrift] = {}
        self._watched: dict[str, bool] = {}
        self.performance = self._performance("log_loss")
        self.challenger_performance: PerformanceDrift | None = None
        self.label_rate = RateDrift(
            "fraud_rate",
            threshold=s.label_rate_z,
            warmup=s.warmup,
            reference_size=s.reference_size,
            window=s.label_window,
            check_every=s.check_every,
            resolve_ratio=s.resolve_ratio,
        )
        self.disagreement = DisagreementDrift(
            bound=s.disagreement_bound,
            window=s.disagreement_window,
            check_every=s.check_every,
            resolve_ratio=s.resolve_ratio,
        )
        self.has_challenger = False
        self.scores = 0
        self.labels = 0
        self.labelled = 0
        self.event_ts = 0.0

    def _distribution(
        self, subject: str, kind: Any, threshold: float | None = None
    ) -> DistributionDrift:
        s = self.settings
        if s.distribution_method == "ks":
            threshold = s.ks_threshold
        return DistributionDrift(
            subject,
            kind=kind,
            method=s.distribution_method,
            threshold=threshold if threshold is not None else s.psi_threshold,
            bins=s.distribution_bins,
            warmup=s.warmup,
            reference_size=s.reference_size,
            window=s.drift_window,
            check_every=s.check_every,
            resolve_ratio=s.resolve_ratio,
            grow_reference=s.grow_reference,
        )

    def _performance(self, subject: str) -> PerformanceDrift:
        s = self.settings
        return PerformanceDrift(
            subject,
            method=s.performance_detector,
            delta=s.adwin_delta,
            ph_threshold=s.page_hinkley_threshold,
            min_increase=s.performance_min_increase,
            min_labels=s.performance_min_labels,
            warmup=s.warmup,
            window=s.label_window,
            check_every=s.check_every,
            resolve_ratio=s.resolve_ratio,
        )

    def _watch(self, name: str) -> bool:
        watched = self._watched.get(name)
        if watched is None:
            wanted = self.settings.data_features
            ignored = any(fnmatchcase(name, pattern) for pattern in self.settings.ignored_features)
            watched = not ignored and (wanted is None or name in wanted or name == "amount")
            self._watched[name] = watched
            if watched:
                self.data[name] = self._distribution(name, "data")
        return watched

    # -- per record -----------------------------------------------------------------------------

    def update_score(self, score: dict[str, Any]) -> None:
        """Fold in one Score record (a dict as read from the scores topic)."""
        ts = epoch_seconds(score["event_time"])
        if ts > self.event_ts:
            self.event_ts = ts
        self.scores += 1
        p = score["score"]
        challenger = score.get("challenger_score")
        self.metrics.update_score(p, challenger)
        self.prediction.update(p)
        if challenger is not None:
            self.has_challenger = True
            self.disagreement.update(p, challenger)
        amount = score.get("amount")
        if amount is not None and self._watch("amount"):
            self.data["amount"].update(amount)
        features = score.get("features")
        if features:
            data, watch = self.data, self._watch
            for name, value in features.items():
                if watch(name):
                    data[name].update(value)
        joined = self.join.update_score(score, ts)
        if joined is not None:
            self._labelled(joined)

    def update_label(self, label: dict[str, Any]) -> None:
        """Fold in one Label record (a dict as read from the labels topic)."""
        self.labels += 1
        joined = self.join.update_label(label, epoch_seconds(label["label_time"]))
        if joined is not None:
            self._labelled(joined)

    def _labelled(self, joined: Joined) -> None:
        self.labelled += 1
        score, y = joined
        p = score["score"]
        challenger = score.get("challenger_score")
        self.metrics.update_label(p, challenger, y)
        self.performance.update(log_loss_one(p, y))
        if challenger is not None:
            if self.challenger_performance is None:
                self.challenger_performance = self._performance("challenger_log_loss")
            self.challenger_performance.update(log_loss_one(challenger, y))
        self.label_rate.update(y)

    # -- per batch ------------------------------------------------------------------------------

    def checks(self) -> list[Check]:
        """The current state of every detector that has a statistic."""
        detectors: list[Any] = [
            self.prediction,
            *self.data.values(),
            self.performance,
            self.label_rate,
        ]
        if self.challenger_performance is not None:
            detectors.append(self.challenger_performance)
        if self.has_challenger:
            detectors.append(self.disagreement)
        out = []
        for d in detectors:
            c = d.check()
            if c is not None:
                out.append(c)
        return out

    def poll(self) -> list[dict[str, Any]]:
        """Expire old join entries; return the alerts whose state changed (DriftAlert dicts)."""
        self.join.expire()
        out = []
        for check in self.checks():
            alert = self.alerts.update(check, self.event_ts)
            if alert is not None:
                out.append(alert)
        return out

    def get(self) -> dict[str, Any]:
        """A snapshot of counts, join state, live metrics, detector states and alert states."""
        return {
            "event_time": rfc3339(self.event_ts) if self.event_ts else None,
            "counts": {"scores": self.scores, "labels": self.labels, "labelled": self.labelled},
            "join": self.join.get(),
            "metrics": self.metrics.get(),
            "detectors": [
                {
                    "key": c.key,
                    "kind": c.kind,
                    "active": c.active,
                    "statistic": c.statistic,
                    "threshold": c.threshold,
                }
                for c in self.checks()
            ],
            "alerts": self.alerts.get(),
        }
