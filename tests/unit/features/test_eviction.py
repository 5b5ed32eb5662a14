"""Idle entities leave memory once their longest window (plus the grace) is behind the watermark."""

from __future__ import annotations

from stream_scorer.features import FeatureEngine
from stream_scorer.features.merchant import MerchantLayout
from stream_scorer.features.settings import FeatureSettings
from tests.unit.features.strategies import T0

DAY = 86_400.0


def test_idle_entities_are_evicted_and_tombstoned() -> None:
    eng = FeatureEngine(FeatureSettings(grace_s=300))
    eng.update_raw("old", "m-old", 10.0, T0)
    eng.update_raw("new", "m-new", 10.0, T0 + 7 * DAY)
    eng.clear_dirty()
    assert eng.n_entities() == 4
    # The card horizon is 7 d + grace: at exactly that age nothing goes yet.
    assert eng.evict(T0 + 7 * DAY + 300) == 0
    assert eng.evict(T0 + 7 * DAY + 300.5 + 3_600) == 1  # the next sweep, an hour later
    assert set(eng.cards) == {"new"} and eng.n_entities() == 3
    assert eng.dirty_keys() == {"c:old"}
    assert eng.dump_key("c:old") is None and eng.dump_key("c:new") is not None
    # Merchants keep their 30-day label window: they go after 30 d + grace.
    # (and by then the card "new" has been idle for more than 7 d as well).
    assert eng.evict(T0 + 30 * DAY + 3 * 3_600) == 2
    assert set(eng.merchants) == {"m-new"} and not eng.cards
    assert eng.dirty_keys() == {"c:old", "c:new", "m:m-old"}


def test_a_pending_label_keeps_its_merchant() -> None:
    eng = FeatureEngine()
    eng.update_raw("c", "m", 10.0, T0)
    eng.observe_label("m", True, T0, T0 + 20 * DAY)
    assert eng.evict(T0 + 40 * DAY) == 1  # the card
    assert "m" in eng.merchants
    assert eng.evict(T0 + 60 * DAY) == 1
    assert eng.n_entities() == 0


def test_a_touched_merchant_keeps_its_seen_ts() -> None:
    """A label touches its merchant (``MerchantLayout.touch``): only ``seen_ts``, which eviction
    reads, moves on; the merchant's own horizon is its longest transaction window plus the grace."""
    layout = MerchantLayout(FeatureSettings(grace_s=300))
    assert layout.horizon_s == 7 * DAY + 300
    m = layout.new(7)
    layout.update(m, 10.0, T0, {})
    layout.touch(m, T0 + 20 * DAY)
    assert m.max_ts == T0 and m.seen_ts == T0 + 20 * DAY
    restored = layout.loads(layout.dumps(m), 7)
    assert (restored.max_ts, restored.seen_ts) == (T0, T0 + 20 * DAY)


def test_an_evicted_card_starts_afresh() -> None:
    eng = FeatureEngine()
    eng.update_raw("c", "m", 10.0, T0)
    eng.update_raw("c", "m", 30.0, T0 + 60)
    assert eng.evict(T0 + 40 * DAY) == 2
    fresh = FeatureEngine().update_raw("c", "m", 20.0, T0 + 40 * DAY)
    assert eng.update_raw("c", "m", 20.0, T0 + 40 * DAY) == fresh


def test_eviction_is_spread_over_calls_and_sweeps_at_most_once_per_interval() -> None:
    eng = FeatureEngine(FeatureSettings(evict_keys_per_call=7, evict_interval_s=3_600))
    for i in range(50):
        eng.update_raw(f"c{i}", "m", 10.0, T0 + i)
    eng.update_raw("busy", "m", 10.0, T0 + 20 * DAY)
    watermark = T0 + 20 * DAY
    counts = [eng.evict(watermark) for _ in range(9)]
    assert all(c <= 7 for c in counts)
    assert sum(counts) == 50
    assert set(eng.cards) == {"busy"} and set(eng.merchants) == {"m"}
    for i in range(5):
        eng.update_raw(f"late{i}", "m2", 10.0, T0)
    assert eng.evict(watermark + 60) == 0  # the last sweep began less than an hour ago
    assert sum(eng.evict(watermark + 3_600) for _ in range(3)) == 5


def test_evict_is_cheap_when_nothing_is_due() -> None:
    eng = FeatureEngine()
    for i in range(1_000):
        eng.update_raw(f"c{i}", f"m{i % 10}", 10.0, T0 + i)
    assert eng.evict(T0 + 1_000) == 0
    assert eng._sweep == []  # one sweep, done
    assert eng.evict(T0 + 1_001) == 0  # within the interval: returns at once
