"""Turn a record's bytes into a valid Transaction, or into the reason it is a dead letter.

This is the data layer's gate: orjson decodes, the pydantic contract validates, and a few rules
that need context (size, clock skew) run here. Nothing raises: a bad record yields a
:class:`Rejection`, which the worker sends to the dead-letter topic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from stream_scorer.events import Label, Transaction

if TYPE_CHECKING:
    from stream_scorer.config import Settings


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was refused: a kind, a one-line reason, and pydantic's errors if any."""

    kind: str
    reason: str
    errors: tuple[dict[str, str], ...] = ()


_RULE_ERRORS = (
    "greater_than",
    "greater_than_equal",
    "less_than_equal",
    "finite_number",
    "value_error",
)


def _describe(exc: ValidationError) -> tuple[str, tuple[dict[str, str], ...]]:
    errors = tuple(
        {"loc": ".".join(str(p) for p in e["loc"]) or "<root>", "type": e["type"], "msg": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    )
    reason = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
    if len(errors) > 5:
        reason += f"; and {len(errors) - 5} more"
    return reason, errors


def _invalid(exc: ValidationError) -> Rejection:
    """The Rejection of a record that failed the contract: ``rule`` or ``schema``, see above."""
    reason, errors = _describe(exc)
    kind = "rule" if all(e["type"] in _RULE_ERRORS for e in errors) else "schema"
    return Rejection(kind, reason, errors)


class Decoder:
    """Decode and validate transactions against the contract and the worker's rules.

    ``required_signals`` are producer signals an event must carry (present, not null, finite):
    those of ``features.signals`` when ``features.signal_missing`` is ``reject``
    (:meth:`from_settings`). An event without one is a ``schema`` dead letter naming the signal.

    >>> d = Decoder(max_bytes=1024)
    >>> d.decode(b"not json").kind
    'not_json'
    """

    __slots__ = ("max_bytes", "max_future_skew_s", "min_event_ts", "required_signals")

    def __init__(
        self,
        max_bytes: int = 64 * 1024,
        max_future_skew_s: float = 86_400.0,
        min_event_time: datetime | None = None,
        required_signals: tuple[str, ...] = (),
    ) -> None:
        self.max_bytes = max_bytes
        self.max_future_skew_s = max_future_skew_s
        self.min_event_ts = min_event_time.timestamp() if min_event_time else 946_684_800.0
        self.required_signals = tuple(required_signals)

    @classmethod
    def from_settings(cls, settings: Settings) -> Decoder:
        """The decoder of a worker or a replay with ``settings``: size, clock and signal rules."""
        f = settings.features
        return cls(
            max_bytes=settings.max_event_bytes,
            max_future_skew_s=settings.max_future_skew_s,
            min_event_time=settings.min_event_time,
            required_signals=f.signals if f.signal_missing == "reject" else (),
        )

    def decode(self, value: bytes | None, now: float | None = None) -> Transaction | Rejection:
        """Return the Transaction in ``value``, or the Rejection that explains why not."""
        obj = parse_object(value, self.max_bytes)
        if type(obj) is Rejection:
            return obj
        try:
            txn = Transaction.model_validate(obj)
        except ValidationError as exc:
            return _invalid(exc)
        except RecursionError:
            return Rejection("schema", "structure nested too deeply")
        ts = txn.event_ts
        if ts < self.min_event_ts:
            return Rejection("rule", f"event_time: {txn.event_time.isoformat()} is before the accepted range")
        if ts > (now if now is not None else time.time()) + self.max_future_skew_s:
            return Rejection("rule", f"event_time: {txn.event_time.isoformat()} is too far in the future")
        if self.required_signals:
            return _missing_signal(txn, self.required_signals) or txn
        return txn


def _missing_signal(txn: Transaction, required: tuple[str, ...]) -> Rejection | None:
    """The Rejection of an event that lacks one of the ``required`` signals, or None."""
    signals = txn.signals or {}
    for name in required:
        if name not in signals:
            why = "is missing"
        elif (v := signals[name]) is None:
            why = "is null"
        elif not math.isfinite(v):  # the contract refuses these already; kept as a guard
            why = "is not a finite number"
        else:
            continue
        msg = f"required signal {why} (features.signal_missing=reject)"
        loc = f"signals.{name}"
        return Rejection("schema", f"{loc}: {msg}", ({"loc": loc, "type": "missing", "msg": msg},))
    return None


def parse_object(value: bytes | None, max_bytes: int) -> dict[str, Any] | Rejection:
    """The JSON object in ``value``, or why it is not one (null, too large, not JSON, not an object)."""
    if value is None:
        return Rejection("not_json", "empty record (null value)")
    if len(value) > max_bytes:
        return Rejection("oversized", f"record is {len(value)} bytes, above the {max_bytes} limit")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Rejection("not_json", f"not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return Rejection("not_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def decode_label(value: bytes | None, max_bytes: int = 64 * 1024) -> Label | Rejection:
    """Return the Label in ``value``, or the Rejection that explains why not.

    Classified as transactions are (``rule`` or ``schema``, see ``_RULE_ERRORS``).

    >>> decode_label(b'{"transaction_id": "t1", "is_fraud": 1, "label_time": "2026-01-31T12:00:00Z"}').is_fraud
    True
    >>> decode_label(b'{"transaction_id": "t1", "is_fraud": 2, "label_time": "2026-01-31T12:00:00Z"}').reason
    'is_fraud: must be true, false, 0 or 1, not another integer'
    """
    obj = parse_object(value, max_bytes)
    if type(obj) is Rejection:
        return obj
    try:
        return Label.model_validate(obj)
    except ValidationError as exc:
        return _invalid(exc)
    except RecursionError:
        return Rejection("schema", "structure nested too deeply")
