"""The merchant table and book: the live path with no staleness equals the backtest's merchants."""

from __future__ import annotations

import math

import pytest

from stream_scorer.events import Transaction
from stream_scorer.exceptions import StateError
from stream_scorer.features.engine import FeatureEngine
from stream_scorer.features.settings import FeatureSettings
from stream_scorer.merchants import records
from stream_scorer.merchants.book import MerchantBook
from stream_scorer.merchants.table import MerchantTable
from stream_scorer.simulate_longtail import LongTailConfig, LongTailSimulator

T0 = 1_780_000_000.0


def _stream(n: int = 12_000) -> list[Transaction]:
    sim = LongTailSimulator(LongTailConfig(n_cards=300, n_terminals=600, days=15), seed=5)
    return [Transaction.model_validate(e) for e in sim.take(n)]


def test_a_table_that_settles_at_once_gives_the_engines_own_merchant_features():
    """Zero staleness: reading the table, then folding with the stage's code, is the backtest."""
    settings = FeatureSettings()
    local = FeatureEngine(settings)
    table = MerchantTable(settings, settle=True)
    staged = FeatureEngine(settings, table=table)
    merchant_features = [n for n in local.names if n.startswith("merchant_")]
    nonzero = 0
    for t in _stream():
        xa, xb = local.update(t), staged.update(t)
        assert list(xa) == list(xb)
        for k, v in xa.items():
            assert math.isclose(v, xb[k], rel_tol=1e-12, abs_tol=1e-12), (k, v, xb[k])
        nonzero += any(xa[n] for n in merchant_features)
        if t.is_fraud is not None:
            for eng in (local, staged):
                eng.observe_label(eng.label_key(t), t.is_fraud, t.event_ts, t.event_ts + 86_400.0)
    assert nonzero > 10_000, "merchant features were exercised"
    assert set(table.merchants) == set(local.merchants)
    assert not local.late_events


def test_the_engine_sends_each_transaction_and_label_to_the_merchants_partition():
    table = MerchantTable(FeatureSettings(), partitions=6)
    eng = FeatureEngine(FeatureSettings(), table=table)
    t = _stream(1)[0]
    eng.update(t)
    eng.observe_label(eng.label_key(t), True, t.event_ts, t.event_ts + 5.0)
    key = t.merchant_id.encode()
    p = records.partition_of(key, 6)
    assert records.decode(table.outbox[0][2])[3] == (
        math.log1p(t.amount), 1.0, 0.0
    ), "the binned features' values go along: log_amount, card_amount_ratio, card_24h_log_count"
    assert table.outbox == [
        (p, key, records.encode_event(t.event_ts, t.amount, records.decode(table.outbox[0][2])[3])),
        (p, key, records.encode_label(t.event_ts + 5.0, True)),
    ]
    assert not [k for k in eng.dirty_keys() if k.startswith("m:")], "no merchant state in the partition"


def test_a_table_ahead_in_time_shows_an_older_event_only_its_past():
    """A backfill can read one partition hours behind the others: the table must not show it the
    merchant's transactions after its own time."""
    book = MerchantBook(FeatureSettings())
    m = book.new("m")
    for i in range(10):
        book.fold_event(m, T0 + i * 60.0, 10.0)  # ten in ten minutes
    for i in range(5):
        book.fold_event(m, T0 + 3 * 3600.0 + i, 10.0)  # five more three hours later
    x: dict[str, float] = {}
    book.read(m, T0 + 3600.0, x)
    # The 24-hour ring still holds the first ten, and not the five after; the 1-hour ring (five-
    # minute buckets) has recycled those buckets since: it reads none rather than the future.
    assert x["merchant_24h_log_count"] == pytest.approx(math.log1p(10))
    assert x["merchant_1h_log_count"] == 0.0
    book.read(m, T0 + 3 * 3600.0 + 10, x)
    assert x["merchant_1h_log_count"] == pytest.approx(math.log1p(5))
    assert x["merchant_24h_log_count"] == pytest.approx(math.log1p(15))


def test_a_label_is_read_only_after_it_is_known():
    book = MerchantBook(FeatureSettings())
    m = book.new("m")
    book.fold_event(m, T0, 10.0)
    book.fold_label(m, T0 + 86_400.0 * 2, True)
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    book.read(m, T0 + 86_400.0, before)
    book.read(m, T0 + 86_400.0 * 3, after)
    assert before["merchant_risk_7d_log_labels"] == 0.0
    assert after["merchant_risk_7d_rate"] == 1.0


def test_published_states_round_trip_and_foreign_ones_are_refused():
    book = MerchantBook(FeatureSettings())
    m = book.new("m1")
    book.fold_event(m, T0, 12.5)
    book.fold_label(m, T0 + 10, False)
    value = book.dumps(m, source_ms=123)
    back, source_ms = book.loads("m1", value)
    assert source_ms == 123 and back.max_ts == m.max_ts and list(back.sums) == list(m.sums)
    assert bytes(back.risk) == bytes(m.risk)
    other = MerchantBook(FeatureSettings(risk_windows_days=(7, 14)))
    with pytest.raises(StateError):
        other.loads("m1", value)
    with pytest.raises(StateError):
        book.loads("m1", value[:-1])
    table = MerchantTable(FeatureSettings(risk_windows_days=(7, 14)))
    assert table.apply(b"m1", value) == 0 and table.refused == 1 and not table.merchants


def test_the_table_applies_states_and_tombstones_and_evicts_idle_merchants():
    settings = FeatureSettings()
    book = MerchantBook(settings)
    table = MerchantTable(settings)
    old, new = book.new("old"), book.new("new")
    book.fold_event(old, T0, 1.0)
    assert table.apply(b"old", book.dumps(old, 7)) == 7
    x: dict[str, float] = {}
    table.read("old", T0 + 1, x)
    assert x["merchant_1h_log_count"] == pytest.approx(math.log1p(1))
    book.fold_event(new, T0 + book.horizon_s + 10.0, 1.0)
    table.apply(b"new", book.dumps(new, 8))
    assert table.evict() == 1 and set(table.merchants) == {"new"}
    table.apply(b"new", None)
    assert not table.merchants and table.tombstones == 1
    table.read("unknown", T0, x)
    assert x["merchant_1h_log_count"] == 0.0 and x["merchant_risk_7d_log_labels"] == 0.0
    assert table.bytes_per_merchant() > 16 * book.layout.n_buckets


def test_by_merchant_records_round_trip_and_others_are_refused():
    assert records.decode(records.encode_event(5.0, 12.5)) == (records.EVENT, 5.0, 12.5, ())
    assert records.decode(records.encode_event(5.0, 12.5, (1.0, 2.0))) == (records.EVENT, 5.0, 12.5, (1.0, 2.0))
    assert records.decode(records.encode_label(6.0, False)) == (records.LABEL, 6.0, 0.0, ())
    label_with_values = records.encode_label(6.0, False) + bytes(8)
    for bad in (None, b"", b"x" * 17, records.encode_event(5.0, 1.0)[:-1], label_with_values):
        with pytest.raises(ValueError):
            records.decode(bad)
    assert {records.partition_of(f"m{i}".encode(), 6) for i in range(200)} == set(range(6))


def test_sketches_summed_over_partitions_are_the_sketch_of_the_whole_stream():
    """The stage counts each partition's values; a worker sums the counts: the edges are those of
    one sketch that saw everything, which no partition's own sketch is."""
    from stream_scorer.merchants.sketches import MergedSketches, SketchSet

    settings = FeatureSettings(bins=("log_amount",), bin_refresh_every=100, bin_min_count=100)
    whole = SketchSet(settings)
    parts = [SketchSet(settings) for _ in range(4)]
    merged = MergedSketches(settings)
    import random

    rng = random.Random(1)
    for i in range(4_000):
        v = math.log1p(rng.lognormvariate(3.0, 1.0))
        whole.fold((v,))
        parts[i % 4].fold((v,))
        if i % 500 == 499:  # partitions publish now and then; later counts replace earlier ones
            for p, sk in enumerate(parts):
                merged.apply(p, sk.dumps())
    for p, sk in enumerate(parts):
        merged.apply(p, sk.dumps())
    whole.bins[0].refresh()
    assert merged.bins[0].cells == whole.bins[0].cells and merged.bins[0].n == 4_000
    assert list(merged.bins[0].edges) == list(whole.bins[0].edges)
    assert list(parts[0].bins[0].edges) != list(whole.bins[0].edges), "one partition alone differs"
    merged.apply(9, b"not sketches")
    assert merged.refused == 1
