"""Streaming quantile bins: edges near the true quantiles, stable between refreshes, durable."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import pytest

from stream_scorer.features import FeatureEngine
from stream_scorer.features.bins import QuantileBins
from stream_scorer.features.settings import FeatureSettings
from tests.unit.features.strategies import T0

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995)


def g(v: float) -> float:
    return math.copysign(math.log1p(abs(v)), v)


def feed(b: QuantileBins, values: list[float]) -> None:
    for v in values:
        b.update(v)


@pytest.mark.parametrize(
    "draw",
    [
        lambda r: r.uniform(0.0, 1_000.0),
        lambda r: r.expovariate(1 / 80.0),  # amounts: a long right tail
        lambda r: r.lognormvariate(3.0, 1.5),
        lambda r: r.gauss(0.0, 3.0),  # negative values too (a z-score)
        lambda r: float(r.randrange(12)),  # few distinct values (a log count)
    ],
    ids=["uniform", "exponential", "lognormal", "normal", "discrete"],
)
def test_edges_approximate_the_true_quantiles(draw) -> None:
    rng = random.Random(5)
    values = [draw(rng) for _ in range(50_000)]
    b = QuantileBins("f", LEVELS, refresh_every=50_000, min_count=1)
    feed(b, values)
    ranked = sorted(values)
    truth = [ranked[math.floor(q * len(values))] for q in LEVELS]  # the value of rank floor(q n)
    near = np.quantile(np.array(values), LEVELS, method="inverted_cdf")
    assert all(abs(g(a) - g(b)) < 0.01 for a, b in zip(truth, near, strict=True))
    for q, edge, want in zip(LEVELS, b.edges, truth, strict=True):
        # the edge is the lower bound of the sketch cell (0.005 wide in sign(v) log1p|v|) that
        # holds the value of rank floor(q n): at or below it, less than a cell away
        assert edge <= want, (q, edge, want)
        assert g(want) - g(edge) < 0.005 + 1e-12, (q, edge, want)
        share = sum(v >= edge for v in values) / len(values)
        assert share >= 1 - q - 1e-9, (q, share)  # an indicator is 1 for at least the top 1 - q


def test_indicators_are_a_thermometer_and_zero_until_min_count() -> None:
    b = QuantileBins("f", (0.5, 0.9), refresh_every=10, min_count=100)
    x: dict[str, float] = {}
    for i in range(99):
        b.update(float(i % 10))
        b.read(1e9, x)
        assert x == {"f_ge_q50": 0.0, "f_ge_q90": 0.0}, i
    b.update(0.0)  # the 100th value: edges are set
    for v, want in [(0.0, (0.0, 0.0)), (5.0, (1.0, 0.0)), (9.0, (1.0, 1.0)), (1e9, (1.0, 1.0))]:
        b.read(v, x)
        assert (x["f_ge_q50"], x["f_ge_q90"]) == want, v


def test_edges_move_only_every_refresh_every_values() -> None:
    b = QuantileBins("f", (0.5,), refresh_every=100, min_count=100)
    feed(b, [1.0] * 100)
    first = list(b.edges)
    feed(b, [1_000.0] * 99)  # the median is now 1000, but no refresh yet
    assert list(b.edges) == first
    b.update(1_000.0)
    assert b.edges[0] > 900.0 and b.since == 0 and b.n == 200


def test_dumps_and_loads_continue_bit_for_bit() -> None:
    rng = random.Random(11)
    a = QuantileBins("f", LEVELS, refresh_every=97, min_count=50)
    feed(a, [rng.lognormvariate(2.0, 1.0) for _ in range(5_000)])
    data = a.dumps()
    b = QuantileBins("f", LEVELS, refresh_every=97, min_count=50)
    b.loads(data)
    assert b.dumps() == data and b.n == a.n and b.since == a.since
    for _ in range(5_000):
        v = rng.lognormvariate(2.0, 1.2)
        xa: dict[str, float] = {}
        xb: dict[str, float] = {}
        a.read(v, xa)
        b.read(v, xb)
        assert xa == xb
        a.update(v)
        b.update(v)
    assert a.dumps() == b.dumps() and list(a.edges) == list(b.edges)
    for bad in (data[:-1], data + b"\x00", data[:20]):
        with pytest.raises(ValueError, match="wrong size"):
            QuantileBins("f", LEVELS).loads(bad)
    with pytest.raises(struct.error):  # shorter than its header (the engine names both)
        QuantileBins("f", LEVELS).loads(data[:5])


def test_bad_levels_are_refused() -> None:
    for levels in [(), (0.0,), (0.5, 1.0)]:
        with pytest.raises(ValueError):
            QuantileBins("f", levels)


def test_reason_text_names_the_feature_and_the_edge() -> None:
    eng = FeatureEngine(FeatureSettings(bin_refresh_every=10, bin_min_count=10))
    for i in range(50):
        eng.update_raw(f"c{i}", "m", float(i + 1), T0 + i)
    text = eng.reason_text("log_amount_ge_q99")
    assert text.startswith("log_amount >= ") and text.endswith("(top 1%)")
    assert eng.reason_text("log_amount_ge_q99_5").endswith("(top 0.5%)")
    assert eng.reason_text("card_amount_z") == "card_amount_z"
    x = eng.update_raw("c", "m", 1e6, T0 + 100)
    assert all(x[f"log_amount_ge_q{t}"] == 1.0 for t in ("5", "50", "99", "99_5"))
