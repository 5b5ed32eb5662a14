"""The data layer's gate: every bad record becomes a Rejection with a kind and a reason."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_scorer.decode import Decoder, Rejection
from stream_scorer.events import Transaction

GOOD = {
    "transaction_id": "t1",
    "event_time": "2026-01-31T12:00:00Z",
    "card_id": "c1",
    "merchant_id": "m1",
    "amount": 12.5,
    "currency": "EUR",
}
NOW = datetime(2026, 2, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("payload", "kind", "words"),
    [
        (None, "not_json", "null"),
        (b"", "not_json", "JSON"),
        (b"\xff\xfe", "not_json", "JSON"),
        (b'{"amount": NaN}', "not_json", "JSON"),
        (b'{"amount": 1e999}', "not_json", "JSON"),
        (b"[" * 2000 + b"]" * 2000, "not_json", "JSON"),
        (b"[1,2]", "not_object", "list"),
        (b'"text"', "not_object", "str"),
        (orjson.dumps({**GOOD, "amount": -1}), "rule", "amount"),
        (orjson.dumps({**GOOD, "amount": "12"}), "schema", "amount"),
        (orjson.dumps({**GOOD, "currency": "XXY"}), "rule", "currency"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "card_id"}), "schema", "card_id"),
        (orjson.dumps({**GOOD, "event_time": "1999-12-31T00:00:00Z"}), "rule", "before"),
        (orjson.dumps({**GOOD, "event_time": "2026-03-01T00:00:00Z"}), "rule", "future"),
        (orjson.dumps({**GOOD, "pad": "x" * 5000}), "oversized", "limit"),
    ],
)
def test_rejections_have_kind_and_reason(payload, kind, words):
    out = Decoder(max_bytes=4096).decode(payload, NOW)
    assert isinstance(out, Rejection)
    assert out.kind == kind
    assert words in out.reason


def test_a_good_record_decodes():
    out = Decoder().decode(orjson.dumps(GOOD), NOW)
    assert isinstance(out, Transaction) and out.amount == 12.5


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_decode_never_raises_on_arbitrary_bytes(data):
    out = Decoder().decode(data, time.time())
    assert isinstance(out, (Transaction, Rejection))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(GOOD)), json_values, max_size=6))
def test_decode_never_raises_on_wrong_types(partial):
    out = Decoder().decode(json.dumps({**GOOD, **partial}).encode(), NOW)
    if isinstance(out, Rejection):
        assert out.reason and out.kind in {"schema", "rule"}


@pytest.mark.parametrize("value", [2, 0.5, "yes"])
def test_a_label_value_other_than_0_1_true_false_is_a_dead_letter(value):
    from stream_scorer.decode import decode_label

    label = {"transaction_id": "t1", "is_fraud": value, "label_time": "2026-01-31T12:00:00Z"}
    out = decode_label(orjson.dumps(label))
    assert isinstance(out, Rejection) and "is_fraud" in out.reason
    txn = Decoder().decode(orjson.dumps({**GOOD, "is_fraud": value}), NOW)
    assert isinstance(txn, Rejection) and "is_fraud" in txn.reason


LABEL = {"transaction_id": "t1", "is_fraud": True, "label_time": "2026-01-31T12:00:00Z"}


@pytest.mark.parametrize(("value", "expected"), [(0, False), (1, True), (False, False), (True, True)])
def test_labels_0_and_1_decode_as_booleans(value, expected):
    from stream_scorer.decode import decode_label

    label = decode_label(orjson.dumps({**LABEL, "is_fraud": value}))
    assert not isinstance(label, Rejection) and label.is_fraud is expected
    txn = Decoder().decode(orjson.dumps({**GOOD, "is_fraud": value}), NOW)
    assert isinstance(txn, Transaction) and txn.is_fraud is expected


@pytest.mark.parametrize("value", [2, -1, 0.5, 1.0, "yes", "true", "1", None, {}])
def test_a_wrong_label_is_a_schema_dead_letter_naming_is_fraud(value):
    """The same kind and reason for an inline label and for a Label record."""
    from stream_scorer.decode import decode_label

    label = decode_label(orjson.dumps({**LABEL, "is_fraud": value}))
    assert isinstance(label, Rejection)
    assert label.kind == "schema" and label.reason.startswith("is_fraud: must be true, false, 0 or 1")
    assert [e["loc"] for e in label.errors] == ["is_fraud"]
    if value is None:
        return  # a transaction's inline label is optional: null is no label
    txn = Decoder().decode(orjson.dumps({**GOOD, "is_fraud": value}), NOW)
    assert isinstance(txn, Rejection)
    assert (txn.kind, txn.reason) == (label.kind, label.reason)


def test_labels_are_classified_as_transactions_are():
    from stream_scorer.decode import decode_label

    bad_time = decode_label(orjson.dumps({**LABEL, "label_time": "2026-01-31"}))
    assert isinstance(bad_time, Rejection) and bad_time.kind == "rule" and "label_time" in bad_time.reason
    missing = decode_label(orjson.dumps({k: v for k, v in LABEL.items() if k != "is_fraud"}))
    assert isinstance(missing, Rejection) and missing.kind == "schema" and "is_fraud" in missing.reason


def test_zero_amounts_decode_and_negative_or_huge_ones_are_rule_dead_letters():
    out = Decoder().decode(orjson.dumps({**GOOD, "amount": 0}), NOW)
    assert isinstance(out, Transaction) and out.amount == 0.0
    for amount in (-0.01, 1e9 + 1):
        out = Decoder().decode(orjson.dumps({**GOOD, "amount": amount}), NOW)
        assert isinstance(out, Rejection) and out.kind == "rule" and out.reason.startswith("amount")


@pytest.mark.parametrize(
    ("signals", "kind"),
    [({"device_risk": "high"}, "schema"), ({"device_risk": True}, "schema"), ({"": 1}, "schema")],
)
def test_bad_signals_are_dead_letters(signals, kind):
    out = Decoder().decode(orjson.dumps({**GOOD, "signals": signals}), NOW)
    assert isinstance(out, Rejection) and out.kind == kind and out.reason.startswith("signals")


def test_signals_decode():
    out = Decoder().decode(orjson.dumps({**GOOD, "signals": {"device_risk": 0.7, "score": None}}), NOW)
    assert isinstance(out, Transaction) and out.signals == {"device_risk": 0.7, "score": None}
