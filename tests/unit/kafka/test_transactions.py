"""The transaction protocol over a fake producer: committed, aborted or replaced, on cue."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream_scorer.kafka.transactions import Outcome, TransactionalProducer
from tests.fakes import WEDGED, FakeProducer, abortable, fatal, retriable


def _wrapper(*producers: FakeProducer, transactional: bool = True) -> tuple[TransactionalProducer, list[Any]]:
    """A wrapper whose successive producers are ``producers``; returns it and the made ones."""
    queue, made = list(producers), []

    def make(extra: dict[str, Any]) -> FakeProducer:
        p = queue.pop(0) if queue else FakeProducer()
        p.extra = extra  # type: ignore[attr-defined]
        made.append(p)
        return p

    out = TransactionalProducer(make, "g-w" if transactional else None, wedged_s=0.2, retry_pause_s=0.0)  # type: ignore[arg-type]
    out.start()
    return out, made


OFFSETS = [TopicPartition("tx", 0, 10)]


def test_start_registers_the_transactional_id_and_its_timeout():
    _, (p,) = _wrapper(FakeProducer())
    assert p.calls == ["init_transactions"]
    assert p.extra["transactional.id"] == "g-w" and p.extra["transaction.timeout.ms"] == 30_000
    _, (q,) = _wrapper(FakeProducer(), transactional=False)
    assert q.calls == [] and "transactional.id" not in q.extra


def test_a_commit_sends_the_offsets_then_commits():
    out, (p,) = _wrapper(FakeProducer())
    out.begin()
    assert out.commit(OFFSETS, "group") is Outcome.COMMITTED
    assert p.calls == ["init_transactions", "begin_transaction", "send_offsets_to_transaction", "commit_transaction"]
    assert p.sent_offsets == OFFSETS


def test_no_offsets_no_send():
    out, (p,) = _wrapper(FakeProducer())
    out.begin()
    assert out.commit([], None) is Outcome.COMMITTED
    assert "send_offsets_to_transaction" not in p.calls


def test_retriable_errors_are_retried_until_the_cluster_answers():
    p = FakeProducer(commit_transaction=[retriable(), retriable(), None], init_transactions=[retriable()])
    out, _ = _wrapper(p)
    out.begin()
    assert out.commit(OFFSETS, "group") is Outcome.COMMITTED
    assert p.calls.count("commit_transaction") == 3 and p.calls.count("init_transactions") == 2


def test_an_abortable_commit_aborts():
    p = FakeProducer(commit_transaction=[abortable()])
    out, made = _wrapper(p)
    out.begin()
    assert out.commit(OFFSETS, "group") is Outcome.ABORTED
    assert p.calls[-1] == "abort_transaction" and len(made) == 1


def test_a_fatal_commit_raises():
    out, _ = _wrapper(FakeProducer(commit_transaction=[fatal()]))
    out.begin()
    with pytest.raises(KafkaException):
        out.commit(OFFSETS, "group")


def test_a_wedged_send_offsets_replaces_the_producer():
    old = FakeProducer(send_offsets_to_transaction=[WEDGED])
    out, made = _wrapper(old)
    out.begin()
    assert out.commit(OFFSETS, "group") is Outcome.REPLACED
    assert len(made) == 2 and out.producer is made[1] and out.abandoned == [old]
    assert made[1].calls == ["init_transactions"], "the new producer fences the old one's transaction"


def test_a_wedged_abort_after_an_abortable_commit_replaces_the_producer():
    """Fault 2: the abort's CallTimedOut escaped the commit instead of replacing the producer."""
    old = FakeProducer(commit_transaction=[abortable()], abort_transaction=[WEDGED])
    out, made = _wrapper(old)
    out.begin()
    assert out.commit(OFFSETS, "group") is Outcome.REPLACED
    assert out.abandoned == [old] and out.producer is made[1]


def test_a_cluster_down_during_the_transaction_replaces_the_producer():
    out, made = _wrapper(FakeProducer())
    out.begin()
    out.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "all brokers down"))
    assert out.commit(OFFSETS, "group") is Outcome.REPLACED
    assert len(made) == 2
    out.begin()
    assert out.commit(OFFSETS, "group") is Outcome.COMMITTED, "the new producer starts with a clean slate"


def test_a_spurious_all_brokers_down_between_transactions_does_not_throw_the_next_one_away():
    """Fault 3: librdkafka reports _ALL_BROKERS_DOWN when idle connections are closed
    (connections.max.idle.ms); the flag stuck, and the next healthy transaction was replaced."""
    out, made = _wrapper(FakeProducer())
    out.begin()
    assert out.commit(OFFSETS, "group") is Outcome.COMMITTED
    out.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))  # idle
    out.begin()
    assert out.commit(OFFSETS, "group") is Outcome.COMMITTED
    assert len(made) == 1 and out.abandoned == []


def test_abort_replaces_the_producer_when_it_fails():
    out, made = _wrapper(FakeProducer(abort_transaction=[KafkaException(KafkaError(KafkaError._STATE, "x"))]))
    out.begin()
    assert out.abort() is Outcome.REPLACED and len(made) == 2
    out2, _ = _wrapper(FakeProducer())
    out2.begin()
    assert out2.abort() is Outcome.ABORTED


def test_a_full_queue_waits_for_room():
    out, (p,) = _wrapper(FakeProducer(full=3), transactional=False)
    out.produce("scores", b"v", b"k")
    assert [m.value() for m in p.produced] == [b"v"]


def test_drain_waits_for_every_report():
    out, _ = _wrapper(FakeProducer(), transactional=False)
    seen: list[Any] = []
    out.produce("scores", b"v", b"k", lambda err, msg: seen.append(err))
    out.drain()
    assert seen == [None]


def test_a_fatal_abort_raises():
    out, _ = _wrapper(FakeProducer(commit_transaction=[abortable()], abort_transaction=[fatal()]))
    out.begin()
    with pytest.raises(KafkaException):
        out.commit(OFFSETS, "group")
