"""The event contract: pydantic models of every record stream-scorer reads or writes.

The JSON Schema files in ``schemas/`` are generated from these models (``stream-scorer schemas
--write``) and a test fails when a file no longer matches its model, so the two never drift apart.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from stream_scorer.currencies import ISO_4217

SCHEMA_VERSION = 1

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def _rfc3339(value: Any) -> Any:
    """Accept only RFC 3339 strings with a zone: no epoch numbers, no bare dates."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 timestamp with a zone, e.g. 2026-01-31T12:00:00Z")
    return value


def _currency(value: str) -> str:
    if value not in ISO_4217:
        raise ValueError(f"unknown ISO 4217 currency code {value!r}")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


_NOT_A_LABEL = {int: "another integer", float: "a float", str: "a string", list: "an array",
                dict: "an object", type(None): "null"}


def _label(value: Any) -> Any:
    """Accept a label as the world writes it: JSON ``true``/``false`` or the integers 0 and 1.

    Floats are refused, ``1.0`` and ``0.0`` included: a label is a class, not a probability, and a
    feed that writes ``0.5`` or ``1.0`` is confused about what it sends. (JSON Schema cannot tell
    ``1.0`` from ``1``, so the schema files let it through; the worker does not.) Strings
    (``"true"``, ``"1"``, ``"yes"``) are refused too. The message never quotes the value.

    >>> _label(1), _label(0), _label(True)
    (True, False, True)
    """
    if value is True or value is False:
        return value
    if type(value) is int and value in (0, 1):
        return value == 1
    raise PydanticCustomError(
        "label_value",
        "must be true, false, 0 or 1, not {what}",
        {"what": _NOT_A_LABEL.get(type(value), "a " + type(value).__name__)},
    )


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Currency = Annotated[
    str,
    AfterValidator(_currency),
    WithJsonSchema({"type": "string", "enum": sorted(ISO_4217)}),
]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
IsFraud = Annotated[
    bool,
    Field(strict=True),
    BeforeValidator(_label),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]}),
]
"""A label: ``true``/``false``, or ``1``/``0`` (read as booleans); nothing else, floats included."""
SignalName = Annotated[str, Field(min_length=1, max_length=64)]
SignalValue = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A producer signal's value: a finite JSON number (an integer is read as a float); never a boolean."""
Band = Literal["approve", "review", "decline"]


class Transaction(BaseModel):
    """A card transaction, as producers write it to the transactions topic.

    Unknown extra fields are accepted and dropped: they never reach the features.

    >>> Transaction.model_validate({"transaction_id": "t1", "event_time": "2026-01-31T12:00:00Z",
    ...     "card_id": "c1", "merchant_id": "m1", "amount": 12.5, "currency": "EUR"}).amount
    12.5
    """

    model_config = ConfigDict(extra="ignore", frozen=True, title="Transaction")

    transaction_id: Id
    event_time: Timestamp
    card_id: Id
    merchant_id: Id
    amount: Annotated[
        float, Field(ge=0, le=1e9, strict=True, allow_inf_nan=False), AfterValidator(_finite)
    ] = Field(description="Zero is a valid amount (authorizations, card testing); never negative.")
    currency: Currency
    mcc: Annotated[str, Field(pattern=r"^[0-9]{4}$")] | None = None
    channel: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    device_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    is_fraud: IsFraud | None = Field(
        None,
        description="Inline label, for simulations and backtests: true, false, 0 or 1 (floats such as"
        " 1.0 are refused).",
    )
    signals: dict[SignalName, SignalValue | None] | None = Field(
        None,
        max_length=256,
        description="Numeric signals of the producer (device risk, 3-D Secure result, an upstream"
        " score): up to 256 names of 1 to 64 characters, each a finite number or null (null ="
        " missing). Which signals reach the model is the `features.signals` setting; a missing"
        " (null or absent) one is imputed or dead-lettered by `features.signal_missing`.",
    )

    @cached_property
    def event_ts(self) -> float:
        """``event_time`` in epoch seconds, computed once: decoding, scoring and the features
        all read it (not a field: never serialized)."""
        return self.event_time.timestamp()


class Label(BaseModel):
    """The outcome of a transaction (chargeback or confirmed genuine), known some time later.

    Producers key labels by ``card_id`` so that a label reaches the worker that owns its card.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, title="Label")

    transaction_id: Id
    is_fraud: IsFraud = Field(description="true, false, 0 or 1 (floats such as 1.0 are refused).")
    label_time: Timestamp
    card_id: Id | None = None


class ReasonCode(BaseModel):
    """A named feature and how much it pushed this score up (positive) or down."""

    model_config = ConfigDict(extra="forbid", title="ReasonCode")

    feature: str
    contribution: Annotated[float, Field(allow_inf_nan=False)]


class Score(BaseModel):
    """The verdict on one transaction, keyed by card on the scores topic."""

    model_config = ConfigDict(extra="forbid", title="Score")

    schema_version: Literal[1] = 1
    transaction_id: Id
    card_id: Id
    event_time: Timestamp
    score: Probability = Field(description="Champion's probability that the transaction is fraud.")
    band: Band
    model_version: str
    latency_ms: Annotated[float, Field(ge=0)] = Field(
        description="Processing time in the worker, from the batch's arrival to this record."
    )
    reason_codes: list[ReasonCode] = Field(default_factory=list)
    challenger_score: Probability | None = None
    challenger_version: str | None = None
    label: bool | None = Field(None, description="The inline label, when the event carried one.")
    features: dict[str, Annotated[float, Field(allow_inf_nan=False)]] | None = None
    amount: Annotated[float, Field(ge=0)] | None = None
    merchant_id: Id | None = None


class DriftAlert(BaseModel):
    """A drift or quality alert for ops dashboards, keyed by ``detector:subject``."""

    model_config = ConfigDict(extra="forbid", title="DriftAlert")

    schema_version: Literal[1] = 1
    alert_id: Id
    kind: Literal["performance", "prediction", "data", "label_rate", "disagreement"]
    detector: str
    subject: str = Field(description="The feature or metric the alert is about.")
    severity: Literal["info", "warning", "critical"]
    status: Literal["firing", "resolved"]
    event_time: Timestamp = Field(description="Event time of the stream when it was detected.")
    detected_at: Timestamp = Field(description="Wall-clock time when it was detected.")
    statistic: Annotated[float, Field(allow_inf_nan=False)]
    threshold: Annotated[float, Field(allow_inf_nan=False)]
    window: str
    reference: str
    message: str = ""


class DeadLetter(BaseModel):
    """A record that could not be scored, with its original bytes and the reason."""

    model_config = ConfigDict(extra="forbid", title="DeadLetter")

    schema_version: Literal[1] = 1
    source_topic: str
    source_partition: Annotated[int, Field(ge=0)]
    source_offset: Annotated[int, Field(ge=0)]
    source_timestamp_ms: int | None = None
    key_b64: str | None = Field(None, description="The original key, base64.")
    payload_b64: str = Field(description="The original value, base64, byte for byte.")
    error_kind: Literal["not_json", "not_object", "schema", "rule", "oversized", "duplicate"]
    reason: str = Field(description="A readable reason, one line.")
    errors: list[dict[str, str]] = Field(default_factory=list)
    failed_at: Timestamp
    worker: str


CONTRACT: dict[str, type[BaseModel]] = {
    "transaction": Transaction,
    "label": Label,
    "score": Score,
    "drift_alert": DriftAlert,
    "dead_letter": DeadLetter,
}
