"""Turn a record's bytes into a valid Transaction, or into the reason it is a dead letter.

This is the data layer's gate: orjson decodes, the pydantic contract validates, and a few rules
that need context (size, clock skew) run here. Nothing raises: a bad record yields a
:class:`Rejection`, which the worker sends to the dead-letter topic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from stream_scorer.events import Label, Transaction


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

    >>> d = Decoder(max_bytes=1024)
    >>> d.decode(b"not json").kind
    'not_json'
    """

    __slots__ = ("max_bytes", "max_future_skew_s", "min_event_ts")

    def __init__(
        self,
        max_bytes: int = 64 * 1024,
        max_future_skew_s: float = 86_400.0,
        min_event_time: datetime | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_future_skew_s = max_future_skew_s
        self.min_event_ts = min_event_time.timestamp() if min_event_time else 946_684_800.0

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
        return txn


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
