"""Streaming drift detectors: performance, prediction, data, label rate and disagreement.

Every detector follows the same shape: :meth:`update` folds in one value, :meth:`get` returns
its statistic (``None`` while it is still building its reference), and :meth:`check` returns a
:class:`Check` saying whether the drift condition holds now. A condition switches on when the
statistic crosses ``threshold`` and off only when it falls below ``threshold * resolve_ratio``
(hysteresis), so a statistic that wanders around its threshold does not flap.

- :class:`DistributionDrift`: a stream of numbers (scores, a feature, the amount) against a
  reference window, by the population stability index (PSI) or the Kolmogorov-Smirnov distance
  over quantile bins of the reference. Used for prediction drift and data drift.
- :class:`PerformanceDrift`: River's ADWIN (or Page-Hinkley) on the per-event log loss, alerting
  when the loss settles at a level clearly above its reference (concept drift, a new fraud
  pattern the model has not learned).
- :class:`RateDrift`: the fraud rate of the labels against a reference, by a two-proportion z.
- :class:`DisagreementDrift`: the mean |champion - challenger| over a window against a bound.

>>> import random
>>> rng = random.Random(0)
>>> d = DistributionDrift("amount", reference_size=2000, window=1000, check_every=100, warmup=0)
>>> for _ in range(3000):
...     d.update(rng.gauss(0, 1))
>>> d.check().active
False
>>> for _ in range(1000):
...     d.update(rng.gauss(1, 1))
>>> d.check().active
True
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from river import drift as river_drift

Kind = Literal["performance", "prediction", "data", "label_rate", "disagreement"]
_PSI_EPS = 1e-4


@dataclass(frozen=True, slots=True)
class Check:
    """The state of one detector's condition, as the alert manager needs it."""

    kind: Kind
    detector: str
    subject: str
    active: bool
    statistic: float
    threshold: float
    window: str
    reference: str
    message: str = ""

    @property
    def key(self) -> str:
        """The alert key, ``detector:subject``."""
        return f"{self.detector}:{self.subject}"


def psi(expected: list[float], actual: list[float], eps: float = _PSI_EPS) -> float:
    """Population stability index of two distributions over the same bins (proportions).

    >>> round(psi([0.5, 0.5], [0.5, 0.5]), 6), round(psi([0.5, 0.5], [0.9, 0.1]), 3)
    (0.0, 0.879)
    """
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e = max(e, eps)
        a = max(a, eps)
        total += (a - e) * math.log(a / e)
    return total


def ks_binned(expected: list[float], actual: list[float]) -> float:
    """Largest gap between the two cumulative distributions at the bin edges."""
    ce = ca = gap = 0.0
    for e, a in zip(expected, actual, strict=True):
        ce += e
        ca += a
        gap = max(gap, abs(ce - ca))
    return gap


class DistributionDrift:
    """One numeric stream against a reference window, by PSI or binned KS.

    The first ``warmup`` values are skipped, the next ``reference_size`` form the reference;
    its quantiles give the bins (equal mass in the reference, repeated values collapse into one
    bin). From then on the last ``window`` values are counted per bin, in O(log bins) per value,
    and the statistic is recomputed every ``check_every`` values once the window is full.

    With ``grow_reference``, a value that leaves the window joins the reference counts (the bins
    stay those of the first reference) unless the condition is on: the reference becomes the
    long-run distribution, so cycles longer than the first reference (day and night) stop
    looking like drift, while a drift that fires is kept out of it.
    """

    def __init__(
        self,
        subject: str,
        kind: Kind = "data",
        method: Literal["psi", "ks"] = "psi",
        threshold: float | None = None,
        bins: int = 10,
        warmup: int = 0,
        reference_size: int = 20_000,
        window: int = 5_000,
        check_every: int = 250,
        resolve_ratio: float = 0.5,
        grow_reference: bool = False,
    ) -> None:
        self.subject = subject
        self.kind = kind
        self.grow_reference = grow_reference
        self.method = method
        self.threshold = threshold if threshold is not None else (0.2 if method == "psi" else 0.1)
        self.bins = bins
        self.warmup = warmup
        self.reference_size = reference_size
        self.window = window
        self.check_every = check_every
        self.resolve_ratio = resolve_ratio
        self.n = 0
        self.reference: list[float] = []
        self.edges: list[float] | None = None
        self.expected: list[float] = []
        self.ref_counts: list[int] = []
        self.counts: list[int] = []
        self.recent: deque[int] = deque()
        self.since_check = check_every - 1  # check as soon as the window is full
        self.psi: float | None = None
        self.ks: float | None = None
        self.active = False

    @property
    def detector(self) -> str:
        return self.method

    def _freeze_reference(self) -> None:
        ref = sorted(self.reference)
        m = len(ref)
        # Quantile cuts (repeated values collapse), plus an empty bin on each side for values
        # outside the reference's range: a value never seen before counts fully in the PSI.
        cuts = {ref[min(int(m * i / self.bins), m - 1)] for i in range(1, self.bins)}
        cuts.add(ref[0])
        cuts.add(math.nextafter(ref[-1], math.inf))
        self.edges = sorted(cuts)
        counts = [0] * (len(self.edges) + 1)
        for v in ref:
            counts[bisect.bisect_right(self.edges, v)] += 1
        self.expected = [c / m for c in counts]
        self.ref_counts = counts
        self.counts = [0] * len(counts)
        self.reference = []

    def update(self, x: float) -> None:
        """Fold in one value."""
        self.n += 1
        edges = self.edges
        if edges is None:
            if self.n > self.warmup:
                self.reference.append(x)
                if len(self.reference) >= self.reference_size:
                    self._freeze_reference()
            return
        b = bisect.bisect_right(edges, x)
        self.counts[b] += 1
        recent = self.recent
        recent.append(b)
        if len(recent) > self.window:
            old = recent.popleft()
            self.counts[old] -= 1
            if self.grow_reference and not self.active:
                self.ref_counts[old] += 1
        if len(recent) == self.window:
            self.since_check += 1
            if self.since_check >= self.check_every:
                self.since_check = 0
                self._evaluate()

    def _evaluate(self) -> None:
        n = len(self.recent)
        actual = [c / n for c in self.counts]
        if self.grow_reference:
            total = sum(self.ref_counts)
            self.expected = [c / total for c in self.ref_counts]
        self.psi = psi(self.expected, actual)
        self.ks = ks_binned(self.expected, actual)
        stat = self.psi if self.method == "psi" else self.ks
        if self.active:
            self.active = stat >= self.threshold * self.resolve_ratio
        else:
            self.active = stat > self.threshold

    def get(self) -> float | None:
        """The statistic of the last check (PSI or KS), ``None`` before the first."""
        return self.psi if self.method == "psi" else self.ks

    def check(self) -> Check | None:
        stat = self.get()
        if stat is None:
            return None
        name = "PSI" if self.method == "psi" else "KS"
        verb = "shifted" if self.active else "is back in line"
        return Check(
            kind=self.kind,
            detector=self.method,
            subject=self.subject,
            active=self.active,
            statistic=stat,
            threshold=self.threshold,
            window=f"last {self.window} scores",
            reference=f"{self.reference_size} scores after the first {self.warmup}",
            message=(
                f"{self.subject} distribution {verb} ({name} {stat:.3f}, bound {self.threshold:g})"
            ),
        )


class PerformanceDrift:
    """Concept drift: the model's log loss rises and stays up.

    A change detector runs on the per-event loss: River's ``ADWIN`` (default), or
    ``PageHinkley`` watching for increases. The *level* is the mean loss since the last detected
    change: ADWIN's own window (it restarts at each change), or for Page-Hinkley the rolling mean
    of the last ``window`` losses. Once ``min_labels`` losses have been seen since the last change,
    their mean becomes the *reference* (the new normal, be it lower or higher).

    The condition switches on when, after a detected change, the level over at least
    ``window // 2`` losses exceeds ``reference * (1 + min_increase)``: the change detector says
    *something changed*, the bound says *for the worse, by enough to matter*. It clears when the
    rolling mean of the last ``window`` losses falls under ``reference * (1 + min_increase *
    resolve_ratio)``. The per-event log loss is heavy-tailed (a missed fraud costs ~4, a genuine
    ~0.02), hence the large windows: their means are what the bound is compared with. The first
    ``warmup`` losses are ignored: a model that has just started learning is not a reference.
    """

    def __init__(
        self,
        subject: str = "log_loss",
        method: Literal["adwin", "page_hinkley"] = "adwin",
        delta: float = 1e-5,
        ph_threshold: float = 50.0,
        min_increase: float = 0.25,
        min_labels: int = 5_000,
        window: int = 5_000,
        check_every: int = 250,
        resolve_ratio: float = 0.5,
        warmup: int = 0,
    ) -> None:
        self.subject = subject
        self.method = method
        self.warmup = warmup
        self.min_increase = min_increase
        self.min_labels = min_labels
        self.window = window
        self.min_width = max(window // 2, 1)
        self.check_every = check_every
        self.resolve_ratio = resolve_ratio
        self.change: river_drift.ADWIN | river_drift.PageHinkley = (
            river_drift.ADWIN(delta=delta)
            if method == "adwin"
            else river_drift.PageHinkley(
                min_instances=self.min_width, delta=0.005, threshold=ph_threshold, mode="up"
            )
        )
        self.n = 0
        self.reference: float | None = None
        self.level: float | None = None
        self.recent: deque[float] = deque()
        self.recent_sum = 0.0
        self.since_check = 0
        self.since_change = 0
        self.changed = False
        self.active = False
        self.detections = 0

    @property
    def detector(self) -> str:
        return self.method

    @property
    def threshold(self) -> float:
        return (self.reference or 0.0) * (1.0 + self.min_increase)

    def update(self, loss: float) -> None:
        """Fold in the log loss of one labelled score (ignored during the warm-up)."""
        self.n += 1
        if self.n <= self.warmup:
            return
        recent = self.recent
        recent.append(loss)
        self.recent_sum += loss
        if len(recent) > self.window:
            self.recent_sum -= recent.popleft()
        change = self.change
        change.update(loss)  # type: ignore[no-untyped-call]
        self.since_change += 1
        if change.drift_detected:
            self.detections += 1
            self.since_change = 0
            self.changed = self.reference is not None
        self.since_check += 1
        if self.since_check >= self.check_every:
            self.since_check = 0
            self._evaluate()

    def rolling(self) -> float:
        """Mean loss of the last ``window`` labelled scores."""
        return max(self.recent_sum, 0.0) / len(self.recent) if self.recent else 0.0

    def _evaluate(self) -> None:
        change = self.change
        if isinstance(change, river_drift.ADWIN):
            width, level = change.width, change.estimation
        else:
            width, level = self.since_change, self.rolling()
        self.level = level
        if self.reference is None:
            if self.n - self.warmup >= self.min_labels:
                self.reference = level
            return
        if self.active:
            if self.rolling() < self.reference * (1.0 + self.min_increase * self.resolve_ratio):
                self.active = False
                self.changed = False
        elif self.changed and width >= self.min_width and level > self.threshold:
            self.active = True
        elif width >= self.min_labels:
            self.reference = level
            self.changed = False

    def get(self) -> float | None:
        """The loss level since the last change, ``None`` before the reference is set."""
        return self.level if self.reference is not None else None

    def check(self) -> Check | None:
        """While firing, the level since the change against the bound it crossed; otherwise the
        rolling mean that decides the clearing (so a resolved alert shows a statistic under its
        threshold)."""
        if self.reference is None or self.level is None:
            return None
        if self.active:
            statistic = self.level
            window = "since the last change" if self.method == "adwin" else f"last {self.window} labels"
            message = f"{self.subject} rose above its bound ({statistic:.4f} vs {self.threshold:.4f})"
        else:
            statistic = self.rolling()
            window = f"last {self.window} labels"
            clear = self.reference * (1.0 + self.min_increase * self.resolve_ratio)
            message = (
                f"{self.subject} is within its bound (mean of the {window} {statistic:.4f}, "
                f"clears under {clear:.4f}, fires over {self.threshold:.4f})"
            )
        return Check(
            kind="performance",
            detector=self.method,
            subject=self.subject,
            active=self.active,
            statistic=statistic,
            threshold=self.threshold,
            window=window,
            reference=f"mean log loss {self.reference:.4f} over at least {self.min_labels} labels",
            message=message,
        )


class RateDrift:
    """The fraud rate of the labels in a window against a reference, by a two-proportion z."""

    def __init__(
        self,
        subject: str = "fraud_rate",
        threshold: float = 6.0,
        warmup: int = 0,
        reference_size: int = 20_000,
        window: int = 5_000,
        check_every: int = 250,
        resolve_ratio: float = 0.5,
    ) -> None:
        self.subject = subject
        self.threshold = threshold
        self.warmup = warmup
        self.reference_size = reference_size
        self.window = window
        self.check_every = check_every
        self.resolve_ratio = resolve_ratio
        self.n = 0
        self.ref_n = 0
        self.ref_pos = 0
        self.recent: deque[bool] = deque()
        self.recent_pos = 0
        self.since_check = check_every - 1
        self.z: float | None = None
        self.active = False

    def update(self, y: bool) -> None:
        """Fold in one label."""
        self.n += 1
        if self.n <= self.warmup:
            return
        if self.ref_n < self.reference_size:
            self.ref_n += 1
            self.ref_pos += y
            return
        self.recent.append(y)
        self.recent_pos += y
        if len(self.recent) > self.window:
            self.recent_pos -= self.recent.popleft()
        if len(self.recent) == self.window:
            self.since_check += 1
            if self.since_check >= self.check_every:
                self.since_check = 0
                self._evaluate()

    def _evaluate(self) -> None:
        n_w = len(self.recent)
        p_r = self.ref_pos / self.ref_n
        p_w = self.recent_pos / n_w
        # Floor the reference rate at half a positive so that a reference with no fraud still works.
        p0 = max(p_r, 0.5 / self.ref_n)
        se = math.sqrt(p0 * (1.0 - p0) * (1.0 / n_w + 1.0 / self.ref_n))
        self.z = (p_w - p_r) / se
        stat = abs(self.z)
        self.active = (
            stat >= self.threshold * self.resolve_ratio if self.active else stat > self.threshold
        )

    def get(self) -> float | None:
        return self.z

    def check(self) -> Check | None:
        if self.z is None:
            return None
        p_r = self.ref_pos / self.ref_n
        p_w = self.recent_pos / max(len(self.recent), 1)
        return Check(
            kind="label_rate",
            detector="binomial_z",
            subject=self.subject,
            active=self.active,
            statistic=abs(self.z),
            threshold=self.threshold,
            window=f"last {self.window} labels",
            reference=f"{self.reference_size} labels after {self.warmup} (rate {p_r:.4f})",
            message=f"fraud rate {p_w:.4f} vs reference {p_r:.4f} (|z| {abs(self.z):.1f})",
        )


class DisagreementDrift:
    """Champion and challenger part ways: their mean absolute difference over a window."""

    def __init__(
        self,
        subject: str = "champion_vs_challenger",
        bound: float = 0.1,
        window: int = 2_000,
        check_every: int = 250,
        resolve_ratio: float = 0.5,
    ) -> None:
        self.subject = subject
        self.bound = bound
        self.window = window
        self.check_every = check_every
        self.resolve_ratio = resolve_ratio
        self.recent: deque[float] = deque()
        self.total = 0.0
        self.since_check = check_every - 1
        self.mean: float | None = None
        self.active = False

    def update(self, champion: float, challenger: float) -> None:
        """Fold in the two scores of one transaction."""
        d = abs(champion - challenger)
        self.recent.append(d)
        self.total += d
        if len(self.recent) > self.window:
            self.total -= self.recent.popleft()
        if len(self.recent) >= self.window:
            self.since_check += 1
            if self.since_check >= self.check_every:
                self.since_check = 0
                self.mean = max(self.total, 0.0) / len(self.recent)
                if self.active:
                    self.active = self.mean >= self.bound * self.resolve_ratio
                else:
                    self.active = self.mean > self.bound

    def get(self) -> float | None:
        return self.mean

    def check(self) -> Check | None:
        if self.mean is None:
            return None
        return Check(
            kind="disagreement",
            detector="mean_abs_diff",
            subject=self.subject,
            active=self.active,
            statistic=self.mean,
            threshold=self.bound,
            window=f"last {self.window} scores",
            reference="bound on mean |champion - challenger|",
            message=f"champion and challenger differ by {self.mean:.3f} (bound {self.bound:g})",
        )
