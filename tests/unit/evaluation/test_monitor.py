"""The evaluation pipeline on synthetic streams: the right alert, soon enough, and only then."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from stream_scorer.config import Settings
from stream_scorer.evaluation.monitor import Monitor
from stream_scorer.evaluation.settings import EvaluationSettings
from stream_scorer.evaluation.synthetic import synthetic_scores

# Smaller windows than the defaults, for speed; the benchmark measures the defaults.
SMALL = {
    "warmup": 1_000,
    "reference_size": 5_000,
    "drift_window": 2_000,
    "performance_min_labels": 2_000,
    "label_window": 2_000,
}


def _run(
    scores: Iterable[dict], settings: EvaluationSettings | None = None, every: int = 100
) -> list[tuple[int, dict]]:
    m = Monitor(settings or EvaluationSettings(**SMALL), review=0.5, decline=0.8)
    out = []
    for i, s in enumerate(scores):
        m.update_score(s)
        if i % every == every - 1:
            out.extend((i, a) for a in m.poll())
    return out


def _first(alerts: list[tuple[int, dict]], key: str, status: str = "firing") -> int | None:
    for i, a in alerts:
        if f"{a['detector']}:{a['subject']}" == key and a["status"] == status:
            return i
    return None


def _keys(alerts: list[tuple[int, dict]]) -> set[str]:
    return {f"{a['detector']}:{a['subject']}" for _, a in alerts}


AT = 10_000


def test_amount_shift_raises_data_drift_within_2000_scores_and_nothing_else():
    alerts = _run(synthetic_scores(20_000, seed=21, amount_shift=(AT, None)))
    assert (
        _first(alerts, "psi:amount") is not None and AT <= _first(alerts, "psi:amount") < AT + 2_000
    )
    assert _keys(alerts) == {"psi:amount", "psi:log_amount"}
    assert all(a["kind"] == "data" and a["status"] == "firing" for _, a in alerts)


def test_unlearned_fraud_raises_performance_drift_within_4000_scores():
    alerts = _run(synthetic_scores(20_000, seed=22, new_fraud=(AT, None), new_fraud_rate=0.02))
    first = _first(alerts, "adwin:log_loss")
    assert first is not None and AT <= first < AT + 4_000, first
    assert not any(i < AT for i, _ in alerts), "nothing before the drift"
    assert {"performance"} <= {a["kind"] for _, a in alerts} <= {"performance", "label_rate"}


def test_a_temporary_drift_resolves():
    alerts = _run(synthetic_scores(20_000, seed=23, amount_shift=(AT, AT + 4_000)))
    fired, resolved = _first(alerts, "psi:amount"), _first(alerts, "psi:amount", "resolved")
    assert fired is not None and resolved is not None and AT + 4_000 <= resolved < AT + 6_000


def test_challenger_parting_ways_raises_disagreement():
    alerts = _run(synthetic_scores(15_000, seed=24, challenger_offset=(AT, None)))
    first = _first(alerts, "mean_abs_diff:champion_vs_challenger")
    assert first is not None and AT <= first < AT + 2_000
    assert {a["kind"] for _, a in alerts} <= {"disagreement", "performance"}


def test_a_broken_model_raises_prediction_drift_with_the_default_threshold():
    alerts = _run(synthetic_scores(15_000, seed=29, broken_model=(AT, None)))
    first = _first(alerts, "psi:score")
    assert first is not None and AT <= first < AT + 1_500, first
    assert not any(i < AT for i, _ in alerts)


def test_ks_method_detects_the_amount_shift_too():
    settings = EvaluationSettings(distribution_method="ks", **SMALL)
    alerts = _run(synthetic_scores(20_000, seed=25, amount_shift=(AT, None)), settings)
    assert _first(alerts, "ks:amount") is not None and not any(i < AT for i, _ in alerts)


def test_late_labels_are_joined_and_counted():
    scores = list(synthetic_scores(2_000, seed=26, inline_labels=False))
    m = Monitor(EvaluationSettings(), review=0.5, decline=0.8)
    for s in scores[:1_000]:
        m.update_label(
            {
                "transaction_id": s["transaction_id"],
                "is_fraud": False,
                "label_time": s["event_time"],
            }
        )
    for s in scores:
        m.update_score(s)
    assert m.get()["join"]["joined"] == 1_000 and m.get()["join"]["pending_scores"] == 1_000
    assert m.get()["metrics"]["champion"]["labelled"]["cumulative"]["n"] == 1_000


def test_ignored_features_are_not_watched_and_settings_nest_under_settings():
    m = Monitor(EvaluationSettings(), review=0.5, decline=0.8)
    m.update_score(
        {
            "transaction_id": "t",
            "event_time": datetime(2026, 1, 1, tzinfo=UTC),
            "score": 0.1,
            "amount": 3.0,
            "features": {"hour_sin": 0.1, "card_24h_log_count": 1.0, "log_amount": 1.4},
        }
    )
    assert set(m.data) == {"amount", "log_amount"}
    assert Settings().evaluation.metrics_topic == "scorer-metrics"
    with pytest.raises(ValueError):
        EvaluationSettings(unknown=1)


@pytest.mark.slow
def test_a_stationary_stream_of_100k_scores_raises_no_alert_with_the_defaults():
    assert _run(synthetic_scores(100_000, seed=27), EvaluationSettings()) == []


def test_the_monitor_snapshots_with_pickle_and_resumes_identically():
    import pickle

    stream = list(synthetic_scores(12_000, seed=28, amount_shift=(9_000, None)))
    a = Monitor(EvaluationSettings(**SMALL), review=0.5, decline=0.8)
    for s in stream[:8_000]:
        a.update_score(s)
    b = pickle.loads(pickle.dumps(a))
    for s in stream[8_000:]:
        a.update_score(s)
        b.update_score(s)

    def strip(alerts):
        return [
            {k: v for k, v in x.items() if k not in ("alert_id", "detected_at")} for x in alerts
        ]

    assert strip(a.poll()) == strip(b.poll()) != []
    assert a.get()["metrics"] == b.get()["metrics"]


def test_of_the_engine_s_features_only_amount_shapes_and_producer_signals_are_watched():
    """Label-driven risk, novelty and quantile indicators move by construction after a start."""
    from stream_scorer.features.engine import FeatureEngine
    from stream_scorer.features.settings import FeatureSettings

    engine = FeatureEngine(FeatureSettings(signals=("device_risk",)))
    m = Monitor(EvaluationSettings(), review=0.5, decline=0.8)
    m.update_score(
        {
            "transaction_id": "t",
            "event_time": datetime(2026, 1, 1, tzinfo=UTC),
            "score": 0.1,
            "amount": 3.0,
            "features": dict.fromkeys(engine.names, 0.5),
        }
    )
    assert set(m.data) == {
        "amount",
        "log_amount",
        "card_amount_ratio",
        "card_amount_z",
        "signal_device_risk",
        "signal_device_risk_missing",
    }
