"""Alerts: one firing, one resolved, nothing in between; a cooldown after a resolve."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from stream_scorer.evaluation.alerts import AlertManager
from stream_scorer.evaluation.drift import Check
from stream_scorer.events import DriftAlert

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "schemas" / "drift_alert.json").read_text()
)


def _check(active: bool, stat: float = 0.3, subject: str = "amount") -> Check:
    return Check(
        "data", "psi", subject, active, stat, 0.2, "last 5000 scores", "first 20000 scores", "msg"
    )


def _valid(alert: dict) -> dict:
    jsonschema.validate(alert, SCHEMA, format_checker=jsonschema.FormatChecker())
    DriftAlert.model_validate(alert)
    return alert


def test_a_lasting_condition_fires_once_then_resolves_once():
    am = AlertManager(cooldown_s=0.0, wall_clock=lambda: 1_700_000_000.0)
    fired = _valid(am.update(_check(True), ts=1_767_225_600.0))
    assert fired["status"] == "firing" and fired["severity"] == "warning"
    assert fired["event_time"] == "2026-01-01T00:00:00.000Z" and fired["detected_at"].startswith(
        "2023-11-14"
    )
    for t in range(10):
        assert am.update(_check(True), ts=1_767_225_601.0 + t) is None
    resolved = _valid(am.update(_check(False, 0.05), ts=1_767_225_700.0))
    assert resolved["status"] == "resolved" and resolved["severity"] == "info"
    assert fired["alert_id"] in resolved["message"] and resolved["alert_id"] != fired["alert_id"]
    assert am.update(_check(False, 0.05), ts=1_767_225_800.0) is None
    assert am.get()["psi:amount"] == {
        "firing": False,
        "fired": 1,
        "resolved": 1,
        "held": 0,
        "deduplicated": 10,
    }


def test_keys_are_independent_and_severity_scales_with_the_statistic():
    am = AlertManager(critical_factor=2.0)
    a = am.update(_check(True, 0.5, "amount"), ts=0.0)
    b = am.update(_check(True, 0.25, "log_amount"), ts=0.0)
    assert a["severity"] == "critical" and b["severity"] == "warning"
    assert a["subject"] == "amount" and b["subject"] == "log_amount"


def test_cooldown_holds_a_quick_comeback_then_lets_it_fire():
    am = AlertManager(cooldown_s=600.0)
    assert am.update(_check(True), ts=0.0)["status"] == "firing"
    assert am.update(_check(False), ts=100.0)["status"] == "resolved"
    assert am.update(_check(True), ts=200.0) is None
    assert am.update(_check(True), ts=600.0) is None
    assert am.update(_check(False), ts=650.0) is None, (
        "a held alert never fired: nothing to resolve"
    )
    again = am.update(_check(True), ts=701.0)
    assert again is not None and again["status"] == "firing"
    assert am.get()["psi:amount"]["held"] == 2
