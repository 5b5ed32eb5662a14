"""The worker's own part in faults, over fake clients (no broker): what it saves when it fails,
and where a rewind goes when the committed offsets come back with errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from stream_scorer.config import load_settings
from stream_scorer.worker import Worker
from tests.fakes import TP, FakeConsumer, FakeProducer, Msg


def _txn(i: int) -> bytes:
    return orjson.dumps({"transaction_id": f"t{i}", "event_time": "2026-01-31T12:00:00Z", "card_id": "c1",
                         "merchant_id": "m1", "amount": 12.5, "currency": "EUR", "is_fraud": i % 2 == 0})


class BatchConsumer(FakeConsumer):
    """Hands out ``batches`` one per ``consume``; then stops the worker."""

    def __init__(self, worker: Worker, batches: list[list[Msg]]) -> None:
        super().__init__({(worker.settings.topics.transactions, 0): 0})
        self.worker, self.batches = worker, batches

    def consume(self, n: int, timeout: float) -> list[Msg]:
        if self.batches:
            return self.batches.pop(0)
        self.worker.stop()
        return []


def _run(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, batches: list[list[Any]]) -> Worker:
    settings = load_settings(
        metrics_port=None, state_dir=tmp_path / "state", commit_interval_s=10.0,
        checkpoint={"path": str(tmp_path / "models.ckpt"), "key": "k" * 32, "interval_s": 3600},
    )
    w = Worker(settings)
    tx = settings.topics.transactions
    msgs = [[Msg(tx, 0, o, v) if isinstance(v, bytes) else Msg(tx, 0, o, None, _error=v) for o, v in b]
            for b in batches]

    def fake_open() -> None:
        w._consumer = BatchConsumer(w, msgs)  # type: ignore[assignment]
        w.out._make = lambda extra: FakeProducer()  # type: ignore[assignment,return-value]
        w.out.start()
        w._owned = {0}

    monkeypatch.setattr(w, "_open", fake_open)
    w.run()
    return w


def test_a_clean_stop_commits_then_saves_snapshots_and_the_checkpoint(tmp_path, monkeypatch):
    w = _run(tmp_path, monkeypatch, [[(0, _txn(0)), (1, _txn(1))]])
    assert w.stats.commits == 1 and w.stats.scored == 2
    assert list((tmp_path / "state").rglob("p0.*.snap")) and (tmp_path / "models.ckpt").exists()


def test_a_worker_that_fails_saves_no_snapshot_and_no_checkpoint(tmp_path, monkeypatch):
    """Fault 4: ``_close`` ran in ``finally`` and, after an exception, snapshotted state and
    checkpointed learning that no commit covers; a restart then counted the re-consumed records
    twice (the snapshot already held them)."""
    fatal = KafkaError(KafkaError._FATAL, "fatal consumer error", fatal=True)
    with pytest.raises(KafkaException):
        _run(tmp_path, monkeypatch, [[(0, _txn(0)), (1, _txn(1))], [(2, fatal)]])
    assert not list((tmp_path / "state").rglob("*.snap")), "a snapshot of uncommitted state"
    assert not (tmp_path / "models.ckpt").exists(), "a checkpoint of uncommitted learning"


def test_a_rewind_never_goes_back_to_the_beginning_for_a_partition_error(monkeypatch):
    """Fault 6: a per-partition error in committed()'s answer (offset -1001) was taken for
    "nothing committed yet": the rewind sought to the beginning, and everything was scored again."""
    w = Worker(load_settings(metrics_port=None))
    tx = w.settings.topics.transactions
    c = FakeConsumer({(tx, 0): 500})
    c.answers = [[TP(tx, 0, -1001, KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS))]]
    w._consumer = c  # type: ignore[assignment]
    monkeypatch.setattr("stream_scorer.kafka.offsets.time.sleep", lambda s: None)
    w._rewind()
    assert c.seeks == [(tx, 0, 500)]


def test_an_at_least_once_rewind_does_not_count_a_refused_unit_twice(tmp_path, monkeypatch):
    """Fault 7: at least once, a unit's changelog records are written even when its scores are
    refused (its offsets then never commit). The rewind restored the changelog to its end, those
    records included, and the records consumed again counted twice in the windows. Here: one
    transaction, its score refused, the rewind, the same transaction again: it must get the
    features it had the first time."""
    from stream_scorer.state import store

    settings = load_settings(metrics_port=None, state_dir=tmp_path, processing_guarantee="at_least_once")
    w = Worker(settings)
    t = settings.topics
    producer = FakeProducer(refuse={t.scores})
    w.out._make = lambda extra: producer  # type: ignore[assignment,return-value]
    w.out.start()
    w._consumer = FakeConsumer({(t.transactions, 0): -1001, (t.labels, 0): -1001})  # type: ignore[assignment]
    w._owned = {0}
    log_topic = w.changelog.topic

    def read_partition(settings: Any, partition: int, start: int, apply: Any, **kw: Any) -> tuple[int, int]:
        if kw.get("topic") not in (None, log_topic):
            return 0, start  # the input (ids to recall): nothing here
        records = [m for m in producer.produced if m.topic() == log_topic and m.partition() == partition][start:]
        for m in records:
            apply(m.key(), m.value(), m.headers()) if kw.get("headers") else apply(m.key(), m.value())
        return len(records), start + len(records)

    monkeypatch.setattr(store.changelog, "read_partition", read_partition)
    monkeypatch.setattr(store.changelog, "end_offset", lambda settings, p: 10**9)
    msg = Msg(t.transactions, 0, 0, _txn(0))
    w.process_batch([msg])
    w._commit(wait=True)  # the score is refused: the unit fails, the worker rewinds
    assert w.stats.aborts == 1 and w.stats.changelog_records > 0
    w.process_batch([msg])  # consumed again after the rewind
    first, again = (orjson.loads(m.value())["features"] for m in producer.produced if m.topic() == t.scores)
    assert again == first, {k: (first[k], again[k]) for k in first if first[k] != again[k]}


def test_the_worker_dead_letters_an_event_without_a_required_signal() -> None:
    """``features.signal_missing=reject`` holds in the live worker too, not only in replays."""
    from stream_scorer.decode import Rejection

    w = Worker(load_settings(metrics_port=None, features={"signals": ["r"], "signal_missing": "reject"}))
    out = w.decoder.decode(_txn(1), now=1.8e9)
    assert isinstance(out, Rejection) and out.kind == "schema" and "signals.r" in out.reason
    keep = Worker(load_settings(metrics_port=None, features={"signals": ["r"]}))
    assert not isinstance(keep.decoder.decode(_txn(1), now=1.8e9), Rejection)
