"""Housekeeping between batches: local snapshots, model checkpoints, and the worker's gauges.

All of it runs per loop turn, never per event. Snapshots and checkpoints are taken only when memory
equals what is committed (no open commit unit, no unit waiting for its reports): a snapshot holding
records that are then rolled back would count them twice after a restart, and a checkpoint would
keep what an aborted transaction taught the models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException

from stream_scorer.model import checkpoint

logger = logging.getLogger(__name__)

GAUGES_EVERY_S = 5.0


class Housekeeper:
    """When snapshots, checkpoints and gauges are due, and taking them."""

    def __init__(
        self, settings: Any, state: Any, scorer: Any, metrics: Any, stats: Any, clock: Any = time.monotonic,
    ) -> None:
        self.snapshot_interval_s: float = settings.snapshot_interval_s
        self.state = state
        self.scorer = scorer
        ck = settings.checkpoint
        self.checkpointer = (
            checkpoint.Checkpointer(ck.path, ck.key.get_secret_value().encode(), ck.interval_s)
            if ck.path and ck.key is not None
            else None
        )
        self.metrics = metrics
        self.stats = stats
        self.clock = clock
        self.last_snapshot = clock()
        self.last_gauges = 0.0

    def sync_due(self) -> bool:
        """A snapshot or a checkpoint is due: the at-least-once committer waits for every report,
        so that memory equals what is committed."""
        now = self.clock()
        return now - self.last_snapshot >= self.snapshot_interval_s or (
            self.checkpointer is not None and self.checkpointer.due(now)
        )

    def snapshot_quietly(self, p: int) -> None:
        try:
            self.state.snapshot(p)
            self.stats.snapshots += 1
        except OSError as exc:
            logger.warning("snapshot of partition %d failed: %s", p, exc)

    def save_if_due(self, owned: Iterable[int]) -> bool:
        """Snapshot and checkpoint what is due; call only when memory equals what is committed.
        True when the checkpointer saved a new generation of the models."""
        now = self.clock()
        if now - self.last_snapshot >= self.snapshot_interval_s:
            self.last_snapshot = now
            for p in sorted(owned):
                self.snapshot_quietly(p)
        return (
            self.checkpointer is not None
            and self.checkpointer.maybe_save(self.scorer.champion, self.scorer.challenger) is not None
        )

    def save_all(self, owned: Iterable[int]) -> None:
        """At a clean stop: a snapshot of every partition and a checkpoint of the models."""
        for p in sorted(owned):
            self.snapshot_quietly(p)
        if self.checkpointer is not None:
            self.checkpointer.save(self.scorer.champion, self.scorer.challenger)

    def gauges_if_due(self, consumer: Any, owned: set[int]) -> bool:
        """Update the gauges if they are due; True if they were."""
        now = self.clock()
        if now - self.last_gauges >= GAUGES_EVERY_S:
            self.last_gauges = now
            update_gauges(self.metrics, self.scorer, consumer, len(owned))
            return True
        return False


def update_gauges(m: Any, scorer: Any, consumer: Any, n_owned: int) -> None:
    """State size, pending labels, model versions and consumer lag."""
    parts = list(scorer.partitions.values())
    m.state_entities.set(sum(st.engine.n_entities() for st in parts))
    m.pending.set(sum(len(st.pending) for st in parts))
    m.late.set(sum(getattr(st.engine, "late_events", 0) for st in parts))
    m.partitions.set(n_owned)
    m.model.clear()
    m.model.labels("champion", scorer.champion.version).set(1)
    if scorer.challenger is not None:
        m.model.labels("challenger", scorer.challenger.version).set(1)
    if consumer is None:
        return
    try:
        assignment = consumer.assignment()
        positions = consumer.position(assignment) if assignment else []
    except KafkaException:
        return
    m.lag.clear()
    for tp in positions:
        try:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            continue
        if high >= 0 and tp.offset >= 0:
            m.lag.labels(tp.topic, str(tp.partition)).set(max(high - tp.offset, 0))
