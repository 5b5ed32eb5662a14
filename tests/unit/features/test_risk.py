"""Entity risk rings: windows by label time, saturation, the ring wrapping, and the leak guard."""

from __future__ import annotations

import math

import pytest

from stream_scorer.features.risk import RiskRing

DAY = 86_400.0
D0 = 20_000 * DAY  # a day boundary (2024-10-04)


def ring(windows: tuple[int, ...] = (1, 7, 30), itemsize: int = 2, **kw: float) -> RiskRing:
    kw = {"prior_rate": 0.0, "prior_weight": 0.0, **kw}
    return RiskRing("e", windows, kw["prior_rate"], kw["prior_weight"], itemsize=itemsize)


def read(r: RiskRing, buf: bytearray, ts: float) -> dict[str, float]:
    x: dict[str, float] = {}
    r.read(buf, 0, ts, x)
    return x


def counts(r: RiskRing, buf: bytearray, ts: float) -> dict[int, int]:
    x = read(r, buf, ts)
    return {w: round(math.expm1(x[f"e_risk_{w}d_log_labels"])) for w in r.windows}


def test_names_size_and_layout() -> None:
    r = ring((7, 1, 7, 30), itemsize=1)
    assert r.windows == (1, 7, 30) and r.slots == 31
    assert r.size == 8 + 2 * 31
    assert r.feature_names() == (
        "e_risk_1d_rate", "e_risk_1d_log_labels", "e_risk_7d_rate", "e_risk_7d_log_labels",
        "e_risk_30d_rate", "e_risk_30d_log_labels",
    )
    assert "1,7,30" in r.describe() and r.describe() != ring((1, 7, 30), itemsize=2).describe()
    with pytest.raises(ValueError):
        RiskRing("e", (), 0.0, 0.0)
    with pytest.raises(ValueError):
        RiskRing("e", (0, 3), 0.0, 0.0)


def test_windows_count_the_labels_known_in_their_days() -> None:
    r = ring()
    buf = bytearray(r.size)
    # one label known on each of the days 0, 3, 10, 25, 29 (at noon), fraud on days 3 and 29
    for day, fraud in [(0, False), (3, True), (10, False), (25, False), (29, True)]:
        r.fold(buf, 0, D0 + day * DAY + 43_200, fraud)
    x = read(r, buf, D0 + 30 * DAY + 1)  # day 30: the 1-day window is day 30 alone
    assert counts(r, buf, D0 + 30 * DAY + 1) == {1: 0, 7: 2, 30: 4}  # 24..30; 1..30
    assert x["e_risk_7d_rate"] == 0.5 and x["e_risk_30d_rate"] == 0.5  # frauds on days 3, 29
    assert x["e_risk_1d_rate"] == 0.0  # no labels, no prior weight: 0
    assert counts(r, buf, D0 + 29 * DAY + 50_000) == {1: 1, 7: 2, 30: 5}  # after day 29's label


def test_the_prior_smooths_and_is_all_there_is_without_labels() -> None:
    r = ring((1,), prior_rate=0.01, prior_weight=4.0)
    buf = bytearray(r.size)
    assert read(r, buf, D0) == {"e_risk_1d_rate": 0.01, "e_risk_1d_log_labels": 0.0}
    r.fold(buf, 0, D0 + 10, True)
    assert read(r, buf, D0 + 20)["e_risk_1d_rate"] == pytest.approx((1 + 0.04) / 5)
    assert read(r, buf, D0 + 5 * DAY)["e_risk_1d_rate"] == pytest.approx(0.01)  # window empty


@pytest.mark.parametrize(("itemsize", "cap"), [(1, 255), (2, 65_535)])
def test_a_full_bucket_counts_no_more_labels(itemsize: int, cap: int) -> None:
    r = ring((1,), itemsize=itemsize)
    buf = bytearray(r.size)
    frauds = cap // 2
    for i in range(cap + 300):
        r.fold(buf, 0, D0 + 1 + i * 1e-3, i < frauds)  # the frauds first, then genuine ones
    x = read(r, buf, D0 + DAY - 1)
    assert x["e_risk_1d_log_labels"] == math.log1p(cap)
    assert x["e_risk_1d_rate"] == frauds / cap
    for i in range(500):  # frauds after the bucket is full change nothing
        r.fold(buf, 0, D0 + 2 + i * 1e-3, True)
    assert read(r, buf, D0 + DAY - 1) == x
    r.fold(buf, 0, D0 + DAY + 1, True)  # the next day counts afresh
    assert counts(r, buf, D0 + DAY + 2) == {1: 1}


def test_the_ring_wraps_and_forgets_what_it_reused() -> None:
    r = ring((1, 3))  # 4 slots: days head - 3 .. head
    buf = bytearray(r.size)
    for day in range(10):
        r.fold(buf, 0, D0 + day * DAY + 1, day % 2 == 0)
    assert counts(r, buf, D0 + 9 * DAY + 2) == {1: 1, 3: 3}  # days 7, 8, 9
    assert counts(r, buf, D0 + 10 * DAY) == {1: 0, 3: 2}  # days 8, 9
    # an event behind the head reads what the ring still has, never a reused slot
    assert counts(r, buf, D0 + 8 * DAY + 5) == {1: 0, 3: 2}  # days 6, 7 (not its own, 8)
    assert counts(r, buf, D0 + 7 * DAY + 5) == {1: 0, 3: 1}  # day 6: day 5 is gone
    assert counts(r, buf, D0 + 2 * DAY) == {1: 0, 3: 0}
    # a label older than the ring is dropped; one in the ring is counted
    r.fold(buf, 0, D0 + 5 * DAY + 1, True)
    r.fold(buf, 0, D0 + 7 * DAY + 1, True)
    assert counts(r, buf, D0 + 10 * DAY) == {1: 0, 3: 2}
    assert counts(r, buf, D0 + 9 * DAY + 2) == {1: 1, 3: 4}
    # a jump beyond the ring's length empties it all
    r.fold(buf, 0, D0 + 40 * DAY, False)
    assert counts(r, buf, D0 + 40 * DAY + 1) == {1: 1, 3: 1}
    assert counts(r, buf, D0 + 41 * DAY) == {1: 0, 3: 1}
    assert RiskRing.last(buf, 0) == D0 + 40 * DAY


def test_the_leak_guard() -> None:
    """An event reads its own day only when every label folded was known before it."""
    r = ring((1, 7))
    buf = bytearray(r.size)
    assert RiskRing.last(buf, 0) == -math.inf
    r.fold(buf, 0, D0 + 100, True)
    assert counts(r, buf, D0 + 100) == {1: 0, 7: 0}  # known at the event's instant: not before
    assert counts(r, buf, D0 + 100.5) == {1: 1, 7: 1}
    r.fold(buf, 0, D0 + 500, True)  # a later label of the same day
    assert counts(r, buf, D0 + 300) == {1: 0, 7: 0}  # the day is left out, both of its labels
    assert counts(r, buf, D0 + 501) == {1: 2, 7: 2}
    r.fold(buf, 0, D0 + 200, True)  # out of order: older than the latest, same day
    assert RiskRing.last(buf, 0) == D0 + 500
    assert counts(r, buf, D0 + 501) == {1: 3, 7: 3}
    r.fold(buf, 0, D0 + 2 * DAY + 10, False)  # the ring moves on two days
    # an event on day 0 or 1 now trails the head: it reads only the days before its own
    assert counts(r, buf, D0 + 600) == {1: 0, 7: 0}
    assert counts(r, buf, D0 + DAY + 5) == {1: 0, 7: 3}
    assert counts(r, buf, D0 + 2 * DAY + 5) == {1: 0, 7: 3}
    assert counts(r, buf, D0 + 2 * DAY + 11) == {1: 1, 7: 4}


def test_rings_live_at_an_offset_of_a_shared_buffer() -> None:
    r = ring((1,))
    buf = bytearray(b"\xaa" * 5 + bytes(r.size) + b"\xbb" * 3)
    r.fold(buf, 5, D0 + 1, True)
    x: dict[str, float] = {}
    r.read(buf, 5, D0 + 2, x)
    assert x["e_risk_1d_log_labels"] == math.log1p(1)
    assert buf[:5] == b"\xaa" * 5 and buf[-3:] == b"\xbb" * 3
