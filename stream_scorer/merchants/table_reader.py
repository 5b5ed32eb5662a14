"""Feed a card worker's :class:`~.table.MerchantTable` from ``<group>.merchant-features``.

The worker reads the whole topic (every partition, no consumer group: a global table), once to
its end before it takes partitions (:meth:`TableReader.bootstrap`), then a little every loop turn
(:meth:`TableReader.poll`), between batches. It reads committed records only, so a merchant
stage's aborted transaction never reaches the table.

Staleness, per publication: the wall-clock time from the oldest card-stage record it is the
first to hold (that record's Kafka timestamp, set when a card worker produced it) to its arrival
in the table. It includes the card worker's commit interval, the stage's, and both polls.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from stream_scorer.config import Settings
from stream_scorer.exceptions import StateError
from stream_scorer.kafka.clients import make_consumer
from stream_scorer.kafka.offsets import watermark_offsets
from stream_scorer.merchants.records import features_topic
from stream_scorer.merchants.table import MerchantTable

logger = logging.getLogger(__name__)

POLL_RECORDS = 5_000
"""Most records applied per loop turn, so that a burst of publications cannot stall scoring."""


class TableReader:
    """One consumer of the merchant-features topic, assigned all its partitions."""

    def __init__(
        self,
        settings: Settings,
        table: MerchantTable,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.table = table
        self.topic = features_topic(settings.group_id)
        self.observe = observe
        """Called with each staleness sample, in seconds (a metrics histogram)."""
        self.recent: deque[float] = deque(maxlen=2048)
        """The latest staleness samples, for the demo and the benchmarks."""
        self.records = 0
        self._consumer: Consumer | None = None
        self._partitions: list[TopicPartition] = []

    def open(self, partitions: int) -> None:
        """Assign every partition from its beginning (the table is rebuilt from the topic)."""
        self._consumer = make_consumer(
            self.settings, group_id=f"{self.settings.group_id}.merchant-table",
            **{"enable.partition.eof": False},
        )
        self._partitions = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        self._consumer.assign(self._partitions)

    def bootstrap(self, timeout_s: float = 300.0) -> int:
        """Read to the end of every partition as it is now; return the records applied."""
        consumer = self._consumer
        assert consumer is not None
        t0 = time.monotonic()
        ends = {}
        for tp in self._partitions:
            low, high = watermark_offsets(consumer, TopicPartition(tp.topic, tp.partition))
            if high > low:
                ends[tp.partition] = high
        n = 0
        while ends:
            if time.monotonic() - t0 > timeout_s:
                raise StateError(
                    f"reading the merchant table {self.topic} took over {timeout_s:.0f}s "
                    f"({len(ends)} partitions not at their end)"
                )
            n += self._consume(10_000, 0.2, staleness=False)
            # Transaction markers are never delivered: ask where each partition stands.
            for tp in consumer.position([TopicPartition(self.topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        logger.info(
            "merchant table read: %d merchants from %d records in %.2fs",
            len(self.table.merchants), n, time.monotonic() - t0,
        )
        return n

    def poll(self, limit: int = POLL_RECORDS) -> int:
        """Apply what has arrived, up to ``limit`` records, without waiting (none before
        :meth:`open`)."""
        if self._consumer is None:
            return 0
        n = 0
        while n < limit:
            got = self._consume(min(1_000, limit - n), 0.0, staleness=True)
            if not got:
                break
            n += got
        if n:
            self.table.evict()
        return n

    def _consume(self, n: int, timeout: float, staleness: bool) -> int:
        consumer = self._consumer
        assert consumer is not None
        msgs = consumer.consume(n, timeout)
        if not msgs:
            return 0
        apply = self.table.apply
        now_ms = time.time() * 1000.0
        observe, recent = self.observe, self.recent
        got = 0
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                continue
            source_ms = apply(msg.key(), msg.value(), msg.partition())  # type: ignore[arg-type]
            got += 1
            if staleness and source_ms:
                lag = max(0.0, (now_ms - source_ms) / 1000.0)
                recent.append(lag)
                if observe is not None:
                    observe(lag)
        self.records += got
        return got

    def lag(self) -> int:
        """Records of the topic not yet applied (0 when caught up)."""
        consumer = self._consumer
        if consumer is None:
            return 0
        total = 0
        for tp in consumer.position([TopicPartition(self.topic, p.partition) for p in self._partitions]):
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, tp.partition), cached=True)
            if tp.offset >= 0 and high >= 0:
                total += max(0, high - tp.offset)
        return total

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        self._consumer = None

