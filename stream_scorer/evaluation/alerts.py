"""Turn detector checks into DriftAlert records: one ``firing`` when a condition starts, one
``resolved`` when it clears, nothing in between.

Alerts are keyed by ``detector:subject``. A condition that stays on is reported once (repeats are
counted as deduplicated). After an alert resolves, the same key may not fire again for
``cooldown_s`` seconds of *event time* (so replays and backtests alert like live runs); a condition
that comes back sooner is held, and fires when the cooldown ends if it still holds.

>>> from stream_scorer.evaluation.drift import Check
>>> am = AlertManager(cooldown_s=60)
>>> on = Check("data", "psi", "amount", True, 0.3, 0.2, "last 5000 scores", "first 20000")
>>> am.update(on, ts=0.0)["status"], am.update(on, ts=1.0)
('firing', None)
>>> am.update(Check("data", "psi", "amount", False, 0.05, 0.2, "w", "r"), ts=2.0)["status"]
'resolved'
>>> am.update(on, ts=30.0) is None, am.update(on, ts=63.0)["status"]
(True, 'firing')
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stream_scorer.evaluation.drift import Check
from stream_scorer.events import SCHEMA_VERSION


def rfc3339(ts: float) -> str:
    """``ts`` (epoch seconds) as an RFC 3339 UTC timestamp with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class AlertState:
    """What the manager remembers about one ``detector:subject``."""

    firing: bool = False
    alert_id: str | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    fired: int = 0
    resolved: int = 0
    deduplicated: int = 0
    held: int = 0


class AlertManager:
    """Deduplicate checks into firing/resolved alerts, with a cooldown per key."""

    def __init__(
        self,
        cooldown_s: float = 3_600.0,
        critical_factor: float = 2.0,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.cooldown_s = cooldown_s
        self.critical_factor = critical_factor
        self.wall_clock = wall_clock or time.time
        self.states: dict[str, AlertState] = {}

    def update(self, check: Check, ts: float) -> dict[str, Any] | None:
        """Fold in a check made at event time ``ts``; return the alert to publish, if any."""
        state = self.states.get(check.key)
        if state is None:
            state = self.states[check.key] = AlertState()
        if check.active:
            if state.firing:
                state.deduplicated += 1
                return None
            if state.resolved_at is not None and ts - state.resolved_at < self.cooldown_s:
                state.held += 1
                return None
            state.firing = True
            state.fired_at = ts
            state.fired += 1
            state.alert_id = str(uuid.uuid4())
            severity = (
                "critical"
                if check.statistic >= self.critical_factor * check.threshold
                else "warning"
            )
            return self._alert(check, ts, state.alert_id, "firing", severity, check.message)
        if not state.firing:
            return None
        state.firing = False
        state.resolved_at = ts
        state.resolved += 1
        message = f"{check.message} (resolves alert {state.alert_id})"
        return self._alert(check, ts, str(uuid.uuid4()), "resolved", "info", message)

    def _alert(
        self, check: Check, ts: float, alert_id: str, status: str, severity: str, message: str
    ) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "alert_id": alert_id,
            "kind": check.kind,
            "detector": check.detector,
            "subject": check.subject,
            "severity": severity,
            "status": status,
            "event_time": rfc3339(ts),
            "detected_at": rfc3339(self.wall_clock()),
            "statistic": float(check.statistic),
            "threshold": float(check.threshold),
            "window": check.window,
            "reference": check.reference,
            "message": message,
        }

    def get(self) -> dict[str, dict[str, Any]]:
        """Per key: firing or not, and how many alerts fired, resolved, were held, deduplicated."""
        return {
            key: {
                "firing": s.firing,
                "fired": s.fired,
                "resolved": s.resolved,
                "held": s.held,
                "deduplicated": s.deduplicated,
            }
            for key, s in self.states.items()
        }
