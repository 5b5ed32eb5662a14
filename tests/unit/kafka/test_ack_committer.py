"""At-least-once confirmation over fake clients: offsets committed in order, only over records
Kafka acknowledged, and a commit's per-partition errors are not taken for success."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError

from stream_scorer.exceptions import InvariantError
from stream_scorer.kafka.acks import AckCommitter, CommitUnit
from stream_scorer.kafka.transactions import TransactionalProducer
from stream_scorer.worker_metrics import WorkerStats
from tests.fakes import TP, FakeConsumer, FakeMetrics, FakeProducer


def _committer(refuse: set[str] | None = None) -> tuple[AckCommitter, FakeProducer, list[Any]]:
    producer = FakeProducer(refuse=refuse)
    out = TransactionalProducer(lambda extra: producer, None)  # type: ignore[arg-type,return-value]
    out.start()
    rollbacks: list[Any] = []
    return AckCommitter(out, WorkerStats(), FakeMetrics(), rollbacks.append), producer, rollbacks


def _unit(producer: FakeProducer, n: int, topic: str = "scores") -> CommitUnit:
    unit = CommitUnit(lambda p, o: None)
    for _ in range(n):
        producer.produce(topic, b"v", b"k", on_delivery=unit.on_delivery)
    unit.produced = n
    return unit


def test_a_unit_commits_asynchronously_once_its_records_are_acknowledged():
    acks, producer, rollbacks = _committer()
    consumer = FakeConsumer()
    assert acks.close(_unit(producer, 2), {("tx", 0): 10}, "models-1", consumer, wait=False)
    # close() polled: both reports came, the unit is confirmed and committed asynchronously
    assert consumer.commits and consumer.commits[0][1] is True
    assert [(tp.topic, tp.partition, tp.offset) for tp in consumer.commits[0][0]] == [("tx", 0, 10)]
    assert rollbacks == ["models-1"] and acks.stats.commits == 1 and len(acks) == 0


def test_units_wait_for_the_reports_and_commit_in_order():
    acks, producer, rollbacks = _committer()
    consumer = FakeConsumer()
    first = _unit(producer, 1)
    first.produced = 2  # one record still to come
    acks.close(first, {("tx", 0): 10}, "m1", consumer, wait=False)
    acks.close(_unit(producer, 1), {("tx", 0): 20, ("labels", 0): 4}, "m2", consumer, wait=False)
    assert consumer.commits == [] and len(acks) == 2
    producer.produce("scores", b"v", b"k", on_delivery=first.on_delivery)
    assert acks.poll(consumer)
    (offsets, _), = consumer.commits
    assert sorted((tp.topic, tp.offset) for tp in offsets) == [("labels", 4), ("tx", 20)]
    assert rollbacks == ["m2"]


def test_a_refused_record_stops_the_pipeline_and_fail_recommits_the_confirmed_offsets():
    acks, producer, rollbacks = _committer(refuse={"scores"})
    consumer = FakeConsumer()
    acks.confirmed_offsets = [TP("tx", 0, 5)]  # type: ignore[list-item]
    assert not acks.close(_unit(producer, 2), {("tx", 0): 10}, "m", consumer, wait=False)
    acks.fail(consumer)
    assert acks.stats.delivery_failures == 2 and acks.stats.aborts == 1 and len(acks) == 0
    assert consumer.commits == [([TP("tx", 0, 5)], False)] and rollbacks == []


def test_drain_waits_and_commits_synchronously():
    acks, producer, _ = _committer()
    consumer = FakeConsumer()
    assert acks.close(_unit(producer, 3), {("tx", 0): 10}, "m", consumer, wait=True)
    assert consumer.commits[0][1] is False and acks.stats.commits == 1


def test_a_unit_that_counted_records_it_did_not_produce_is_an_invariant_error():
    acks, producer, _ = _committer()
    unit = _unit(producer, 1)
    unit.produced = 2
    with pytest.raises(InvariantError):
        acks.close(unit, {("tx", 0): 10}, "m", FakeConsumer(), wait=True)


def test_a_commit_with_partition_errors_is_not_counted_as_a_commit(caplog):
    """Fault 6: commit() answers an error per partition; they were dropped: the commit was
    counted, and nothing said the offsets did not move."""
    acks, producer, _ = _committer()
    consumer = FakeConsumer()
    consumer.commit_answers = [[TP("tx", 0, 10, KafkaError(KafkaError.REBALANCE_IN_PROGRESS))]]
    with caplog.at_level(logging.WARNING):
        acks.close(_unit(producer, 1), {("tx", 0): 10}, "m", consumer, wait=True)
    assert acks.stats.commits == 0
    assert "REBALANCE_IN_PROGRESS" in caplog.text


def test_an_asynchronous_commit_reports_its_partition_errors(caplog):
    acks, _, _ = _committer()
    with caplog.at_level(logging.WARNING):
        acks.on_commit(None, [TP("tx", 0, 10, KafkaError(KafkaError.UNKNOWN_MEMBER_ID))])  # type: ignore[list-item]
    assert "UNKNOWN_MEMBER_ID" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        acks.on_commit(KafkaError(KafkaError._NO_OFFSET), [])
    assert caplog.text == "", "nothing to commit is no failure"
