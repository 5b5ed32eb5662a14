"""A feature never uses the label of its own event or of a later one."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings

from stream_scorer.features import FeatureEngine
from stream_scorer.features.settings import FeatureSettings
from tests.unit.features.strategies import T0, run, settings_st, streams


def _known_at(item: tuple[Any, ...], ts: float) -> bool:
    _, _, _, event_ts, label_ts = item
    return bool(max(event_ts, label_ts) < ts)


@settings(max_examples=150, deadline=None)
@given(stream=streams(), fs=settings_st)
def test_labels_from_the_future_change_nothing(stream: list[Any], fs: FeatureSettings) -> None:
    """Each event's features equal those of a replay without the labels known at or after it."""
    full = run(FeatureEngine(fs), stream)
    txn_index = [i for i, item in enumerate(stream) if item[0] == "txn"]
    for n, i in enumerate(txn_index):
        ts = stream[i][4]
        past_only = [it for it in stream[:i] if it[0] != "label" or _known_at(it, ts)]
        x = run(FeatureEngine(fs), [*past_only, stream[i]])[-1]
        assert x == full[n], f"event {n} saw a label from its future"


def test_own_label_never_counts_even_at_the_same_instant() -> None:
    eng = FeatureEngine()
    prior = eng.update_raw("c", "m", 10.0, T0)["merchant_risk_rate"]
    eng.observe_label("m", True, T0 + 100, T0 + 100)  # known at the instant of the next event
    x = eng.update_raw("c2", "m", 10.0, T0 + 100)
    assert x["merchant_risk_rate"] == prior
    assert x["merchant_risk_log_labels"] == 0.0
    assert eng.update_raw("c3", "m", 10.0, T0 + 100.25)["merchant_risk_rate"] > prior


def test_a_late_event_does_not_see_labels_known_after_it() -> None:
    eng = FeatureEngine(FeatureSettings(grace_s=60))
    eng.update_raw("c", "m", 10.0, T0)
    eng.observe_label("m", True, T0, T0 + 1_000)  # chargeback known at T0 + 1000
    eng.update_raw("c", "m", 10.0, T0 + 10 * 86_400)  # the clock moves on: the label is settled
    late = eng.update_raw("c2", "m", 10.0, T0 + 500)  # a very late event, before the label
    assert eng.late_events == 1
    assert late["merchant_risk_log_labels"] == 0.0
    later = eng.update_raw("c3", "m", 10.0, T0 + 10 * 86_400)
    assert later["merchant_risk_log_labels"] > 0.0


def test_a_label_before_its_transaction_is_known_only_from_the_transaction_on() -> None:
    eng = FeatureEngine()
    eng.observe_label("m", True, event_ts=T0 + 50, label_ts=T0)  # label_ts < event_ts: nonsense
    assert eng.update_raw("c", "m", 10.0, T0 + 50)["merchant_risk_log_labels"] == 0.0
    assert eng.update_raw("c", "m", 10.0, T0 + 51)["merchant_risk_log_labels"] > 0.0
