"""Dead-letter records keep the input byte for byte, where it came from, and why."""

from __future__ import annotations

import base64

import orjson

from stream_scorer.dead_letters import MAX_REASON_HEADER_BYTES, dead_letter
from stream_scorer.decode import Rejection
from tests.fakes import Msg


def test_the_record_keeps_the_input_and_says_why():
    msg = Msg("transactions", 2, 41, b"\xff\x00 not json", b"card-1", _timestamp=(1, 1_700_000_000_123))
    value, headers = dead_letter(msg, Rejection("schema", "amount: not a number", ({"loc": "amount"},)), "w1")
    rec = orjson.loads(value)
    assert base64.b64decode(rec["payload_b64"]) == b"\xff\x00 not json"
    assert base64.b64decode(rec["key_b64"]) == b"card-1"
    assert (rec["source_topic"], rec["source_partition"], rec["source_offset"]) == ("transactions", 2, 41)
    assert rec["source_timestamp_ms"] == 1_700_000_000_123 and rec["worker"] == "w1"
    assert (rec["error_kind"], rec["reason"], rec["errors"]) == ("schema", "amount: not a number", [{"loc": "amount"}])
    assert rec["failed_at"].endswith("Z") or "+00:00" in rec["failed_at"]
    assert headers == [("reason", b"amount: not a number"), ("error_kind", b"schema")]


def test_no_key_no_value_no_timestamp_and_a_long_reason():
    msg = Msg("labels", 0, 7, None, None, _timestamp=(0, 0))
    value, headers = dead_letter(msg, Rejection("rule", "x" * 5000), "w")
    rec = orjson.loads(value)
    assert rec["key_b64"] is None and rec["payload_b64"] == "" and rec["source_timestamp_ms"] is None
    assert rec["reason"] == "x" * 5000 and len(dict(headers)["reason"]) == MAX_REASON_HEADER_BYTES
