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
