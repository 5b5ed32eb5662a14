"""Live metrics of a scoring model, cumulative and over rolling windows.

Two kinds of input: every score (for the alert and decline rates and the score distribution),
and every *labelled* score (for ROC AUC, average precision, precision and recall at the review
threshold, log loss and the label rate). Cumulative metrics keep fixed-size histograms (ROC AUC
and average precision are then exact up to ties inside a bin of width 1/1000); rolling metrics
keep the window's pairs and are exact, computed when read (:meth:`get`), not per event.

>>> m = RollingBinaryMetrics(window=4, threshold=0.5)
>>> for p, y in [(0.9, True), (0.2, False), (0.6, False), (0.1, False)]:
...     m.update(p, y)
>>> m.get()["roc_auc"], m.get()["precision"]
(1.0, 0.5)
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

EPS = 1e-7
"""Probabilities are clipped to ``[EPS, 1 - EPS]`` in the log loss (at most 16.1 per event)."""
N_BINS = 1000


def log_loss_one(p: float, y: bool) -> float:
    """The log loss of one prediction ``p`` for the outcome ``y`` (natural log, clipped)."""
    p = min(max(p, EPS), 1.0 - EPS)
    return -math.log(p) if y else -math.log(1.0 - p)


def roc_auc_exact(pairs: list[tuple[float, bool]]) -> float | None:
    """ROC AUC of ``(score, label)`` pairs by the rank-sum statistic, ties counted one half."""
    n_pos = sum(1 for _, y in pairs if y)
    n_neg = len(pairs) - n_pos
    if not n_pos or not n_neg:
        return None
    ordered = sorted(pairs, key=_first)
    rank_sum = 0.0
    i, n = 0, len(ordered)
    while i < n:
        j = i
        while j + 1 < n and ordered[j + 1][0] == ordered[i][0]:
            j += 1
        avg_rank = (i + j) / 2.0 + 1.0
        rank_sum += avg_rank * sum(1 for k in range(i, j + 1) if ordered[k][1])
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def average_precision_exact(pairs: list[tuple[float, bool]]) -> float | None:
    """Average precision: the sum over score thresholds of precision times the recall gained."""
    n_pos = sum(1 for _, y in pairs if y)
    if not n_pos:
        return None
    ordered = sorted(pairs, key=_first, reverse=True)
    tp = fp = 0
    ap = 0.0
    i, n = 0, len(ordered)
    while i < n:
        j, gained = i, 0
        while j < n and ordered[j][0] == ordered[i][0]:
            if ordered[j][1]:
                gained += 1
            else:
                fp += 1
            j += 1
        tp += gained
        if gained:
            ap += (gained / n_pos) * (tp / (tp + fp))
        i = j
    return ap


def quantiles_of(values: list[float], qs: list[float]) -> dict[str, float]:
    """Quantiles by linear interpolation between order statistics (numpy's default)."""
    if not values:
        return {}
    s = sorted(values)
    out = {}
    for q in qs:
        pos = q * (len(s) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(s) - 1)
        out[f"p{q * 100:g}"] = s[lo] + (s[hi] - s[lo]) * (pos - lo)
    return out


def _first(pair: tuple[float, bool]) -> float:
    return pair[0]


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


class BinaryMetrics:
    """Cumulative metrics of labelled scores, in constant memory (two 1000-bin histograms)."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.pos = [0] * N_BINS
        self.neg = [0] * N_BINS
        self.n = 0
        self.n_pos = 0
        self.tp = 0
        self.fp = 0
        self.loss = 0.0

    def update(self, p: float, y: bool) -> None:
        b = min(int(p * N_BINS), N_BINS - 1)
        self.n += 1
        if y:
            self.pos[b] += 1
            self.n_pos += 1
            if p >= self.threshold:
                self.tp += 1
        else:
            self.neg[b] += 1
            if p >= self.threshold:
                self.fp += 1
        self.loss += log_loss_one(p, y)

    def roc_auc(self) -> float | None:
        n_neg = self.n - self.n_pos
        if not self.n_pos or not n_neg:
            return None
        below = 0
        wins = 0.0
        for b in range(N_BINS):
            wins += self.pos[b] * (below + 0.5 * self.neg[b])
            below += self.neg[b]
        return wins / (self.n_pos * n_neg)

    def average_precision(self) -> float | None:
        if not self.n_pos:
            return None
        tp = fp = 0
        ap = 0.0
        for b in range(N_BINS - 1, -1, -1):
            gained = self.pos[b]
            tp += gained
            fp += self.neg[b]
            if gained:
                ap += (gained / self.n_pos) * (tp / (tp + fp))
        return ap

    def get(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "roc_auc": self.roc_auc(),
            "average_precision": self.average_precision(),
            "precision": _ratio(self.tp, self.tp + self.fp),
            "recall": _ratio(self.tp, self.n_pos),
            "log_loss": _ratio(self.loss, self.n),
            "label_rate": _ratio(self.n_pos, self.n),
        }


class RollingBinaryMetrics:
    """The same metrics over the last ``window`` labelled scores, exact.

    Counts and the log-loss sum are kept up to date per event; ROC AUC and average precision
    sort the window when read.
    """

    def __init__(self, window: int, threshold: float = 0.5) -> None:
        self.window = window
        self.threshold = threshold
        self.pairs: deque[tuple[float, bool]] = deque()
        self.n_pos = 0
        self.tp = 0
        self.fp = 0
        self.loss = 0.0

    def _add(self, p: float, y: bool, sign: int) -> None:
        alerted = p >= self.threshold
        if y:
            self.n_pos += sign
            if alerted:
                self.tp += sign
        elif alerted:
            self.fp += sign
        self.loss += sign * log_loss_one(p, y)

    def update(self, p: float, y: bool) -> None:
        self.pairs.append((p, y))
        self._add(p, y, 1)
        if len(self.pairs) > self.window:
            old_p, old_y = self.pairs.popleft()
            self._add(old_p, old_y, -1)

    def get(self) -> dict[str, Any]:
        pairs = list(self.pairs)
        n = len(pairs)
        return {
            "n": n,
            "roc_auc": roc_auc_exact(pairs),
            "average_precision": average_precision_exact(pairs),
            "precision": _ratio(self.tp, self.tp + self.fp),
            "recall": _ratio(self.tp, self.n_pos),
            "log_loss": _ratio(max(self.loss, 0.0), n),
            "label_rate": _ratio(self.n_pos, n),
        }


class ScoreStats:
    """Alert and decline rates and the score distribution, cumulative and over a window."""

    def __init__(
        self,
        review: float,
        decline: float,
        window: int = 10_000,
        quantiles: list[float] | None = None,
        bins: int = 10,
    ) -> None:
        self.review = review
        self.decline = decline
        self.window = window
        self.quantiles = quantiles or [0.5, 0.9, 0.99]
        self.bins = bins
        self.histogram = [0] * bins
        self.n = 0
        self.alerts = 0
        self.declines = 0
        self.recent: deque[float] = deque(maxlen=window)

    def update(self, p: float) -> None:
        self.n += 1
        self.histogram[min(int(p * self.bins), self.bins - 1)] += 1
        if p >= self.review:
            self.alerts += 1
            if p >= self.decline:
                self.declines += 1
        self.recent.append(p)

    def get(self) -> dict[str, Any]:
        recent = list(self.recent)
        n_recent = len(recent)
        return {
            "n": self.n,
            "alert_rate": _ratio(self.alerts, self.n),
            "decline_rate": _ratio(self.declines, self.n),
            "window": {
                "n": n_recent,
                "alert_rate": _ratio(sum(1 for p in recent if p >= self.review), n_recent),
                "decline_rate": _ratio(sum(1 for p in recent if p >= self.decline), n_recent),
                "quantiles": quantiles_of(recent, self.quantiles),
            },
            "histogram": {
                "edges": [i / self.bins for i in range(self.bins + 1)],
                "counts": list(self.histogram),
            },
        }


class ModelMetrics:
    """Every live metric of one model (champion or challenger)."""

    def __init__(
        self,
        windows: list[int],
        review: float,
        decline: float,
        quantiles: list[float] | None = None,
        bins: int = 10,
    ) -> None:
        self.cumulative = BinaryMetrics(review)
        self.rolling = {w: RollingBinaryMetrics(w, review) for w in windows}
        self.scores = ScoreStats(review, decline, max(windows), quantiles, bins)

    def update_score(self, p: float) -> None:
        """Fold in a score, labelled or not (rates and distribution)."""
        self.scores.update(p)

    def update_label(self, p: float, y: bool) -> None:
        """Fold in a labelled score (ranking, calibration and threshold metrics)."""
        self.cumulative.update(p, y)
        for m in self.rolling.values():
            m.update(p, y)

    def get(self) -> dict[str, Any]:
        return {
            "labelled": {
                "cumulative": self.cumulative.get(),
                **{f"last_{w}": m.get() for w, m in self.rolling.items()},
            },
            "scores": self.scores.get(),
        }


class LiveMetrics:
    """Metrics of the champion and, when scores carry one, of the challenger.

    >>> lm = LiveMetrics([100], review=0.5, decline=0.8)
    >>> lm.update_score(0.9, None); lm.update_label(0.9, None, True)
    >>> lm.get()["champion"]["labelled"]["cumulative"]["recall"]
    1.0
    """

    def __init__(
        self,
        windows: list[int],
        review: float,
        decline: float,
        quantiles: list[float] | None = None,
        bins: int = 10,
    ) -> None:
        self._args = (windows, review, decline, quantiles, bins)
        self.champion = ModelMetrics(*self._args)
        self.challenger: ModelMetrics | None = None

    def _challenger(self) -> ModelMetrics:
        if self.challenger is None:
            self.challenger = ModelMetrics(*self._args)
        return self.challenger

    def update_score(self, p: float, challenger: float | None) -> None:
        self.champion.update_score(p)
        if challenger is not None:
            self._challenger().update_score(challenger)

    def update_label(self, p: float, challenger: float | None, y: bool) -> None:
        self.champion.update_label(p, y)
        if challenger is not None:
            self._challenger().update_label(challenger, y)

    def get(self) -> dict[str, Any]:
        return {
            "champion": self.champion.get(),
            "challenger": self.challenger.get() if self.challenger is not None else None,
        }
