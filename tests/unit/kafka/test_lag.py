"""A group's lag per member, from what the coordinator and the watermarks say (fake clients)."""

from __future__ import annotations

from types import SimpleNamespace

from confluent_kafka import TopicPartition

from stream_scorer.kafka.lag import group_lag


class _Future:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class FakeAdmin:
    def __init__(self, members, committed):
        self.members, self.committed = members, committed

    def describe_consumer_groups(self, groups, request_timeout):
        return {groups[0]: _Future(SimpleNamespace(members=self.members))}

    def list_consumer_group_offsets(self, request, request_timeout):
        group = request[0].group_id
        return {group: _Future(SimpleNamespace(topic_partitions=self.committed))}


class FakeConsumer:
    def __init__(self, watermarks):
        self.watermarks = watermarks

    def get_watermark_offsets(self, tp, timeout):
        return self.watermarks[tp.partition]


def _member(member_id, partitions, topic="tx"):
    tps = [TopicPartition(topic, p) for p in partitions] + [TopicPartition("labels", p) for p in partitions]
    return SimpleNamespace(
        member_id=member_id, client_id="stream-scorer", host="/127.0.0.1",
        assignment=SimpleNamespace(topic_partitions=tps),
    )


def test_lag_per_member_sums_its_partitions_of_the_topic():
    admin = FakeAdmin(
        [_member("b", [3, 4, 5]), _member("a", [0, 1, 2])],
        # Partition 2 has nothing committed yet (-1001): its lag counts from the low watermark.
        [TopicPartition("tx", 0, 90), TopicPartition("tx", 1, 50), TopicPartition("tx", 2, -1001),
         TopicPartition("tx", 3, 100), TopicPartition("tx", 4, 100), TopicPartition("tx", 5, 97),
         TopicPartition("labels", 0, 0)],
    )
    consumer = FakeConsumer({0: (0, 100), 1: (0, 50), 2: (10, 30), 3: (0, 100), 4: (0, 101), 5: (0, 100)})
    members = group_lag(admin, consumer, "g", "tx")
    assert [(m.member_id, m.partitions, m.lag) for m in members] == [("a", [0, 1, 2], 30), ("b", [3, 4, 5], 4)]
    assert members[0].as_dict()["client_id"] == "stream-scorer"


def test_an_empty_group_has_no_members():
    assert group_lag(FakeAdmin([], []), FakeConsumer({}), "g", "tx") == []
