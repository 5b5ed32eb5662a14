"""Consumer lag of a group, per member: how far behind the end of its partitions each one is.

The lag of a partition is its high watermark minus the group's committed offset (the beginning
of the partition when nothing is committed yet). A member's lag is the sum over the partitions
it holds. The members and their assignments come from the group coordinator
(``describe_consumer_groups``), the committed offsets from ``list_consumer_group_offsets`` and
the watermarks from any consumer, so a reader outside the group can measure it. With
exactly-once workers the transaction markers count as a record each: the lag of a caught-up
partition is then one or two, not zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

logger = logging.getLogger(__name__)


@dataclass
class MemberLag:
    """One member of the group: who it is, its partitions and their summed lag."""

    member_id: str
    client_id: str
    host: str
    partitions: list[int] = field(default_factory=list)
    lag: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "client_id": self.client_id,
            "host": self.host,
            "partitions": self.partitions,
            "lag": self.lag,
        }


def partition_lag(high: int, low: int, committed: int | None) -> int:
    """The records of a partition not yet committed: ``high - committed`` (``low`` when none).

    >>> partition_lag(100, 0, 90), partition_lag(100, 20, None), partition_lag(100, 0, 120)
    (10, 80, 0)
    """
    start = low if committed is None or committed < 0 else committed
    return max(high - start, 0)


def group_lag(admin: Any, consumer: Any, group: str, topic: str, timeout: float = 5.0) -> list[MemberLag]:
    """The members of ``group`` and their lag on ``topic``, ordered by their first partition.

    ``admin`` is an AdminClient, ``consumer`` any Consumer (it only reads watermarks). Raises
    KafkaException when the coordinator cannot answer within ``timeout``.
    """
    desc = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result()
    members = [
        MemberLag(
            m.member_id,
            m.client_id,
            m.host,
            sorted(tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic),
        )
        for m in desc.members
    ]
    if not members:
        return []
    request = [ConsumerGroupTopicPartitions(group)]
    listed = admin.list_consumer_group_offsets(request, request_timeout=timeout)[group].result()
    committed = {tp.partition: tp.offset for tp in listed.topic_partitions if tp.topic == topic}
    for m in members:
        for p in m.partitions:
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            except KafkaException as exc:
                logger.debug("no watermarks for %s[%d]: %s", topic, p, exc)
                continue
            m.lag += partition_lag(high, low, committed.get(p))
    members.sort(key=lambda m: (m.partitions[:1] or [1 << 30], m.member_id))
    return members
