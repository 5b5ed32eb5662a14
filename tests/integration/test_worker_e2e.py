"""The live path over a real broker: every event scored once, bad ones dead-lettered, restarts resume."""

from __future__ import annotations

import base64
import time
from collections import Counter

import orjson
import pytest

from stream_scorer.events import DeadLetter, Score
from stream_scorer.simulate import Simulator, shifted_to
from tests.kafka_helpers import WORKER_METRICS, WorkerThread, produce, produce_events, read_all, reference_features

pytestmark = [pytest.mark.integration]


def _recent(n: int, seed: int) -> list[dict]:
    from datetime import UTC, datetime, timedelta

    return shifted_to(Simulator(seed=seed).take(n), datetime.now(UTC) - timedelta(hours=12))


@pytest.mark.slow
def test_ten_thousand_events_give_ten_thousand_scores(make_settings):
    settings = make_settings()
    events = _recent(10_000, seed=1)
    w = WorkerThread(settings).start()
    produce_events(settings, events)
    w.wait_scored(10_000)
    import urllib.request

    base = f"http://127.0.0.1:{w.worker.server.port}"
    assert urllib.request.urlopen(f"{base}/readyz").status == 200
    assert urllib.request.urlopen(f"{base}/healthz").status == 200
    # Gauges are refreshed by the worker's own loop every few seconds (never from another thread).
    deadline = time.monotonic() + 20
    while True:
        text = urllib.request.urlopen(f"{base}/metrics").read().decode()
        missing = [name for name in WORKER_METRICS if name not in text]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, missing
    assert "stream_scorer_scores_produced_total 10000.0" in text
    w.stop()
    msgs = read_all(settings, settings.topics.scores, expected=10_000)
    ids = Counter(orjson.loads(m.value())["transaction_id"] for m in msgs)
    assert set(ids) == {e["transaction_id"] for e in events}
    assert len(msgs) == 10_000 and max(ids.values()) == 1
    # Scores are keyed by card and valid against the contract.
    for m in msgs[:500]:
        score = Score.model_validate_json(m.value())
        assert m.key() == score.card_id.encode()
    assert w.worker.stats.dead_letters == 0
    assert w.worker.stats.learned == 10_000


def test_malformed_events_go_to_the_dlq_with_their_reason(make_settings):
    settings = make_settings(max_event_bytes=4096)
    good = _recent(200, seed=2)
    base = dict(good[0], transaction_id="bad")
    bad: dict[bytes, str] = {
        b"this is not json": "not valid JSON",
        orjson.dumps(dict(base, amount=-5.0)): "amount",
        b'{"transaction_id": "x", "amount": NaN}': "not valid JSON",
        orjson.dumps(dict(base, amount="Infinity")): "amount",
        orjson.dumps(dict(base, currency="ZZZ")): "currency",
        orjson.dumps(dict(base, event_time="31/12/2025 10:00")): "event_time",
        orjson.dumps(dict(base, event_time="2026-01-01T10:00:00")): "event_time",
        orjson.dumps({k: v for k, v in base.items() if k != "card_id"}): "card_id",
        orjson.dumps(dict(base, note="x" * 5000)): "4096",
        b"[1, 2, 3]": "JSON object",
    }
    records: list[tuple[bytes | None, bytes]] = [(e["card_id"].encode(), orjson.dumps(e)) for e in good[:100]]
    records += [(b"k", payload) for payload in bad]
    records += [(e["card_id"].encode(), orjson.dumps(e)) for e in good[100:]]
    produce(settings, records)
    w = WorkerThread(settings).start()
    w.wait_scored(len(records))
    w.stop()

    dead = read_all(settings, settings.topics.dlq, expected=len(bad))
    assert len(dead) == len(bad)
    seen = {}
    for m in dead:
        dl = DeadLetter.model_validate_json(m.value())
        payload = base64.b64decode(dl.payload_b64)
        assert dl.source_topic == settings.topics.transactions
        assert dl.reason and dict(m.headers() or [])["reason"].decode() == dl.reason[:1000]
        seen[payload] = dl.reason
    assert set(seen) == set(bad), "every malformed record is in the DLQ, byte for byte"
    for payload, expect in bad.items():
        assert expect in seen[payload], (payload[:60], seen[payload])
    scores = read_all(settings, settings.topics.scores, expected=200)
    assert {orjson.loads(m.value())["transaction_id"] for m in scores} == {e["transaction_id"] for e in good}
    assert w.worker.stats.dead_letters == len(bad)


def test_a_repeated_transaction_is_refused_after_a_restart_too(make_settings):
    """The memory of recent ids is rebuilt from the input on assignment: a repeat that arrives
    after a restart is a dead letter, as it would be for a worker that never stopped."""
    settings = make_settings(dedupe_window=1_000)
    events = _recent(1_500, seed=9)
    produce_events(settings, events[:1_200])
    first = WorkerThread(settings).start()
    first.wait_scored(1_200)
    first.stop()
    # Repeats of ids the first worker scored (the window is per partition: 1,000 holds them all),
    # then new events.
    repeats = events[1_100:1_110] + events[:5]
    produce_events(settings, [*repeats, *events[1_200:]])
    second = WorkerThread(settings).start()
    second.wait_scored(300)
    deadline = time.monotonic() + 30
    while second.worker.stats.dead_letters < len(repeats) and time.monotonic() < deadline:
        time.sleep(0.1)
    second.stop()
    assert second.worker.stats.restores >= 1
    dead = read_all(settings, settings.topics.dlq, expected=len(repeats))
    letters = [DeadLetter.model_validate_json(m.value()) for m in dead]
    refused = {orjson.loads(base64.b64decode(d.payload_b64))["transaction_id"] for d in letters}
    assert refused == {e["transaction_id"] for e in repeats}
    assert {d.error_kind for d in letters} == {"duplicate"}
    assert second.worker.stats.scored == 300


def test_restarted_worker_resumes_from_committed_offsets(make_settings):
    settings = make_settings()
    events = _recent(5_000, seed=3)
    produce_events(settings, events[:3_000])
    first = WorkerThread(settings).start()
    first.wait_scored(3_000)
    first.stop()
    produce_events(settings, events[3_000:])
    second = WorkerThread(settings).start()
    second.wait_scored(2_000)
    second.stop()
    assert second.worker.stats.consumed == 2_000, "the second worker re-read nothing already committed"
    msgs = read_all(settings, settings.topics.scores, expected=5_000)
    ids = Counter(orjson.loads(m.value())["transaction_id"] for m in msgs)
    assert len(msgs) == 5_000 and set(ids) == {e["transaction_id"] for e in events}
    # The restarted worker restored its state: features equal an uninterrupted run's.
    assert second.worker.stats.restores >= 1
    reference = reference_features(settings, 5_000)
    got = {orjson.loads(m.value())["transaction_id"]: orjson.loads(m.value())["features"] for m in msgs}
    assert [t for t in got if got[t] != reference[t]] == []


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_backlog_commits_several_batches_at_once_and_each_key_once(make_settings, guarantee):
    settings = make_settings(batch_size=100, commit_interval_s=1.0, processing_guarantee=guarantee)
    events = _recent(4_000, seed=8)
    produce_events(settings, events)
    w = WorkerThread(settings).start()
    w.wait_scored(4_000)
    w.stop()
    st = w.worker.stats
    # Commits are spaced in time, not per batch: far fewer commits than batches.
    assert st.batches >= 40 and st.commits < st.batches / 4, st
    # A card changed by several batches of one commit is logged once, not once per batch.
    cards = {e["card_id"] for e in events}
    merchants = {e["merchant_id"] for e in events}
    assert st.changelog_records < len(events), st
    assert st.changelog_records >= len(cards) + len(merchants), st
    msgs = read_all(settings, settings.topics.scores, expected=4_000)
    ids = Counter(orjson.loads(m.value())["transaction_id"] for m in msgs)
    assert len(msgs) == 4_000 and max(ids.values()) == 1
    reference = reference_features(settings, 4_000)
    got = {orjson.loads(m.value())["transaction_id"]: orjson.loads(m.value())["features"] for m in msgs}
    assert [t for t in got if got[t] != reference[t]] == []
    # What the changelog holds restores the same state: a second worker continues seamlessly.
    more = _recent(4_500, seed=8)[4_000:]
    produce_events(settings, more)
    second = WorkerThread(settings).start()
    second.wait_scored(500)
    second.stop()
    assert second.worker.stats.consumed == 500
    msgs = read_all(settings, settings.topics.scores, expected=4_500)
    reference = reference_features(settings, 4_500)
    got = {orjson.loads(m.value())["transaction_id"]: orjson.loads(m.value())["features"] for m in msgs}
    assert len(got) == 4_500 and [t for t in got if got[t] != reference[t]] == []


def test_labels_topic_teaches_the_model_the_features_it_scored(make_settings):
    settings = make_settings()
    events = _recent(2_000, seed=4)
    truth = {e["transaction_id"]: e.pop("is_fraud") for e in events}
    w = WorkerThread(settings).start()
    produce_events(settings, events)
    w.wait_scored(len(events))
    assert w.worker.scorer.stats.learned == 0, "no label yet: nothing learned"
    labels = [
        (
            e["card_id"].encode(),
            orjson.dumps(
                {
                    "transaction_id": e["transaction_id"],
                    "is_fraud": truth[e["transaction_id"]],
                    "label_time": e["event_time"],
                    "card_id": e["card_id"],
                }
            ),
        )
        for e in events
    ]
    labels.append(
        (
            b"card-x",
            orjson.dumps(
                {
                    "transaction_id": "never-scored",
                    "is_fraud": True,
                    "label_time": events[0]["event_time"],
                    "card_id": "card-x",
                }
            ),
        )
    )
    labels.append((b"card-y", b'{"transaction_id": 5}'))
    produce(settings, labels, topic=settings.topics.labels)
    import time

    deadline = time.monotonic() + 120
    while w.worker.stats.labels + w.worker.stats.dead_letters < len(labels):
        assert time.monotonic() < deadline, w.worker.stats
        time.sleep(0.2)
    w.stop()
    st = w.worker.stats
    assert st.labels_applied == len(events)
    assert st.labels == len(events) + 1 and st.dead_letters == 1, "a malformed label is a dead letter"
    assert w.worker.scorer.stats.learned == len(events)
    assert w.worker.scorer.stats.labels_missed == 1, "a label for an unknown transaction is counted"


def test_worker_checkpoints_its_models_and_refuses_a_tampered_checkpoint(make_settings, tmp_path):
    from stream_scorer.exceptions import CheckpointError
    from stream_scorer.worker import Worker

    path = tmp_path / "model.ckpt"
    settings = make_settings(checkpoint={"path": str(path), "key": "k" * 32, "interval_s": 3600})
    produce_events(settings, _recent(500, seed=6))
    first = WorkerThread(settings).start()
    first.wait_scored(500)
    first.stop()
    assert path.exists(), "a checkpoint is written at shutdown"
    learned = first.worker.scorer.champion.n_learned
    second = Worker(settings)
    assert second.scorer.champion.version == first.worker.scorer.champion.version
    assert second.scorer.champion.n_learned == learned
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        Worker(settings)
