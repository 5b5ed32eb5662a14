"""The open commit unit, and the committed offsets read back through a fake consumer."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream_scorer.exceptions import InvariantError
from stream_scorer.kafka.offsets import OpenUnit, committed_offsets, topic_partitions, watermark_offsets
from tests.fakes import TP, FakeConsumer, retriable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_offsets_only_grow_within_a_unit():
    unit = OpenUnit(1.0)
    unit.add({("tx", 0): 5, ("tx", 1): 7})
    unit.add({("tx", 0): 9})
    unit.add({})
    assert unit.offsets == {("tx", 0): 9, ("tx", 1): 7} and unit.batches == 3
    unit.add({("tx", 0): 9})  # the same offset again: an empty partition's batch
    with pytest.raises(InvariantError, match=r"tx\[1\] goes back from 7 to 6"):
        unit.add({("tx", 1): 6})


def test_close_ends_the_unit_and_a_new_one_may_start_lower():
    unit = OpenUnit(1.0)
    unit.add({("tx", 0): 9})
    assert unit.close() == {("tx", 0): 9}
    assert unit.offsets == {} and unit.batches == 0
    unit.add({("tx", 0): 3})  # after a rewind: a new unit
    assert unit.offsets == {("tx", 0): 3}


def test_a_unit_is_due_an_interval_after_the_last_commit():
    clock = Clock()
    unit = OpenUnit(0.5, clock)
    assert not unit.due() and unit.wait_s(10.0) == 0.5
    clock.now += 0.2
    assert unit.wait_s(0.1) == 0.1 and unit.wait_s(10.0) == pytest.approx(0.3)
    clock.now += 0.3
    assert unit.due() and unit.wait_s(10.0) == 0.0
    unit.committed()
    assert not unit.due()


def test_topic_partitions():
    (tp,) = topic_partitions({("tx", 2): 41})
    assert (tp.topic, tp.partition, tp.offset) == ("tx", 2, 41)


def test_committed_offsets_wait_while_the_cluster_does_not_answer():
    c = FakeConsumer({("tx", 0): 12}, committed=[retriable(), KafkaException(KafkaError(KafkaError._TIMED_OUT, "t"))])
    (tp,) = committed_offsets(c, [TopicPartition("tx", 0)], pause_s=0.0)
    assert tp.offset == 12 and c.calls == ["committed"] * 3


def test_committed_offsets_raise_what_no_retry_fixes():
    c = FakeConsumer({("tx", 0): 12}, committed=[KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))])
    with pytest.raises(KafkaException):
        committed_offsets(c, [TopicPartition("tx", 0)], pause_s=0.0)


def test_a_partition_error_in_the_answer_is_retried_not_taken_for_an_offset():
    """Fault 6: committed() answers an error per partition (its offset then -1001, invalid); it
    was taken for "nothing committed", and a rewind went back to the beginning of the partition."""
    c = FakeConsumer({("tx", 0): 12, ("tx", 1): 30})
    c.answers = [[TP("tx", 0, -1001, KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)), TP("tx", 1, 30)]]
    got = committed_offsets(c, [TopicPartition("tx", 0), TopicPartition("tx", 1)], pause_s=0.0)
    assert [(tp.partition, tp.offset) for tp in got] == [(0, 12), (1, 30)]


def test_a_partition_error_no_retry_fixes_raises():
    c = FakeConsumer({("tx", 0): 12})
    c.answers = [[TP("tx", 0, -1001, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))]]
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        committed_offsets(c, [TopicPartition("tx", 0)], pause_s=0.0)


class Watermarks:
    """A consumer whose ``get_watermark_offsets`` raises the given errors first."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.calls = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 0, 42


def test_watermarks_of_a_topic_created_a_moment_ago_are_waited_for():
    """A worker creating the merchant topics read them at once and died of NOT_LEADER_FOR_PARTITION
    (its leader not known yet), librdkafka not calling that retriable."""
    c = Watermarks(KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
    assert watermark_offsets(c, TopicPartition("t", 0), pause_s=0.0) == (0, 42) and c.calls == 3


def test_watermarks_raise_what_no_retry_fixes():
    c = Watermarks(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        watermark_offsets(c, TopicPartition("t", 0), pause_s=0.0)
