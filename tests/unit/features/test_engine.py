"""Unit behaviour of the engine: late events, the grace boundary, merchant memory, settings."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from stream_scorer.events import Transaction
from stream_scorer.features import CardFeatures, FeatureEngine, FeatureSettings
from tests.unit.features.strategies import T0, label_key


def test_card_features_is_the_engine_for_the_worker() -> None:
    txn = Transaction(
        transaction_id="t",
        event_time=datetime(2026, 1, 1, tzinfo=UTC),
        card_id="c",
        merchant_id="m",
        amount=12.5,
        currency="EUR",
        is_fraud=None,
    )
    f = CardFeatures()
    x = f.update(txn)
    assert isinstance(f, FeatureEngine)
    assert tuple(x) == f.names
    assert x == FeatureEngine().update_raw("c", "m", 12.5, txn.event_time.timestamp())


@pytest.mark.parametrize(("lag", "late"), [(300.0, False), (300.25, True), (0.0, False)])
def test_the_grace_boundary(lag: float, late: bool) -> None:
    eng = FeatureEngine(FeatureSettings(grace_s=300))
    eng.update_raw("c", "m", 10.0, T0 + 1_000)
    eng.update_raw("c2", "m2", 10.0, T0 + 1_000)  # keep card and merchant clocks apart below
    x = eng.update_raw("c", "m2", 10.0, T0 + 1_000 - lag)
    assert eng.late_events == int(late)
    assert x["card_log_seconds_since_prev"] == 0.0 or lag == 0.0


def test_a_late_event_is_folded_at_latest_minus_grace() -> None:
    eng = FeatureEngine(FeatureSettings(grace_s=300))
    eng.update_raw("c", "m", 10.0, T0 + 3 * 86_400)
    eng.update_raw("c", "m", 50.0, T0)  # three days late: counted at T0 + 3 d - 300 s
    assert eng.late_events == 1
    x = eng.update_raw("c", "m", 10.0, T0 + 3 * 86_400 + 1)
    assert x["card_10m_log_count"] == math.log1p(2)
    assert x["card_10m_log_max"] == pytest.approx(math.log1p(50.0))


def test_merchant_memory_forgets_the_least_recently_seen_when_full() -> None:
    eng = FeatureEngine(FeatureSettings(card_merchant_slots=3))
    for i, m in enumerate(["a", "b", "c", "a", "d"]):  # "b" is then the least recently seen
        eng.update_raw("card", m, 10.0, T0 + i * 3_600)
    x = eng.update_raw("card", "a", 10.0, T0 + 5 * 3_600)
    assert x["card_merchant_new"] == 0.0
    assert x["card_24h_log_distinct_merchants"] == math.log1p(3)  # a, c, d: b was forgotten
    assert eng.update_raw("card", "b", 10.0, T0 + 6 * 3_600)["card_merchant_new"] == 1.0


def test_every_feature_is_finite_at_the_extremes() -> None:
    eng = FeatureEngine()
    for amount, ts in [(1e-9, T0), (1e9, T0), (1e9, T0 + 1), (1e-9, T0 + 2), (1.0, 1.0)]:
        x = eng.update_raw("c", "m", amount, ts)
        assert all(math.isfinite(v) for v in x.values()), x
        assert -10.0 <= x["card_amount_z"] <= 10.0 and 0.0 <= x["card_amount_ratio"] <= 100.0


def test_time_features() -> None:
    monday_6h = datetime(2026, 1, 5, 6, tzinfo=UTC).timestamp()
    x = FeatureEngine().update_raw("c", "m", 1.0, monday_6h)
    assert x["hour_sin"] == pytest.approx(1.0) and x["hour_cos"] == pytest.approx(0.0, abs=1e-9)
    week = 2 * math.pi * (0.25 / 7)
    assert x["dow_sin"] == pytest.approx(math.sin(week)) and x["dow_cos"] == pytest.approx(
        math.cos(week)
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"grace_s": -1},
        {"grace_s": 3_601},
        {"unknown": 1},
        {"risk_windows_days": ()},
        {"risk_windows_days": (0, 7)},
        {"risk_windows_days": (1, 61)},
        {"card_merchant_slots": 0},
        {"risk_prior_rate": 2},
        {"risk_prior_weight": -1},
        {"category_risk": ("device",)},
        {"card_memory_slots": 0},
        {"signals": ("a", "a")},
        {"signals": ("",)},
        {"signal_missing": "drop"},
        {"bins": ("no_such_feature",)},
        {"bins": ("log_amount_ge_q50",)},
        {"bin_levels": (0.0,)},
        {"bin_levels": (0.5, 1.0)},
        {"bin_min_count": 0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FeatureSettings.model_validate(kwargs)


def test_settings_are_described() -> None:
    for name, field in FeatureSettings.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"risk_windows_days": (1, 7, 30, 60)},  # the longest risk window the settings allow
        {"risk_windows_days": (60,), "category_risk": (), "signals": ("a", "b"), "bins": ()},
    ],
)
def test_card_state_is_at_most_one_kib(kwargs: dict[str, Any]) -> None:
    """A card's whole state (windows, amount habits, merchant memory, its memory of devices and
    countries, its label ring) is one buffer of at most 1 KiB, labels and all."""
    eng = FeatureEngine(FeatureSettings(**kwargs))
    key = label_key("m", "c", ("d", "FR", "pos", "5411"))
    for i in range(200):  # busy: every ring touched, every memory slot filled
        attrs = (f"d{i % 9}", ("FR", "DE", "US")[i % 3], ("pos", "online")[i % 2], f"{5000 + i % 7}")
        eng.update_raw("c", f"m{i % 30}", 1.0 + i, T0 + i * 3_000, attrs, {"a": 1.0})
        eng.observe_label(key, i % 5 == 0, T0 + i * 3_000, T0 + i * 3_000 + 60)
    assert len(eng.cards["c"]) == eng._card.size <= 1024
    value = eng.dump_key("c:c")
    assert value is not None and len(value) - 6 == len(eng.cards["c"])  # a 6-byte value header


def test_the_default_card_size_is_known() -> None:
    """962 bytes: 820 of windows, habits and merchant memory, 72 of novelty, 70 of labels."""
    eng = FeatureEngine()
    eng.update_raw("c", "m", 1.0, T0)
    assert len(eng.cards["c"]) == 962


@pytest.mark.parametrize(
    ("amount", "ts"), [(-1.0, T0), (-0.01, T0), (math.nan, T0), (1.0, -5.0), (1.0, math.nan)]
)
def test_impossible_values_are_refused(amount: float, ts: float) -> None:
    eng = FeatureEngine()
    with pytest.raises(ValueError):
        eng.update_raw("c", "m", amount, ts)
    assert eng.n_entities() == 0


def test_the_readme_table_lists_every_feature() -> None:
    from stream_scorer.features.catalog import markdown_table

    table = markdown_table()
    assert all(f"| `{name}` |" in table for name in FeatureEngine.names)
    assert len(table.splitlines()) == len(FeatureEngine.names) + 2


def test_merchant_memory_keeps_the_hour_before_across_long_gaps() -> None:
    """The hour seen before a merchant's latest is kept as a one-byte age: an event in the hour
    before the latest still finds it, and an age beyond 255 hours reads as none, as the reference
    (which keeps every event) says."""
    from tests.unit.features.reference import reference_features
    from tests.unit.features.strategies import run
    from tests.unit.features.test_engine_reference import assert_same

    h = 3_600.0
    stream: list[tuple[Any, ...]] = [
        ("txn", "c", "a", 10.0, T0 + 10),
        ("txn", "c", "a", 11.0, T0 + 300 * h + 10),  # 300 h later: the hour before is too old
        ("txn", "c", "b", 12.0, T0 + 300 * h + 50),
        ("txn", "c", "a", 13.0, T0 + 300 * h - 60),  # the hour before a's latest, within grace
        ("txn", "c", "a", 14.0, T0 + 302 * h + 10),  # two hours on: the hour before is kept
        ("txn", "c", "b", 15.0, T0 + 302 * h + 20),
        ("txn", "c", "a", 16.0, T0 + 302 * h - 100),  # sees a at hour 300 through the age
        ("txn", "c", "c", 17.0, T0 + 302 * h - 200),
    ]
    fs = FeatureSettings(grace_s=3_600)
    got = run(FeatureEngine(fs), stream)
    want, _ = reference_features(stream, fs)
    assert_same(got, want, stream, fs)
    assert got[3]["card_merchant_new"] == 1.0 and got[6]["card_merchant_new"] == 0.0


def test_a_label_by_its_parts_teaches_what_its_key_does() -> None:
    """``label_parts`` (a label learned at once) and ``label_key`` (a label kept for later) reach
    the same entities: the features after the labels and the whole state are the same."""
    from stream_scorer.simulate import SimConfig, Simulator

    txns = [Transaction.model_validate(e) for e in Simulator(SimConfig(), seed=5).events(2_000)]
    by_key, by_parts, unlabelled = FeatureEngine(), FeatureEngine(), FeatureEngine()
    labelled = 0
    for t in txns:
        assert by_key.update(t) == by_parts.update(t)
        unlabelled.update(t)
        if t.is_fraud is not None:
            labelled += t.is_fraud
            by_key.observe_label(by_key.label_key(t), t.is_fraud, t.event_ts, t.event_ts)
            by_parts.observe_label(by_parts.label_parts(t), t.is_fraud, t.event_ts, t.event_ts)
    assert labelled > 0 and by_key.snapshot() == by_parts.snapshot() != unlabelled.snapshot()
    assert orjson.loads(by_key.label_key(txns[0])) == list(by_key.label_parts(txns[0]))
