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


# -- producer signals the model needs: features.signal_missing=reject ----------------------------

REQUIRED = ("device_risk", "tds")


@pytest.mark.parametrize(
    ("signals", "name", "why"),
    [
        (None, "device_risk", "is missing"),
        ({}, "device_risk", "is missing"),
        ({"tds": 1.0}, "device_risk", "is missing"),
        ({"device_risk": 0.3}, "tds", "is missing"),
        ({"device_risk": None, "tds": 1.0}, "device_risk", "is null"),
        ({"device_risk": 0.3, "tds": None}, "tds", "is null"),
    ],
)
def test_a_missing_required_signal_is_a_dead_letter_naming_it(signals, name, why):
    event = {**GOOD} if signals is None else {**GOOD, "signals": signals}
    out = Decoder(required_signals=REQUIRED).decode(orjson.dumps(event), NOW)
    assert isinstance(out, Rejection) and out.kind == "schema"
    assert out.reason.startswith(f"signals.{name}: required signal {why}")
    assert "signal_missing=reject" in out.reason
    assert out.errors[0]["loc"] == f"signals.{name}"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_signal_is_a_dead_letter_naming_it(value):
    """JSON has no NaN or infinity; Python's json writes them, orjson refuses to read them, and the
    contract refuses a non-finite number: always a dead letter, with or without reject."""
    raw = json.dumps({**GOOD, "signals": {"tds": 1.0}})[:-2] + f', "device_risk": {value}}}}}'
    for decoder in (Decoder(), Decoder(required_signals=REQUIRED)):
        out = decoder.decode(raw.encode(), NOW)
        assert isinstance(out, Rejection), raw


def test_a_non_finite_signal_that_reaches_the_check_is_refused_by_name():
    """The contract refuses NaN already; the decoder's own check is a second guard."""
    from stream_scorer.decode import _missing_signal

    txn = Transaction.model_validate({**GOOD, "signals": {"device_risk": 0.1, "tds": 1.0}})
    assert _missing_signal(txn, REQUIRED) is None
    txn.signals["tds"] = float("nan")  # type: ignore[index]
    out = _missing_signal(txn, REQUIRED)
    assert out is not None and out.reason.startswith("signals.tds: required signal is not a finite")


def test_required_signals_present_pass_and_others_are_free():
    event = {**GOOD, "signals": {"device_risk": 0.0, "tds": -1.0, "extra": None}}
    out = Decoder(required_signals=REQUIRED).decode(orjson.dumps(event), NOW)
    assert isinstance(out, Transaction) and out.signals == event["signals"]


def test_the_decoder_of_settings_requires_signals_only_with_reject():
    from stream_scorer.backtest import decoder_of
    from stream_scorer.config import Settings
    from stream_scorer.features.settings import FeatureSettings

    impute = Settings(features=FeatureSettings(signals=REQUIRED))
    reject = Settings(features=FeatureSettings(signals=REQUIRED, signal_missing="reject"))
    assert Decoder.from_settings(impute).required_signals == ()
    assert Decoder.from_settings(reject).required_signals == REQUIRED
    assert decoder_of(reject).required_signals == REQUIRED
    d = Decoder.from_settings(reject)
    assert (d.max_bytes, d.max_future_skew_s) == (reject.max_event_bytes, reject.max_future_skew_s)
    assert isinstance(Decoder.from_settings(impute).decode(orjson.dumps(GOOD), NOW), Transaction)
    assert isinstance(d.decode(orjson.dumps(GOOD), NOW), Rejection)
