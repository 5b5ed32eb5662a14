"""A feature never uses the label of its own event or of a later one.

Every fraud rate (cards, merchants, category values, each window) counts only labels known strictly
before the event. The property test below would catch any label known at or after an event that
reaches its features: the same stream with every such label made a fraud, or made genuine, must
give the event the same features (a label counted would move a rate one way or the other).
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings

from stream_scorer.features import FeatureEngine
from stream_scorer.features.settings import FeatureSettings
from tests.unit.features.strategies import T0, label_key, run, settings_st, streams

ATTRS = ("d1", "FR", "online", "5411")
KEY = label_key("m", "c", ATTRS)
ENTITIES = ("card", "merchant", "mcc", "country", "channel")


def _engine() -> FeatureEngine:
    """An engine with risk rings for every entity a label teaches."""
    return FeatureEngine(FeatureSettings(category_risk=("mcc", "country", "channel")))


def _known_at(item: tuple[Any, ...], ts: float) -> bool:
    _, _, _, event_ts, label_ts = item
    return bool(max(event_ts, label_ts) < ts)


def _future_labels_set_to(stream: list[Any], ts: float, is_fraud: bool) -> list[Any]:
    return [
        (*it[:2], is_fraud, *it[3:]) if it[0] == "label" and not _known_at(it, ts) else it
        for it in stream
    ]


@settings(max_examples=150, deadline=None)
@given(stream=streams(), fs=settings_st)
def test_labels_from_the_future_change_nothing(stream: list[Any], fs: FeatureSettings) -> None:
    """Each event's features are the same whatever the labels known at or after it say."""
    txn_index = [i for i, item in enumerate(stream) if item[0] == "txn"]
    for n, i in enumerate(txn_index):
        ts = stream[i][4]
        frauds = run(FeatureEngine(fs), _future_labels_set_to(stream[: i + 1], ts, True))[-1]
        genuine = run(FeatureEngine(fs), _future_labels_set_to(stream[: i + 1], ts, False))[-1]
        assert frauds == genuine, f"event {n} saw a label from its future"


def _labels(x: dict[str, float]) -> dict[str, float]:
    return {e: x[f"{e}_risk_30d_log_labels"] for e in ENTITIES}


def test_own_label_never_counts_even_at_the_same_instant() -> None:
    eng = _engine()
    first = eng.update_raw("c", "m", 10.0, T0, ATTRS)
    eng.observe_label(KEY, True, T0 + 100, T0 + 100)  # known at the instant of the next event
    x = eng.update_raw("c", "m", 10.0, T0 + 100, ATTRS)
    assert all(v == 0.0 for v in _labels(x).values())
    assert all(x[f"{e}_risk_7d_rate"] == first[f"{e}_risk_7d_rate"] for e in ENTITIES)
    later = eng.update_raw("c", "m", 10.0, T0 + 100.25, ATTRS)
    assert all(v > 0.0 for v in _labels(later).values())
    assert all(later[f"{e}_risk_7d_rate"] > first[f"{e}_risk_7d_rate"] for e in ENTITIES)


def test_an_event_behind_a_label_of_its_day_leaves_that_day_out() -> None:
    """Labels known at T0 + 10 and T0 + 500: an event at T0 + 200 may not read the day (one of its
    labels is later than it), even though the other was known before it."""
    eng = _engine()
    eng.update_raw("c", "m", 10.0, T0 + 5, ATTRS)
    eng.observe_label(KEY, True, T0 + 5, T0 + 10)
    eng.observe_label(KEY, True, T0 + 5, T0 + 500)
    assert all(v == 0.0 for v in _labels(eng.update_raw("c", "m", 1.0, T0 + 200, ATTRS)).values())
    after = _labels(eng.update_raw("c", "m", 1.0, T0 + 501, ATTRS))
    assert all(v == math.log1p(2) for v in after.values())


def test_a_late_event_does_not_see_labels_known_after_it() -> None:
    eng = FeatureEngine(FeatureSettings(grace_s=60, category_risk=("mcc", "country", "channel")))
    eng.update_raw("c", "m", 10.0, T0, ATTRS)
    eng.observe_label(KEY, True, T0, T0 + 1_000)  # chargeback known at T0 + 1000
    eng.update_raw("c", "m", 10.0, T0 + 10 * 86_400, ATTRS)  # the clock moves on
    late = eng.update_raw("c", "m", 10.0, T0 + 500, ATTRS)  # a very late event, before the label
    assert eng.late_events == 1
    assert all(v == 0.0 for v in _labels(late).values())
    later = eng.update_raw("c", "m", 10.0, T0 + 10 * 86_400, ATTRS)
    assert all(v > 0.0 for v in _labels(later).values())


def test_a_label_before_its_transaction_is_known_only_from_the_transaction_on() -> None:
    eng = _engine()
    eng.update_raw("c", "m", 10.0, T0, ATTRS)
    eng.observe_label(KEY, True, event_ts=T0 + 50, label_ts=T0)  # label_ts < event_ts: nonsense
    assert all(v == 0.0 for v in _labels(eng.update_raw("c", "m", 1.0, T0 + 50, ATTRS)).values())
    assert all(v > 0.0 for v in _labels(eng.update_raw("c", "m", 1.0, T0 + 51, ATTRS)).values())


def test_a_merchant_only_key_teaches_only_the_merchant() -> None:
    """Label keys of older state name the merchant alone."""
    eng = _engine()
    eng.update_raw("c", "m", 10.0, T0, ATTRS)
    eng.observe_label("m", True, T0, T0 + 1)
    got = _labels(eng.update_raw("c", "m", 1.0, T0 + 2, ATTRS))
    assert got == {e: (math.log1p(1) if e == "merchant" else 0.0) for e in ENTITIES}


def test_a_merchant_id_of_older_state_that_looks_like_json_is_a_merchant() -> None:
    for merchant in ("[m", "[1]", '["a", "b"]'):
        eng = _engine()
        eng.update_raw("c", merchant, 10.0, T0, ATTRS)
        eng.observe_label(merchant, True, T0, T0 + 1)
        x = eng.update_raw("c", merchant, 1.0, T0 + 2)
        assert x["merchant_risk_7d_log_labels"] == math.log1p(1), merchant
        assert set(eng.merchants) == {merchant}
