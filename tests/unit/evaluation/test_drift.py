"""Each detector fires on an injected drift, within a bounded delay, and stays quiet without one."""

from __future__ import annotations

import random

import pytest

from stream_scorer.evaluation.drift import (
    DisagreementDrift,
    DistributionDrift,
    PerformanceDrift,
    RateDrift,
    ks_binned,
    psi,
)
from stream_scorer.evaluation.metrics import log_loss_one


def _first_active(detector, values, start=0):
    """Index (within ``values``) of the first update after which the detector is active."""
    for i, v in enumerate(values):
        detector.update(*v) if isinstance(v, tuple) else detector.update(v)
        if detector.active:
            return i
    return None


def test_psi_and_ks_reference_values():
    assert psi([0.25] * 4, [0.25] * 4) == 0.0
    # (0.4-0.25)ln(0.4/0.25) + (0.1-0.25)ln(0.1/0.25), twice
    assert psi([0.25] * 4, [0.4, 0.1, 0.4, 0.1]) == pytest.approx(
        2 * (0.15 * 0.4700036 + 0.15 * 0.9162907), rel=1e-6
    )
    assert ks_binned([0.5, 0.5, 0.0], [0.1, 0.4, 0.5]) == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["psi", "ks"])
def test_distribution_drift_fires_on_a_shift_and_resolves_when_it_ends(method):
    rng = random.Random(1)
    d = DistributionDrift(
        "amount", method=method, warmup=500, reference_size=5000, window=2000, check_every=100
    )
    stationary = [rng.lognormvariate(3.3, 0.8) for _ in range(30_000)]
    assert _first_active(d, stationary) is None, "quiet on 30k stationary values"
    shifted = [rng.lognormvariate(3.3, 0.8) * 2.0 for _ in range(5000)]
    delay = _first_active(d, shifted)
    assert delay is not None and delay < 2000, delay
    back = [rng.lognormvariate(3.3, 0.8) for _ in range(5000)]
    cleared = None
    for i, v in enumerate(back):
        d.update(v)
        if not d.active:
            cleared = i
            break
    assert cleared is not None and cleared < 2500
    c = d.check()
    assert c.kind == "data" and c.detector == method and c.subject == "amount"


def test_distribution_drift_handles_discrete_values_and_new_ones():
    rng = random.Random(2)
    d = DistributionDrift("flag", reference_size=2000, window=1000, check_every=50, warmup=0)
    assert _first_active(d, [float(rng.random() < 0.3) for _ in range(10_000)]) is None
    assert _first_active(d, [2.0 if rng.random() < 0.2 else 0.0 for _ in range(2000)]) is not None


def test_hysteresis_keeps_a_wandering_statistic_from_flapping():
    d = DistributionDrift(
        "x", reference_size=100, window=100, check_every=10, threshold=0.2, resolve_ratio=0.5
    )
    d.psi = 0.0
    d.active = True
    d.expected = [0.5, 0.5]
    d.counts = [60, 40]
    d.recent.extend([0] * 60 + [1] * 40)
    d._evaluate()  # PSI ~0.04 < 0.1: clears
    assert not d.active
    d.counts = [75, 25]
    d._evaluate()  # PSI ~0.27 > 0.2: fires
    assert d.active
    d.counts = [68, 32]
    d._evaluate()  # PSI ~0.13, between 0.1 and 0.2: stays on
    assert d.active


def _losses(rng, n, fraud_rate=0.015, unlearned=0.0):
    out = []
    for _ in range(n):
        if rng.random() < fraud_rate:
            out.append(log_loss_one(rng.betavariate(4, 2), True))
        elif rng.random() < unlearned:
            out.append(log_loss_one(rng.betavariate(1, 60), True))
        else:
            out.append(log_loss_one(rng.betavariate(1, 60), False))
    return out


@pytest.mark.parametrize("unlearned", [0.02, 0.01])
@pytest.mark.parametrize("method", ["adwin", "page_hinkley"])
def test_performance_drift_fires_on_unlearned_fraud_and_resolves(method, unlearned):
    rng = random.Random(3)
    d = PerformanceDrift(method=method, min_labels=5000, window=5000, check_every=100)
    assert _first_active(d, _losses(rng, 60_000)) is None, "quiet on 60k stationary losses"
    delay = _first_active(d, _losses(rng, 10_000, unlearned=unlearned))
    assert delay is not None and delay < 4000, delay
    firing = d.check()
    assert firing.active and firing.statistic > firing.threshold
    cleared = None
    for v in _losses(rng, 15_000):
        d.update(v)
        if cleared is None and not d.active:
            cleared = d.check()  # what the resolved alert reports, taken as it clears
    assert not d.active and cleared is not None, "cleared once the loss is back to its reference"
    assert cleared.kind == "performance"
    # The resolved alert agrees with itself: its statistic is under its threshold.
    assert cleared.statistic < cleared.threshold, cleared.message


def test_performance_reference_follows_a_model_that_improves():
    rng = random.Random(4)
    d = PerformanceDrift(min_labels=2000, window=2000, check_every=100)
    # A model that starts poor (loss of an uninformative 0.1) then learns.
    for _ in range(3000):
        d.update(log_loss_one(0.1, rng.random() < 0.015))
    first = d.reference
    assert _first_active(d, _losses(rng, 20_000)) is None
    assert d.reference < first / 2


def test_rate_drift_fires_on_a_fraud_rate_jump():
    rng = random.Random(5)
    d = RateDrift(threshold=6.0, reference_size=20_000, window=5000, check_every=100)
    assert _first_active(d, [rng.random() < 0.015 for _ in range(80_000)]) is None
    delay = _first_active(d, [rng.random() < 0.035 for _ in range(10_000)])
    assert delay is not None and delay < 4000, delay
    assert d.check().kind == "label_rate"


def test_disagreement_fires_when_the_challenger_parts_ways():
    rng = random.Random(6)
    d = DisagreementDrift(bound=0.1, window=2000, check_every=100)
    pairs = []
    for _ in range(50_000):
        p = rng.betavariate(1, 30)
        pairs.append((p, min(max(p + rng.gauss(0, 0.03), 0.0), 1.0)))
    assert _first_active(d, pairs) is None
    drifted = [(p, min(c + 0.3, 1.0)) for p, c in pairs[:5000]]
    delay = _first_active(d, drifted)
    assert delay is not None and delay < 1500
    assert d.check().kind == "disagreement"


def test_a_growing_reference_follows_a_slow_evolution_but_not_a_drift_that_fires():
    rng = random.Random(7)
    kw = {"reference_size": 5_000, "window": 2_000, "check_every": 100, "threshold": 0.3}
    fixed = DistributionDrift("x", **kw)
    grows = DistributionDrift("x", grow_reference=True, **kw)
    fired = {"fixed": False, "grows": False}
    for i in range(100_000):
        v = rng.gauss(0.6 * min(i / 60_000, 1.0), 1.0)  # the mean creeps up by 0.6 sd
        fixed.update(v)
        grows.update(v)
        fired["fixed"] |= fixed.active
        fired["grows"] |= grows.active
    assert fired == {"fixed": True, "grows": False}
    delay = _first_active(grows, [rng.gauss(3.0, 1.0) for _ in range(3_000)])
    assert delay is not None and delay < 1_500
    for _ in range(20_000):
        grows.update(rng.gauss(3.0, 1.0))
    assert grows.active, "a drift that fires stays out of the reference"
