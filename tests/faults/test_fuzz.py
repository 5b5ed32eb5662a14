"""Hostile input: whatever bytes arrive, each bad record lands in the DLQ with a reason, the worker
never crashes, and the valid events around them are scored."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_scorer.events import DeadLetter
from stream_scorer.simulate import Simulator, shifted_to
from tests.kafka_helpers import WorkerThread, produce, read_all

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

BASE = {
    "transaction_id": "fuzz",
    "event_time": "2026-01-01T00:00:00Z",
    "card_id": "card-fuzz",
    "merchant_id": "m-fuzz",
    "amount": 10.0,
    "currency": "EUR",
}
FIELDS = sorted(BASE)

odd_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=40
) | st.sampled_from(["\u202e", "\x00", "\ufeff", "é" * 300, "𝔣𝔯𝔞𝔲𝔡", "\\u0000", " ", "x" * 200])  # noqa: RUF001 (odd unicode on purpose)
wrong_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | odd_text
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(odd_text, st.integers(), max_size=2)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "0", "-0.0", "9" * 400])
)
bad_times = st.sampled_from(
    [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "2026-13-45T25:61:61Z",
        "2026-01-01T00:00:00",
        "2026-01-01",
        "yesterday",
        "",
        "2026-01-01T00:00:00+25:00",
    ]
)


def _json(obj: object) -> bytes:
    # The stdlib writes NaN, Infinity and integers of any size, as a hostile producer might.
    return json.dumps(obj, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


# Bytes, or a dict to serialize with an id of its own (so that only true repeats are duplicates).
hostile = st.one_of(
    st.binary(min_size=0, max_size=200),  # not JSON at all
    odd_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.builds(lambda k, v: {**BASE, k: v}, st.sampled_from(FIELDS), wrong_values),  # wrong types
    st.builds(lambda t: {**BASE, "event_time": t}, bad_times),  # ancient, far future, malformed
    st.sampled_from(FIELDS).map(lambda k: {f: v for f, v in BASE.items() if f != k}),  # missing field
    st.integers(1_100, 3_000).map(lambda d: b"[" * d + b"]" * d),  # deep nesting
    st.integers(1_100, 3_000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d),
    st.just({**BASE, "card_id": "c" * 100_000}),  # huge strings
    st.just({**BASE, "amount": 10**400}),  # huge numbers
    st.just(_json([BASE, BASE])),
    st.just(b"null"),
)


def _bytes(i: int, p: bytes | dict) -> bytes:
    if isinstance(p, bytes):
        return p
    if p.get("transaction_id") == "fuzz":
        p = {**p, "transaction_id": f"fuzz-{i}"}
    return _json(p)


RESULTS: dict[str, int] = {"tried": 0, "in_dlq": 0, "crashes": 0}


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.lists(hostile, min_size=150, max_size=250))
def test_hostile_records_go_to_the_dlq_and_valid_ones_are_scored(make_settings, raw):
    s = make_settings(max_event_bytes=64 * 1024)
    payloads = [_bytes(i, p) for i, p in enumerate(raw)]
    good = shifted_to(Simulator(seed=len(payloads)).take(300), datetime.now(UTC) - timedelta(hours=2))
    # A valid event repeated under the same transaction id is hostile too (a duplicate).
    duplicate = orjson.dumps(good[0])
    records: list[tuple[bytes | None, bytes]] = []
    for i, e in enumerate(good):
        records.append((e["card_id"].encode(), orjson.dumps(e)))
        if i < len(payloads):
            records.append((b"fuzz", payloads[i]))
    records.append((good[0]["card_id"].encode(), duplicate))
    hostile_sent = [*payloads[: len(good)], duplicate]
    produce(s, records)
    w = WorkerThread(s).start()
    try:
        w.wait_scored(len(records), timeout=180)
    finally:
        w.stop()
    RESULTS["tried"] += len(hostile_sent)
    RESULTS["crashes"] += int(w.error is not None)
    assert w.error is None
    dead = read_all(s, s.topics.dlq, expected=1)
    in_dlq: list[bytes] = []
    for m in dead:
        d = DeadLetter.model_validate_json(m.value())
        assert d.reason and d.error_kind
        in_dlq.append(base64.b64decode(d.payload_b64))
    scores = read_all(s, s.topics.scores, expected=len(good))
    scored_ids = [orjson.loads(m.value())["transaction_id"] for m in scores]
    # Every valid event is scored once; the repeat of one is a dead letter.
    assert {e["transaction_id"] for e in good} <= set(scored_ids)
    assert len(scored_ids) == len(set(scored_ids)), "no transaction scored twice"
    assert duplicate in in_dlq
    # Every hostile record is accounted for: in the DLQ byte for byte, or (a few random ones that
    # happen to be valid transactions) scored.
    lucky = len(scored_ids) - len(good)
    assert not Counter(in_dlq) - Counter(hostile_sent), "the DLQ holds only what was sent"
    assert len(in_dlq) + lucky == len(hostile_sent), "none is lost"
    assert len(in_dlq) >= 0.8 * len(hostile_sent)
    RESULTS["in_dlq"] += len(in_dlq)
    print(f"fuzz: {RESULTS}")
