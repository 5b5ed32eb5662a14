"""Backfill sends history through the live workers: every record gets its committed score (or dead
letter), as any live record does."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from stream_scorer.backfill import BackfillError, backfill_topic, wait_committed
from stream_scorer.exceptions import ConfigError
from stream_scorer.kafka.admin import ensure_topics
from stream_scorer.simulate import Simulator, shifted_to
from tests.kafka_helpers import WorkerThread, produce, read_all, scores_by_id, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _events(n: int, seed: int) -> list[dict]:
    return shifted_to(Simulator(seed=seed).take(n), datetime.now(UTC) - timedelta(hours=6))


def test_cli_backfills_a_file_and_waits_until_it_is_scored(make_settings, tmp_path):
    settings = make_settings()
    events = _events(500, seed=31)
    path = tmp_path / "history.jsonl"
    lines = [orjson.dumps(e) for e in events]
    lines.insert(200, b"{not json")  # reaches the worker, which dead-letters it with its reason
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    w = WorkerThread(settings).start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "stream_scorer.cli", "backfill", str(path), "--wait", "--timeout", "120"],
            env=worker_env(settings), capture_output=True, text=True, timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "sent 501 records" in proc.stdout
        assert "committed a score or dead letter for every one of them" in proc.stdout
        # --wait returned: the worker has committed everything, so it has counted it too.
        assert w.worker.stats.scored == 500 and w.worker.stats.dead_letters == 1
    finally:
        w.stop()
    msgs = read_all(settings, settings.topics.scores, expected=500)
    assert len(msgs) == 500
    # Keyed by card: a card's scores come from one partition, in the file's order.
    want: dict[str, list[str]] = {}
    for e in events:
        want.setdefault(e["card_id"], []).append(e["transaction_id"])
    got: dict[str, list[str]] = {}
    for m in sorted(msgs, key=lambda m: (m.partition(), m.offset())):
        rec = orjson.loads(m.value())
        got.setdefault(rec["card_id"], []).append(rec["transaction_id"])
    assert got == want
    dlq = read_all(settings, settings.topics.dlq, expected=1)
    assert [orjson.loads(m.value())["error_kind"] for m in dlq] == ["not_json"]


def test_a_topic_range_by_offset_and_by_time(make_settings):
    settings = make_settings()
    source = f"archive-{settings.group_id}"
    ensure_topics(settings, [source], partitions=1)
    events = _events(400, seed=32)
    produce(settings, ((e["card_id"].encode(), orjson.dumps(e)) for e in events[:200]), topic=source)
    middle = datetime.now(UTC)
    produce(settings, ((e["card_id"].encode(), orjson.dumps(e)) for e in events[200:]), topic=source)

    first = backfill_topic(settings, source, start=50, end=150, progress=False)
    assert first.sent == 100
    second = backfill_topic(settings, source, start=middle, progress=False)  # to its end
    assert second.sent == 200
    w = WorkerThread(settings).start()
    try:
        ends = {p: max(first.end_offsets.get(p, 0), second.end_offsets.get(p, 0)) for p in range(3)}
        wait_committed(settings, ends, timeout=120, progress=False)
    finally:
        w.stop()
    scores, read = scores_by_id(settings, 300)
    wanted = {e["transaction_id"] for e in events[50:150] + events[200:]}
    assert read == 300 and set(scores) == wanted


def test_waiting_without_workers_times_out_with_a_clear_error(make_settings):
    settings = make_settings()
    with pytest.raises(BackfillError, match="are its workers running"):
        wait_committed(settings, {0: 5}, timeout=2, progress=False, poll_s=0.2)


def test_refuses_its_own_input_and_a_missing_topic(make_settings):
    settings = make_settings()
    with pytest.raises(ConfigError, match="transactions topic"):
        backfill_topic(settings, settings.topics.transactions)
    with pytest.raises(ConfigError, match="does not exist"):
        backfill_topic(settings, "no-such-topic-anywhere")


def test_a_paced_backfill_sends_no_faster_than_its_rate(make_settings, tmp_path):
    from stream_scorer.backfill import backfill_file

    settings = make_settings()
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in _events(200, seed=33)) + b"\n")
    result = backfill_file(settings, path, progress=False, rate=100.0)
    assert result.sent == 200 and result.seconds >= 199 / 100.0
    fast = backfill_file(settings, path, progress=False)
    assert fast.seconds < result.seconds / 2
    proc = subprocess.run(
        [sys.executable, "-m", "stream_scorer.cli", "backfill", str(path), "--rate", "0"],
        env=worker_env(settings), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "--rate must be a positive" in proc.stderr
