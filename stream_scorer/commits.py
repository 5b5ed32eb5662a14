"""The worker's commit, steps 3-5 of :mod:`stream_scorer.worker`, for both guarantees.

:class:`Commits` holds the open commit unit (:class:`~stream_scorer.kafka.offsets.OpenUnit`), its
delivery reports, and the models as of the last commit (the rollback point). Its :meth:`~Commits.commit`
spells the steps out where they happen; when it returns False the unit was rolled back (an aborted
transaction, a replaced producer, a record Kafka refused), and the worker rewinds state, models and
offsets to the last commit.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, Message

from stream_scorer.kafka.acks import AckCommitter, CommitUnit
from stream_scorer.kafka.offsets import Offsets, OpenUnit, topic_partitions
from stream_scorer.kafka.transactions import Outcome, TransactionalProducer
from stream_scorer.state.changelog_writer import ChangelogWriter

logger = logging.getLogger(__name__)


class Commits:
    """Commit units of one worker: opened by its first batch, closed by :meth:`commit`."""

    def __init__(
        self, eos: bool, interval_s: float, out: TransactionalProducer, changelog: ChangelogWriter,
        state: Any, scorer: Any, stats: Any, metrics: Any,
    ) -> None:
        self.eos = eos
        self.out = out
        self.changelog = changelog
        self.state = state
        self.scorer = scorer
        self.stats = stats
        self.metrics = metrics
        self.unit = OpenUnit(interval_s)
        self.reports = CommitUnit(state.delivered)
        """At least once: the open unit's delivery reports."""
        self.acks = AckCommitter(out, stats, metrics, self._set_rollback)
        """At least once: closed units whose offsets wait for their records' reports."""
        self.models_at_commit = scorer.save_models()
        """The models as of the last commit: a rollback sends them back here."""
        self._failures_in_unit = 0

    def _set_rollback(self, models: Any) -> None:
        self.models_at_commit = models

    @property
    def open(self) -> bool:
        """Something processed is not committed yet (a unit open, or units awaiting reports)."""
        return bool(self.unit.batches or self.acks)

    def wait_s(self, longest: float) -> float:
        """How long the loop may wait for records: until the open unit is due, and only a few
        milliseconds while units wait for their reports (to commit them as they arrive)."""
        wait = self.unit.wait_s(longest) if self.unit.batches else longest
        return min(wait, 0.005) if self.acks else wait

    # -- per batch ------------------------------------------------------------------------------

    def begin(self) -> None:
        """Before a batch: the first batch of a unit opens its transaction."""
        if not self.unit.batches:
            self._failures_in_unit = 0
            if self.eos:
                self.out.begin()

    @property
    def score_cb(self) -> Any:
        """The delivery callback of a score: none in a transaction (a failed delivery fails its
        commit, which aborts and rewinds); at least once, its unit counts it."""
        return None if self.eos else self.reports.on_delivery

    @property
    def record_cb(self) -> Any:
        """The delivery callback of a dead letter."""
        return self._on_delivery if self.eos else self.reports.on_delivery

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.stats.delivery_failures += 1
            self._failures_in_unit += 1
            if self._failures_in_unit == 1:
                logger.warning("delivery failed: %s", err)

    def _on_changelog_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._on_delivery(err, msg)
        else:
            self.state.delivered(msg.partition(), msg.offset())  # type: ignore[arg-type,unused-ignore]  # set once delivered

    # -- commit ---------------------------------------------------------------------------------

    def commit(self, consumer: Any, wait: bool = False, sync_due: bool = False) -> bool:
        """Steps 3-5 for every batch since the last commit. At least once, step 4 waits for the
        records' reports only when ``wait`` or ``sync_due`` (a snapshot or checkpoint needs memory
        == committed), or too many units are in flight. False: rolled back, the caller rewinds."""
        reports = self.reports
        last_cb = self._on_changelog_delivery if self.eos else reports.on_changelog_delivery
        # 3. The state the unit changed goes to the changelog, one record per changed key.
        n_changes = self.changelog.write(self.unit.offsets, None if self.eos else last_cb, last_cb)
        st, m = self.stats, self.metrics
        st.changelog_records += n_changes
        batches = self.unit.batches
        if batches:
            m.batches_per_commit.observe(batches)
        offsets = self.close_unit()
        if not self.eos:
            # 4. At least once: the offsets are committed once every record of the unit is written,
            # asynchronously (AckCommitter); the unit's models become the rollback point then.
            reports.produced += n_changes
            models = self.scorer.save_models() if batches else None
            self.unit.committed()
            if self.acks.close(reports if batches else None, offsets, models, consumer, wait or sync_due):
                return True
            return self.delivery_failed(consumer)
        # 4. The offsets join the transaction, and it commits: scores, dead letters, state and
        # offsets become visible together. The group metadata is read here, on the thread that
        # polls the consumer (see TransactionalProducer.commit).
        group = consumer.consumer_group_metadata() if offsets else None
        outcome = self.out.commit(topic_partitions(offsets), group)
        self.unit.committed()
        if outcome is Outcome.COMMITTED:
            st.commits += 1
            m.commits.inc()
            self.models_at_commit = self.scorer.save_models()
            return True
        # 5. Aborted, or the producer replaced: the caller rewinds to the last commit.
        st.aborts += 1
        m.aborts.inc()
        return False

    def close_unit(self) -> Offsets:
        """End the open commit unit; return its next offsets."""
        self.reports = CommitUnit(self.state.delivered)
        return self.unit.close()

    def confirm(self, consumer: Any) -> bool:
        """At least once, per loop turn: commit the units now acknowledged. False: a record
        failed, everything after the last confirmed unit is rolled back; the caller rewinds."""
        return self.acks.poll(consumer) or self.delivery_failed(consumer)

    def delivery_failed(self, consumer: Any) -> bool:
        self.acks.fail(consumer)
        self.close_unit()
        return False

    def abandon(self) -> bool:
        """Drop what is open without committing it (its partitions were lost): abort the
        transaction; the records' new owner scores them again from the last commit, and the
        models forget what they learned from them. False: the producer had to be replaced, the
        caller rewinds."""
        self.close_unit()
        self.acks.abandon()  # at least once: units in flight are not committed either
        self.scorer.restore_models(self.models_at_commit)
        if self.eos and self.out.producer is not None:
            self.stats.aborts += 1
            return self.out.abort() is not Outcome.REPLACED
        return True
