"""The event contract: schemas in sync with the models, examples valid, rules enforced."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from stream_scorer import schemas
from stream_scorer.events import CONTRACT, Label, Transaction

EXAMPLES = Path(schemas.SCHEMA_DIR) / "examples"
VALID = {
    "transaction_id": "t1",
    "event_time": "2026-01-31T12:00:00Z",
    "card_id": "c1",
    "merchant_id": "m1",
    "amount": 12.5,
    "currency": "EUR",
}


def test_schema_files_match_their_models():
    assert schemas.stale() == [], "run `stream-scorer schemas --write` and commit the result"


def test_a_changed_model_makes_its_schema_stale(tmp_path):
    schemas.write_all(tmp_path)
    (tmp_path / "score.json").write_text('{"title": "Score"}\n')
    assert schemas.stale(tmp_path) == ["score"]


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_each_example_is_valid_against_schema_and_model(name):
    example = json.loads((EXAMPLES / f"{name}.json").read_text())
    schema = json.loads((schemas.SCHEMA_DIR / f"{name}.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(example)
    CONTRACT[name].model_validate(example)


def test_unknown_fields_are_accepted_and_dropped():
    txn = Transaction.model_validate({**VALID, "loyalty_tier": "gold", "nested": {"a": 1}})
    assert not hasattr(txn, "loyalty_tier") and "loyalty_tier" not in txn.model_dump()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", -0.01),
        ("amount", -1.0),
        ("amount", "12.5"),
        ("amount", float("inf")),
        ("amount", float("nan")),
        ("currency", "ZZZ"),
        ("currency", "eur"),
        ("event_time", "2026-01-31T12:00:00"),  # no zone
        ("event_time", "2026-01-31"),
        ("event_time", 1767225600),
        ("transaction_id", ""),
        ("card_id", "x" * 129),
        ("is_fraud", "yes"),
        ("mcc", "54"),
        ("country", "fra"),
    ],
)
def test_contract_rules_reject(field, value):
    with pytest.raises(ValidationError) as exc:
        Transaction.model_validate({**VALID, field: value})
    assert exc.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize("field", ["transaction_id", "event_time", "card_id", "merchant_id", "amount", "currency"])
def test_required_fields(field):
    with pytest.raises(ValidationError):
        Transaction.model_validate({k: v for k, v in VALID.items() if k != field})


def test_timestamps_keep_their_zone():
    txn = Transaction.model_validate({**VALID, "event_time": "2026-01-31T13:00:00+01:00"})
    assert txn.event_time.timestamp() == Transaction.model_validate(VALID).event_time.timestamp()


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (1, True), (0, False)])
def test_labels_as_the_world_writes_them(value, expected):
    assert Transaction.model_validate({**VALID, "is_fraud": value}).is_fraud is expected
    label = {"transaction_id": "t1", "is_fraud": value, "label_time": "2026-01-31T12:00:00Z"}
    assert Label.model_validate(label).is_fraud is expected


@pytest.mark.parametrize("value", [2, -1, 0.5, 1.0, "yes", "true", "1", None, [1]])
def test_other_label_values_are_refused_with_a_reason(value):
    label = {"transaction_id": "t1", "is_fraud": value, "label_time": "2026-01-31T12:00:00Z"}
    with pytest.raises(ValidationError) as exc:
        Label.model_validate(label)
    assert "is_fraud" in str(exc.value)
    if value is not None:
        with pytest.raises(ValidationError):
            Transaction.model_validate({**VALID, "is_fraud": value})


def test_zero_amounts_are_accepted_and_scored():
    from stream_scorer.features.engine import FeatureEngine

    txn = Transaction.model_validate({**VALID, "amount": 0})
    assert txn.amount == 0.0
    eng = FeatureEngine()
    xs = [eng.update(txn) for _ in range(3)]  # a card of zero amounts has no habit to divide by
    assert all(math.isfinite(v) for x in xs for v in x.values())
    assert xs[-1]["card_amount_ratio"] == 0.0 and xs[-1]["card_amount_z"] == 0.0


@pytest.mark.parametrize("amount", [0, 0.0, 0.01, 1e9])
def test_amounts_from_zero_to_a_billion_are_accepted(amount):
    assert Transaction.model_validate({**VALID, "amount": amount}).amount == amount


@pytest.mark.parametrize("amount", [-0.01, -1, 1e9 + 1, 1e12, float("inf"), float("-inf"), float("nan"), True])
def test_negative_huge_or_non_finite_amounts_are_refused(amount):
    with pytest.raises(ValidationError) as exc:
        Transaction.model_validate({**VALID, "amount": amount})
    assert exc.value.errors()[0]["loc"] == ("amount",)


def test_a_score_may_carry_a_zero_amount():
    from stream_scorer.events import Score

    score = {"transaction_id": "t1", "card_id": "c1", "event_time": "2026-01-31T12:00:00Z",
             "score": 0.1, "band": "approve", "model_version": "m/1", "latency_ms": 0.2}
    assert Score.model_validate({**score, "amount": 0}).amount == 0
    with pytest.raises(ValidationError):
        Score.model_validate({**score, "amount": -1})


@pytest.mark.parametrize("value", [2, 0.5, 1.0, 0.0, "yes", "true", "1"])
def test_a_refused_label_says_what_a_label_is(value):
    with pytest.raises(ValidationError) as exc:
        Transaction.model_validate({**VALID, "is_fraud": value})
    (err,) = exc.value.errors()
    assert err["loc"] == ("is_fraud",) and "must be true, false, 0 or 1" in err["msg"]
    assert repr(value) not in err["msg"]  # the value itself is never quoted


def _schema_validator(name):
    schema = json.loads((schemas.SCHEMA_DIR / f"{name}.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_the_schema_files_say_what_a_label_is():
    label = {"transaction_id": "t1", "label_time": "2026-01-31T12:00:00Z"}
    for name, base in (("transaction", VALID), ("label", label)):
        validator = _schema_validator(name)
        for ok in (True, False, 0, 1):
            validator.validate({**base, "is_fraud": ok})
        for bad in (2, -1, 0.5, "true", "1", "yes", [1]):
            assert not validator.is_valid({**base, "is_fraud": bad}), (name, bad)
    # JSON Schema cannot tell 1.0 from 1 (the same number to it); the model refuses the float.
    assert _schema_validator("transaction").is_valid({**VALID, "is_fraud": 1.0})
    with pytest.raises(ValidationError):
        Transaction.model_validate({**VALID, "is_fraud": 1.0})


@pytest.mark.parametrize(
    "signals",
    [
        {},
        {"device_risk": 0.12, "three_ds": 1, "upstream_score": None},
        {"x" * 64: -3.5, "n": 0},
        {f"s{i}": float(i) for i in range(256)},
    ],
)
def test_signals_are_numbers_or_null(signals):
    txn = Transaction.model_validate_json(json.dumps({**VALID, "signals": signals}))
    assert txn.signals == {k: (None if v is None else float(v)) for k, v in signals.items()}
    assert all(v is None or type(v) is float for v in txn.signals.values())
    assert _schema_validator("transaction").is_valid({**VALID, "signals": signals})


def test_signals_are_optional():
    assert Transaction.model_validate(VALID).signals is None
    assert Transaction.model_validate({**VALID, "signals": None}).signals is None


@pytest.mark.parametrize(
    "signals",
    [
        {"device_risk": True},
        {"device_risk": False},
        {"device_risk": "0.3"},
        {"device_risk": {"value": 0.3}},
        {"device_risk": [0.3]},
        {"": 1.0},
        {"x" * 65: 1.0},
        {f"s{i}": 1.0 for i in range(257)},
        [0.3],
        "device_risk=0.3",
        0.3,
    ],
)
def test_other_signals_are_schema_errors(signals):
    record = {**VALID, "signals": signals}
    with pytest.raises(ValidationError) as exc:
        Transaction.model_validate_json(json.dumps(record))
    assert all(e["loc"][0] == "signals" for e in exc.value.errors())
    assert not _schema_validator("transaction").is_valid(record)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_signal_is_refused(value):
    with pytest.raises(ValidationError) as exc:
        Transaction.model_validate({**VALID, "signals": {"device_risk": value}})
    assert exc.value.errors()[0]["loc"] == ("signals", "device_risk")
