"""Live metrics against brute-force references written out here (no sklearn)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_scorer.evaluation.metrics import (
    EPS,
    N_BINS,
    BinaryMetrics,
    LiveMetrics,
    RollingBinaryMetrics,
    ScoreStats,
    average_precision_exact,
    roc_auc_exact,
)

# -- brute-force references -----------------------------------------------------------------------


def auc_pairs(pairs):
    """Every (positive, negative) pair: 1 if the positive scores higher, 1/2 on a tie."""
    pos = [p for p, y in pairs if y]
    neg = [p for p, y in pairs if not y]
    if not pos or not neg:
        return None
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def ap_per_positive(pairs):
    """Mean, over positives, of the precision among everything scored at least as high."""
    pos = [p for p, y in pairs if y]
    if not pos:
        return None
    total = 0.0
    for s in pos:
        above = [y for p, y in pairs if p >= s]
        total += sum(above) / len(above)
    return total / len(pos)


def log_loss_ref(pairs):
    out = 0.0
    for p, y in pairs:
        p = min(max(p, EPS), 1 - EPS)
        out += -math.log(p if y else 1 - p)
    return out / len(pairs)


def pr_ref(pairs, t):
    tp = sum(1 for p, y in pairs if y and p >= t)
    fp = sum(1 for p, y in pairs if not y and p >= t)
    npos = sum(1 for _, y in pairs if y)
    return (tp / (tp + fp) if tp + fp else None), (tp / npos if npos else None)


pairs_strategy = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0]) | st.floats(0, 1), st.booleans()
    ),
    min_size=1,
    max_size=60,
)

# -- exact metrics --------------------------------------------------------------------------------


@given(pairs_strategy)
@settings(max_examples=200, deadline=None)
def test_exact_auc_and_ap_match_brute_force(pairs):
    a, b = roc_auc_exact(pairs), auc_pairs(pairs)
    assert (a is None and b is None) or a == pytest.approx(b, abs=1e-12)
    a, b = average_precision_exact(pairs), ap_per_positive(pairs)
    assert (a is None and b is None) or a == pytest.approx(b, abs=1e-12)


@given(pairs_strategy, st.integers(1, 30))
@settings(max_examples=200, deadline=None)
def test_rolling_metrics_equal_brute_force_on_the_last_window(pairs, window):
    m = RollingBinaryMetrics(window, threshold=0.5)
    for p, y in pairs:
        m.update(p, y)
    last = pairs[-window:]
    got = m.get()
    assert got["n"] == len(last)
    assert got["roc_auc"] == (None if auc_pairs(last) is None else pytest.approx(auc_pairs(last)))
    assert got["average_precision"] == (
        None if ap_per_positive(last) is None else pytest.approx(ap_per_positive(last))
    )
    assert got["log_loss"] == pytest.approx(log_loss_ref(last), rel=1e-9, abs=1e-9)
    precision, recall = pr_ref(last, 0.5)
    assert got["precision"] == (None if precision is None else pytest.approx(precision))
    assert got["recall"] == (None if recall is None else pytest.approx(recall))
    assert got["label_rate"] == pytest.approx(sum(y for _, y in last) / len(last))


# -- cumulative (binned) metrics ------------------------------------------------------------------


def test_cumulative_metrics_are_exact_when_scores_sit_inside_distinct_bins():
    rng = random.Random(3)
    pairs = []
    for _ in range(3000):
        y = rng.random() < 0.1
        k = rng.randrange(N_BINS)
        pairs.append(((k + 0.5) / N_BINS, y))
    m = BinaryMetrics(threshold=0.5)
    for p, y in pairs:
        m.update(p, y)
    got = m.get()
    assert got["roc_auc"] == pytest.approx(roc_auc_exact(pairs), abs=1e-12)
    assert got["average_precision"] == pytest.approx(average_precision_exact(pairs), abs=1e-12)
    precision, recall = pr_ref(pairs, 0.5)
    assert got["precision"] == pytest.approx(precision) and got["recall"] == pytest.approx(recall)
    assert got["log_loss"] == pytest.approx(log_loss_ref(pairs))
    assert got["n"] == 3000


def test_cumulative_metrics_are_close_on_continuous_scores():
    rng = random.Random(4)
    pairs = [
        (rng.betavariate(4, 2), True) if rng.random() < 0.05 else (rng.betavariate(1, 8), False)
        for _ in range(5000)
    ]
    m = BinaryMetrics()
    for p, y in pairs:
        m.update(p, y)
    assert m.roc_auc() == pytest.approx(roc_auc_exact(pairs), abs=2e-3)
    assert m.average_precision() == pytest.approx(average_precision_exact(pairs), abs=5e-3)


def test_empty_and_one_class_metrics_are_none():
    m = BinaryMetrics()
    assert m.get()["roc_auc"] is None and m.get()["log_loss"] is None
    m.update(0.2, False)
    assert (
        m.get()["roc_auc"] is None
        and m.get()["average_precision"] is None
        and m.get()["recall"] is None
    )
    assert RollingBinaryMetrics(5).get()["n"] == 0


# -- rates and distribution -----------------------------------------------------------------------


def test_score_stats_rates_quantiles_and_histogram():
    rng = random.Random(5)
    scores = [rng.random() ** 3 for _ in range(2500)]
    s = ScoreStats(review=0.5, decline=0.8, window=1000, quantiles=[0.5, 0.9, 0.99], bins=10)
    for p in scores:
        s.update(p)
    got = s.get()
    assert got["alert_rate"] == pytest.approx(sum(p >= 0.5 for p in scores) / 2500)
    assert got["decline_rate"] == pytest.approx(sum(p >= 0.8 for p in scores) / 2500)
    last = scores[-1000:]
    assert got["window"]["alert_rate"] == pytest.approx(sum(p >= 0.5 for p in last) / 1000)
    for q in (0.5, 0.9, 0.99):
        assert got["window"]["quantiles"][f"p{q * 100:g}"] == pytest.approx(
            float(np.quantile(last, q))
        )
    assert got["histogram"]["counts"] == np.histogram(scores, bins=10, range=(0, 1))[0].tolist()


def test_live_metrics_follow_champion_and_challenger():
    lm = LiveMetrics([10, 100], review=0.5, decline=0.8)
    lm.update_score(0.1, None)
    assert lm.get()["challenger"] is None
    for p, c, y in [(0.9, 0.2, True), (0.1, 0.7, False), (0.6, 0.4, True)]:
        lm.update_score(p, c)
        lm.update_label(p, c, y)
    got = lm.get()
    assert got["champion"]["labelled"]["last_10"]["roc_auc"] == 1.0
    assert got["challenger"]["labelled"]["cumulative"]["roc_auc"] == 0.0
    assert got["champion"]["scores"]["n"] == 4 and got["challenger"]["scores"]["n"] == 3
