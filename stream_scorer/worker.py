"""The live path: consume a batch, decode, compute features, score, produce, then commit.

A worker is one member of the scoring consumer group. It reads the transactions topic and the
labels topic (co-partitioned: both keyed by card, same partition count, range assignment), so
the worker that holds a card's state also receives its labels.

Per batch, in the order correctness needs (exactly-once, the default):

1. ``consume()`` up to ``batch_size`` records; ``begin_transaction()``;
2. per record: a transaction is decoded and validated, then either dead-lettered, or scored by
   the :class:`~stream_scorer.pipeline.Scorer` (features from state before the event, champion and
   challenger, learning from an inline label) and its score produced; a label teaches the model
   the features its transaction was scored on;
3. the state each touched partition changed (feature windows, pending labels) goes to the
   changelog topic, one record per changed key;
4. the next offsets join the transaction (``send_offsets_to_transaction``) and it commits:
   scores, dead letters, state and offsets become visible together, or not at all;
5. if the transaction had to abort, the in-memory state is rebuilt from the changelog, the models
   go back to their copy at the last commit, and the consumer goes back to the committed offsets,
   so the records are scored again, and learned, once.

Steps 3-5 run at most every ``commit_interval_s`` (as Kafka Streams' ``commit.interval.ms``): a
record after a quiet spell commits at once; a busy stream or a backlog is committed in a bounded
number of transactions, whatever its batches, and a key changed by several batches is logged once.
A rebalance commits first; lost partitions abort.

With ``processing_guarantee=at_least_once`` (clusters without transactions), step 4 commits the
offsets only once every record of the unit was acknowledged. The worker does not wait for that: it
goes on with the next unit, and the units' offsets are committed asynchronously, in order, as their
delivery reports come in (:mod:`stream_scorer.kafka.acks`). A failed record stops the pipeline and
rewinds to the last confirmed unit. A rebalance, a stop, and a due snapshot or checkpoint wait for
every report and commit synchronously.
"""

from __future__ import annotations

import base64
import gc
import logging
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from stream_scorer.config import Settings
from stream_scorer.decode import Decoder, Rejection, decode_label
from stream_scorer.events import SCHEMA_VERSION, Label
from stream_scorer.exceptions import ConfigError, InvariantError
from stream_scorer.features import card as card_layout
from stream_scorer.features.engine import FeatureEngine
from stream_scorer.kafka.acks import MAX_UNITS_IN_FLIGHT, AckQueue, CommitUnit
from stream_scorer.kafka.admin import cluster_id, ensure_topics, partition_count
from stream_scorer.kafka.clients import log_client_error as client_error_cb
from stream_scorer.kafka.clients import make_consumer, make_producer
from stream_scorer.kafka.deadline import CallTimedOut, DeadlineCaller
from stream_scorer.metrics import MetricsServer, start_metrics_server
from stream_scorer.model import checkpoint
from stream_scorer.model import kernels as model_kernels
from stream_scorer.pipeline import Scorer, scorer_settings
from stream_scorer.state.changelog import changelog_topic, read_partition
from stream_scorer.state.store import StateStore
from stream_scorer.worker_metrics import WorkerMetrics

logger = logging.getLogger(__name__)

TXN_BROKER_TIMEOUT_MS = 30_000
"""``transaction.timeout.ms``: the coordinator aborts a transaction left open longer than this."""
TXN_TIMEOUT_S = TXN_BROKER_TIMEOUT_MS / 1000
"""How long a transaction call may take before it is retried (the broker may be away)."""
TXN_WEDGED_S = TXN_TIMEOUT_S + 15.0
"""A transaction call still running after this long is stuck, not slow: it has outlived its own
timeout, and the coordinator has aborted its transaction by then anyway."""
CONSUMER_REJOIN_S = 45.0
"""A consumer that lost its partitions and has none back after this long is replaced."""


@dataclass
class WorkerStats:
    """Running counts of what the worker did; read by the demo, the tests and the metrics."""

    consumed: int = 0
    scored: int = 0
    dead_letters: int = 0
    labels: int = 0
    labels_applied: int = 0
    learned: int = 0
    batches: int = 0
    commits: int = 0
    aborts: int = 0
    changelog_records: int = 0
    delivery_failures: int = 0
    consumer_errors: int = 0
    snapshots: int = 0
    restores: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def build_scorer(settings: Settings) -> Scorer:
    """A scorer with the feature engine of the settings, and the checkpointed models if any.

    A checkpoint that fails its integrity check stops the worker (CheckpointError): a model of
    unknown origin never scores.
    """
    features = settings.features
    factory = lambda: FeatureEngine(features)  # noqa: E731
    ck = settings.checkpoint
    if ck.path and ck.key is not None:
        from pathlib import Path

        if Path(ck.path).exists():
            loaded = checkpoint.load(ck.path, ck.key.get_secret_value().encode())
            logger.info("models restored from checkpoint %s (%s)", ck.path, loaded.champion.version)
            return Scorer(
                scorer_settings(settings),
                factory,
                champion=loaded.champion,
                challenger=loaded.challenger,
                with_challenger=loaded.challenger is not None,
            )
    return Scorer(scorer_settings(settings), factory)


class Worker:
    """One member of the scoring consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.stats = WorkerStats()
        self.decoder = Decoder(
            max_bytes=s.max_event_bytes,
            max_future_skew_s=s.max_future_skew_s,
            min_event_time=s.min_event_time,
        )
        self.scorer = build_scorer(s)
        self._models_at_commit = self.scorer.save_models()
        """The models as of the last commit: an abort sends them back here."""
        self.state = StateStore(s, self.scorer)
        self.eos = s.processing_guarantee == "exactly_once"
        self.changelog = changelog_topic(s)
        ck = s.checkpoint
        self.checkpointer = (
            checkpoint.Checkpointer(ck.path, ck.key.get_secret_value().encode(), ck.interval_s)
            if ck.path and ck.key is not None
            else None
        )
        self.metrics = WorkerMetrics()
        self.server: MetricsServer | None = None
        self._last_gauges = 0.0
        self._last_loop = time.monotonic()
        self.ready = threading.Event()
        """Set once the worker has its partitions' state and consumes (for /readyz)."""
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._owned: set[int] = set()
        self._last_snapshot = time.monotonic()
        self._failures_in_batch = 0
        self._cluster_was_down = False
        self._open_offsets: dict[tuple[str, int], int] = {}
        """Next offsets of the batches processed since the last commit (the open commit unit)."""
        self._open_batches = 0
        """Batches in the open commit unit (0: everything processed is committed)."""
        self._unit = CommitUnit(self.state.delivered)
        """At-least-once: the open unit's delivery reports."""
        self._acks = AckQueue()
        """At-least-once: closed units whose offsets wait for their records' reports."""
        self._confirmed_offsets: list[TopicPartition] = []
        """At-least-once: the offsets last committed (those of the rollback models)."""
        self._last_commit = time.monotonic()
        self._txn = DeadlineCaller("txn")
        self._abandoned: list[Producer | Consumer] = []
        self._lost_at: float | None = None
        """When the group last took our partitions away for lack of heartbeats (None: not lost)."""
        self._seen: dict[int, dict[str, None]] = {}
        """Per partition, recent transaction ids (insertion order), to dead-letter repeats."""

    # -- life cycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and return (safe from signal handlers)."""
        self._stop.set()

    def _open(self) -> None:
        s = self.settings
        t = s.topics
        if s.metrics_port is not None and self.server is None:
            try:
                self.server = start_metrics_server(
                    s.metrics_port, s.metrics_host, self.metrics.registry, self._healthy, self.ready.is_set
                )
            except OSError as exc:
                raise ConfigError(
                    f"STREAM_SCORER_METRICS_PORT: cannot listen on {s.metrics_host}:{s.metrics_port}: {exc}"
                ) from None
        if s.create_topics:
            ensure_topics(s)
        n_tx, n_labels = partition_count(s, t.transactions), partition_count(s, t.labels)
        self.state.cluster_id = cluster_id(s)
        if n_tx == 0:
            raise ConfigError(f"STREAM_SCORER_TOPICS__TRANSACTIONS: topic {t.transactions!r} does not exist")
        if n_labels != n_tx:
            raise ConfigError(
                f"STREAM_SCORER_TOPICS__LABELS: topic {t.labels!r} has {n_labels} partitions and "
                f"{t.transactions!r} has {n_tx}; they must match so a card's label reaches its state"
            )
        ensure_topics(s, [self.changelog], compacted=[self.changelog], partitions=n_tx)
        if partition_count(s, self.changelog) != n_tx:
            raise ConfigError(f"the state changelog {self.changelog!r} must have {n_tx} partitions")
        self._new_producer()
        consumer_extra: dict[str, Any] = {"partition.assignment.strategy": "range"}
        if "instance_id" in s.model_fields_set:
            # Static membership: a restarted worker with the same id gets its partitions back at
            # once, without a rebalance of the group.
            consumer_extra["group.instance.id"] = s.instance_id
        if not self.eos:
            consumer_extra["on_commit"] = self._on_commit  # asynchronous commits report here
        self._consumer_extra = consumer_extra
        self._new_consumer()

    def _new_consumer(self) -> None:
        t = self.settings.topics
        self._consumer = make_consumer(self.settings, **self._consumer_extra)
        self._consumer.subscribe(
            [t.transactions, t.labels],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _new_producer(self) -> None:
        """Make the producer; with exactly-once, register its transactional id, which fences any
        earlier producer with the same id and aborts the transaction it left open."""
        s = self.settings
        extra: dict[str, Any] = {"error_cb": self._on_client_error}
        if self.eos:
            extra["transactional.id"] = f"{s.group_id}-{s.instance_id}"
            extra["transaction.timeout.ms"] = TXN_BROKER_TIMEOUT_MS
        self._producer = producer = make_producer(s, **extra)
        self._cluster_was_down = False
        if self.eos:
            self._retrying("init_transactions", lambda: producer.init_transactions(TXN_TIMEOUT_S))

    def _on_client_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._cluster_was_down = True
        client_error_cb(err)

    def _replace_producer(self, why: str) -> None:
        """Drop the producer and its open transaction, and start over from the committed state.

        Used when the cluster went away during a transaction: librdkafka can then block forever in
        ``send_offsets_to_transaction`` (confluentinc/librdkafka#5511, #5456). The new producer's
        ``init_transactions`` aborts the old transaction on the broker; a producer stuck in a call
        is kept referenced (destroying it would block too) and never used again.
        """
        logger.warning("%s: abandoning the transaction and rewinding to the committed offsets", why)
        if self._producer is not None:
            self._abandoned.append(self._producer)
        self._new_producer()
        self.stats.aborts += 1
        self._rewind()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called inside consume(), between batches: no transaction is open.
        tx_topic = self.settings.topics.transactions
        mine = sorted({p.partition for p in partitions if p.topic == tx_topic})
        wanted = [TopicPartition(tx_topic, p) for p in mine]
        committed = consumer.committed(wanted, timeout=TXN_TIMEOUT_S) if wanted else []
        for tp in committed:
            self.state.restore(tp.partition)
            self.stats.restores += 1
            self._recall_ids(tp.partition, tp.offset)
        self._owned.update(mine)
        self._lost_at = None
        # What is alive now (modules, models, restored state) lives as long as the worker: out of
        # the cyclic collector's sight, a full collection no longer stops the stream for tens of
        # milliseconds to walk it all again.
        gc.freeze()
        self.ready.set()
        logger.info("assigned partitions %s", mine)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commit what was processed, state included: the new owner restores it from the
        # changelog. A snapshot now makes our own restore quick if the partition comes back.
        if self._open_batches or self._acks:
            self._commit(wait=True)
        mine = sorted({p.partition for p in partitions if p.topic == self.settings.topics.transactions})
        for p in mine:
            if p in self._owned:
                self._snapshot_quietly(p)
                self.state.drop(p)
                self._owned.discard(p)
            self._seen.pop(p, None)
        logger.info("revoked partitions %s", mine)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another worker may own them already; our state may be stale, and
        # what we processed since the last commit is theirs to redo.
        if self._open_batches or self._acks:
            self._abandon_open()
        for p in {p.partition for p in partitions if p.topic == self.settings.topics.transactions}:
            self.state.drop(p)
            self._owned.discard(p)
            self._seen.pop(p, None)
        if self._owned:
            self._rewind()  # partitions still ours go back to their last commit too
        self._lost_at = time.monotonic()
        logger.warning("lost partitions %s", sorted(p.partition for p in partitions))

    def run(self) -> WorkerStats:
        """Consume and score until :meth:`stop` is called; return the counts."""
        self._open()
        s = self.settings
        logger.info(
            "worker started: group=%s topics=%s,%s guarantee=%s hot path=%s",
            s.group_id,
            s.topics.transactions,
            s.topics.labels,
            s.processing_guarantee,
            "C" if model_kernels.NATIVE and card_layout.NATIVE else "Python (C extensions not in use)",
        )
        try:
            while not self._stop.is_set():
                msgs = self._next_batch()
                if msgs:
                    self.process_batch(msgs)
                elif self._open_batches and self._commit_due():
                    self._commit()
                self._housekeeping()
            if self._open_batches or self._acks:
                self._commit(wait=True)
        finally:
            self._close()
        logger.info("worker stopped: %s", self.stats.as_dict())
        return self.stats

    def _next_batch(self) -> list[Message]:
        """What has arrived, up to ``batch_size``, without waiting for a batch to fill.

        ``consume(n, timeout)`` waits for ``n`` records or the timeout: under light traffic every
        record would wait out the timeout. Instead take what is there; if nothing is, wait for
        the first record only, then take what came with it.
        """
        consumer, n, wait = self._consumer, self.settings.batch_size, self.settings.poll_timeout_s
        assert consumer is not None
        msgs: list[Message] = consumer.consume(n, 0)
        if not msgs:
            if self._open_batches:  # wake up in time for the commit
                wait = min(wait, max(0.0, self._last_commit + self.settings.commit_interval_s - time.monotonic()))
            if self._acks:  # and soon, to commit units as their reports arrive
                wait = min(wait, 0.005)
            msgs = consumer.consume(1, wait)
            if msgs and n > 1:
                msgs += consumer.consume(n - 1, 0)
        return msgs

    @property
    def abandoned_clients(self) -> int:
        """Clients given up on (stuck in a call, or out of the group); destroying one may block."""
        return len(self._abandoned)

    def _healthy(self) -> bool:
        """Alive: the loop turned within the last two minutes (a batch never takes that long)."""
        return time.monotonic() - self._last_loop < 120.0

    def _close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        try:
            for p in sorted(self._owned):
                self._snapshot_quietly(p)
            if self.checkpointer is not None:
                self.checkpointer.save(self.scorer.champion, self.scorer.challenger)
        finally:
            if self._producer is not None:
                self._producer.flush(30)
            if self._consumer is not None:
                self._consumer.close()
            self._consumer = self._producer = None

    def _housekeeping(self) -> None:
        """Per loop turn, not per event: snapshots and model checkpoints when they are due, and a
        consumer that stays out of its group after losing it is replaced."""
        now = self._last_loop = time.monotonic()
        if self._acks:
            self._confirm_units()
        if now - self._last_gauges >= 5.0:
            self._last_gauges = now
            self._update_gauges()
        if self._lost_at is not None and now - self._lost_at > CONSUMER_REJOIN_S:
            # After a broker restart librdkafka may keep asking a coordinator that no longer
            # exists (confluentinc/librdkafka#5511); a new consumer looks the coordinator up anew.
            logger.warning("no partitions %.0fs after losing them: replacing the consumer", now - self._lost_at)
            self._lost_at = None
            assert self._consumer is not None
            self._abandoned.append(self._consumer)
            self._new_consumer()
        idle = not self._open_batches and not self._acks  # memory == what is committed
        if now - self._last_snapshot >= self.settings.snapshot_interval_s and idle:
            self._last_snapshot = now
            for p in sorted(self._owned):
                self._snapshot_quietly(p)
        # Checkpoints between commits only: one never holds learning that may still be rolled back.
        if (
            self.checkpointer is not None
            and idle
            and self.checkpointer.maybe_save(self.scorer.champion, self.scorer.challenger) is not None
        ):
            self._models_at_commit = self.scorer.save_models()  # the new generation

    def _update_gauges(self) -> None:
        """State size, pending labels, model versions and consumer lag (every few seconds)."""
        m, scorer = self.metrics, self.scorer
        parts = list(scorer.partitions.values())
        m.state_entities.set(sum(st.engine.n_entities() for st in parts))  # type: ignore[attr-defined]
        m.pending.set(sum(len(st.pending) for st in parts))
        m.late.set(sum(getattr(st.engine, "late_events", 0) for st in parts))
        m.partitions.set(len(self._owned))
        m.model.clear()
        m.model.labels("champion", scorer.champion.version).set(1)
        if scorer.challenger is not None:
            m.model.labels("challenger", scorer.challenger.version).set(1)
        consumer = self._consumer
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

    def _snapshot_quietly(self, p: int) -> None:
        try:
            self.state.snapshot(p)
            self.stats.snapshots += 1
        except OSError as exc:
            logger.warning("snapshot of partition %d failed: %s", p, exc)

    # -- the hot path ---------------------------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.stats.delivery_failures += 1
            self._failures_in_batch += 1
            if self._failures_in_batch == 1:
                logger.warning("delivery failed: %s", err)

    def _on_changelog_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._on_delivery(err, msg)
        else:
            self.state.delivered(msg.partition(), msg.offset())  # type: ignore[arg-type,unused-ignore]  # set once delivered

    def process_batch(self, msgs: list[Message]) -> None:
        """Score one batch (steps 1-2 of the module docstring); commit if a commit is due."""
        assert self._producer is not None and self._consumer is not None
        t0 = time.perf_counter()
        now = time.time()
        producer = self._producer
        s = self.settings
        tx_topic = s.topics.transactions
        scores_topic = s.topics.scores
        decode = self.decoder.decode
        score = self.scorer.score
        apply_label = self.scorer.apply_label
        dumps = orjson.dumps
        # Exactly-once needs no report per score: a failed delivery fails the transaction's commit,
        # which aborts and rewinds (the changelog keeps its reports: they carry its offsets).
        unit = self._unit
        on_delivery = None if self.eos else unit.on_delivery
        produce = producer.produce
        next_offsets = self._open_offsets
        scored = dead = labels = applied = 0
        seen_by_partition = self._seen
        dedupe = s.dedupe_window
        if not self._open_batches:
            self._failures_in_batch = 0
            if self.eos:
                producer.begin_transaction()
        self._open_batches += 1

        for msg in msgs:
            err = msg.error()
            if err is not None:
                self._consumer_error(err)
                continue
            # Topic, partition and offset are set on every consumed record.
            topic: str = msg.topic()  # type: ignore[assignment,unused-ignore]
            partition: int = msg.partition()  # type: ignore[assignment,unused-ignore]
            next_offsets[(topic, partition)] = msg.offset() + 1  # type: ignore[operator,unused-ignore]
            if topic == tx_topic:
                txn = decode(msg.value(), now)
                if type(txn) is Rejection:
                    self._dead_letter(msg, txn)
                    dead += 1
                    continue
                if dedupe:
                    seen = seen_by_partition.get(partition)
                    if seen is None:
                        seen = seen_by_partition[partition] = {}
                    tid = txn.transaction_id  # type: ignore[union-attr]
                    if tid in seen:
                        self._dead_letter(msg, Rejection("duplicate", f"transaction_id {tid!r} was already scored"))
                        dead += 1
                        continue
                    seen[tid] = None
                    if len(seen) > dedupe:
                        del seen[next(iter(seen))]
                record = score(txn, partition, t0)  # type: ignore[arg-type]
                value = dumps(record)
                key = txn.card_id.encode()  # type: ignore[union-attr]
                try:
                    produce(scores_topic, value, key, on_delivery=on_delivery)
                except BufferError:
                    self._produce_blocking(scores_topic, value, key, on_delivery)
                scored += 1
            else:
                label = decode_label(msg.value(), s.max_event_bytes)
                if type(label) is Rejection:
                    self._dead_letter(msg, label)
                    dead += 1
                    continue
                assert isinstance(label, Label)
                labels += 1
                if apply_label(label.transaction_id, label.is_fraud, label.label_time.timestamp(), partition):
                    applied += 1

        unit.produced += scored  # the dead letters count themselves
        st = self.stats
        st.consumed += len(msgs)
        st.scored += scored
        st.dead_letters += dead
        st.labels += labels
        st.labels_applied += applied
        st.learned = self.scorer.stats.learned
        st.batches += 1
        m = self.metrics
        m.consumed.inc(len(msgs))
        m.scored.inc(scored)
        m.dead_letters.inc(dead)
        if labels:
            m.labels.labels("applied").inc(applied)
            m.labels.labels("unmatched").inc(labels - applied)
        m.latency.observe(time.perf_counter() - t0)
        if self._commit_due():
            self._commit()
        m.batch_seconds.observe(time.perf_counter() - t0)

    def _commit_due(self) -> bool:
        """Commits are at least ``commit_interval_s`` apart: a record that comes after a quiet
        spell commits at once, and a busy stream costs the cluster a bounded number of
        transactions, however its records are spread over batches."""
        return time.monotonic() - self._last_commit >= self.settings.commit_interval_s

    def _commit(self, wait: bool = False) -> None:
        """Steps 3-4 for every batch since the last commit: the state they changed, one changelog
        record per changed key, then the offsets, in one transaction (or, at-least-once, once
        every record is acknowledged: see :meth:`_close_alos_unit`; ``wait`` waits for that)."""
        assert self._producer is not None
        produce = self._producer.produce
        changelog, unit = self.changelog, self._unit
        # The reports carry the changelog's offsets (StateStore.delivered keeps the highest). In a
        # transaction one per partition, on its last record, is enough: the idempotent producer
        # keeps a partition's order, and a failed record fails the commit. At-least-once needs a
        # report per record, to know that every one of them is written before the offsets.
        last_cb = self._on_changelog_delivery if self.eos else unit.on_changelog_delivery
        each = None if self.eos else last_cb

        def send(p: int, key: bytes, value: bytes | None, cb: Any) -> None:
            try:
                produce(changelog, value, key, partition=p, on_delivery=cb)
            except BufferError:
                self._produce_blocking(changelog, value, key, cb, partition=p)

        n_changes = 0
        for p in {p for (_, p) in self._open_offsets}:
            last: tuple[bytes, bytes | None] | None = None
            for change in self.state.changes(p):
                if last is not None:
                    send(p, last[0], last[1], each)
                    n_changes += 1
                last = change
            if last is not None:
                send(p, last[0], last[1], last_cb)
                n_changes += 1
        st, m = self.stats, self.metrics
        st.changelog_records += n_changes
        if self._open_batches:
            m.batches_per_commit.observe(self._open_batches)
        had_open = bool(self._open_batches)
        offsets = self._close_unit()
        if not self.eos:
            unit.produced += n_changes
            self._close_alos_unit(unit, offsets, had_open, wait)
            return
        aborts = st.aborts
        self._commit_transaction([TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        self._last_commit = time.monotonic()
        if st.aborts > aborts:
            m.aborts.inc()  # and the models went back to the last commit (see _rewind)
        else:
            m.commits.inc()
            self._models_at_commit = self.scorer.save_models()

    def _close_unit(self) -> dict[tuple[str, int], int]:
        """End the open commit unit; return its next offsets."""
        offsets = self._open_offsets
        self._open_offsets = {}
        self._open_batches = 0
        self._unit = CommitUnit(self.state.delivered)
        return offsets

    def _abandon_open(self) -> None:
        """Drop the commit unit without committing it (its partitions were lost): abort the
        transaction; the records' new owner scores them again from the last commit, and the
        models forget what they learned from them."""
        self._close_unit()
        self._acks.clear()  # at-least-once: units in flight are not committed either
        self.scorer.restore_models(self._models_at_commit)
        if self.eos and self._producer is not None:
            producer = self._producer
            try:
                self._retrying("abort_transaction", lambda: producer.abort_transaction(TXN_TIMEOUT_S))
            except (KafkaException, CallTimedOut) as exc:
                self._replace_producer(f"abort after losing the partitions failed ({exc})")
                return
            self.stats.aborts += 1

    def _produce_blocking(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        cb: Any,
        partition: int = -1,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """The local queue is full: serve delivery reports until there is room (back-pressure)."""
        assert self._producer is not None
        while True:
            self._producer.poll(0.05)
            try:
                self._producer.produce(topic, value, key, partition=partition, on_delivery=cb, headers=headers)
                return
            except BufferError:
                continue

    # -- commit ---------------------------------------------------------------------------------

    def _commit_transaction(self, offsets: list[TopicPartition]) -> None:
        """Steps 4-5: offsets into the transaction, commit; abort and rewind if it cannot commit."""
        assert self._producer is not None and self._consumer is not None
        producer, consumer = self._producer, self._consumer
        if self._cluster_was_down:
            self._replace_producer("the cluster was unreachable during the transaction")
            return
        try:
            if offsets:
                # The group metadata is read here, on the thread that polls the consumer, not in
                # the helper: inside a rebalance callback (a commit on revoke), asking for it from
                # another thread can wait on the rebalance that is waiting on us.
                group = consumer.consumer_group_metadata()
                self._retrying(
                    "send_offsets_to_transaction",
                    lambda: producer.send_offsets_to_transaction(offsets, group, TXN_TIMEOUT_S),
                )
            self._retrying("commit_transaction", lambda: producer.commit_transaction(TXN_TIMEOUT_S))
            self.stats.commits += 1
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if not err.txn_requires_abort():
                raise
            logger.warning("transaction aborted (%s); rewinding to the committed offsets", err)
            self._retrying("abort_transaction", lambda: producer.abort_transaction(TXN_TIMEOUT_S))
            self.stats.aborts += 1
            self._rewind()
        except CallTimedOut as exc:
            self._replace_producer(str(exc))

    def _retrying(self, what: str, call: Any) -> None:
        """Call a transactional API, retrying while its error is retriable (e.g. broker away).

        The call runs on a helper thread so that a call that ignores its own timeout cannot
        hold the worker forever: past ``TXN_WEDGED_S`` it raises :class:`CallTimedOut`.
        """
        last_warning = 0.0
        while True:
            try:
                try:
                    self._txn.call(call, TXN_WEDGED_S)
                except CallTimedOut as exc:
                    raise CallTimedOut(f"{what} {exc}") from None
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not err.retriable():
                    raise
                now = time.monotonic()
                if now - last_warning > 10.0:
                    logger.warning("%s: %s; retrying until the cluster answers", what, err)
                    last_warning = now
                time.sleep(0.5)

    # -- at-least-once commits ----------------------------------------------------------------

    def _close_alos_unit(
        self, unit: CommitUnit, offsets: dict[tuple[str, int], int], had_open: bool, wait: bool,
    ) -> None:
        """Queue the closed unit for confirmation and go on; wait for every report instead when
        asked to, when a snapshot or checkpoint is due (they need memory == committed), or when
        too many units are in flight (the cluster is slow: back-pressure)."""
        if had_open:
            unit.offsets = offsets
            unit.models = self.scorer.save_models()  # the rollback point once it is confirmed
            self._acks.push(unit)
        self._last_commit = time.monotonic()
        if wait or self._sync_due() or len(self._acks) > MAX_UNITS_IN_FLIGHT:
            self._drain()
        else:
            self._confirm_units()

    def _sync_due(self) -> bool:
        now = time.monotonic()
        return now - self._last_snapshot >= self.settings.snapshot_interval_s or (
            self.checkpointer is not None and self.checkpointer.due(now)
        )

    def _confirm_units(self) -> None:
        """Per loop turn: serve delivery reports; commit the offsets of the units now fully
        acknowledged (asynchronously, in order), or rewind if a record failed."""
        assert self._producer is not None
        self._producer.poll(0)
        if self._acks.failed() is not None:
            self._delivery_failed()
            return
        unit = self._acks.pop_confirmed()
        if unit is not None:
            self._confirmed(unit, asynchronous=True)

    def _drain(self) -> None:
        """Wait for every delivery report, then commit what they confirm, synchronously."""
        self._drain_producer()
        if self._acks.failed() is not None:
            self._delivery_failed()
            return
        unit = self._acks.pop_confirmed()
        if self._acks:
            # Flushed, yet a unit misses reports: it counted records it did not produce.
            raise InvariantError(f"{len(self._acks)} commit units still wait for reports after a flush")
        if unit is not None:
            self._confirmed(unit, asynchronous=False)

    def _drain_producer(self) -> None:
        """Wait until every record produced has its delivery report (saying so once if it lasts)."""
        assert self._producer is not None
        warned = False
        while self._producer.flush(5.0) > 0:
            if not warned:
                logger.warning("waiting for Kafka to acknowledge the records in flight")
                warned = True

    def _confirmed(self, unit: CommitUnit, asynchronous: bool) -> None:
        """Every record up to ``unit`` is written: commit its offsets; its models become the
        rollback point."""
        assert self._consumer is not None
        self._models_at_commit = unit.models
        self.metrics.commits.inc()
        if not unit.offsets:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in unit.offsets.items()]
        self._confirmed_offsets = offsets
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            self.stats.commits += 1
        except KafkaException as exc:
            # A rebalance took the partitions away: their new owner scores from the last commit.
            logger.warning("commit failed (%s); the records may be scored again after a rebalance", exc)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            # A rebalance took the partitions away: their new owner scores from the last commit.
            logger.warning("asynchronous commit failed (%s); the records may be scored again", err)

    def _delivery_failed(self) -> None:
        """A record in flight failed: wait for the others, then rewind everything after the last
        confirmed unit (its offsets are committed again, synchronously, so that the broker's
        offsets and the rollback models agree)."""
        assert self._producer is not None and self._consumer is not None
        self._drain_producer()
        failed = self._acks.failed()
        n = self._acks.n_failed()
        logger.warning(
            "%d records in flight failed (first: %s); rewinding to the last confirmed commit",
            n, failed.first_error if failed is not None else None,
        )
        self.stats.delivery_failures += n
        self.stats.aborts += 1
        self.metrics.aborts.inc()
        self._acks.clear()
        self._close_unit()
        if self._confirmed_offsets:
            try:
                self._consumer.commit(offsets=self._confirmed_offsets, asynchronous=False)
            except KafkaException as exc:
                logger.warning("commit of the confirmed offsets failed (%s)", exc)
        self._rewind()

    def _rewind(self) -> None:
        """Forget what was not committed: state back to the changelog, the models back to their
        copy at the last commit (so the records are learned once when they come again), the
        consumer back to the committed offsets."""
        assert self._consumer is not None
        consumer = self._consumer
        self.scorer.restore_models(self._models_at_commit)
        for p in sorted(self._owned):
            self.state.restore(p)
            self.stats.restores += 1
        assignment = consumer.assignment()
        if not assignment:
            return
        tx_topic = self.settings.topics.transactions
        for tp in self._committed(consumer, assignment):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            if tp.topic == tx_topic and tp.partition in self._owned:
                self._recall_ids(tp.partition, tp.offset)  # the aborted records' ids come again

    def _committed(self, consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The group's committed offsets, waiting while the cluster does not answer: a rewind
        after the broker went away must not kill the worker when the coordinator is slow to return."""
        last_warning = 0.0
        while True:
            try:
                return consumer.committed(partitions, timeout=TXN_TIMEOUT_S)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not (err.retriable() or err.code() == KafkaError._TIMED_OUT):
                    raise
                now = time.monotonic()
                if now - last_warning > 10.0:
                    logger.warning("reading the committed offsets: %s; retrying until the cluster answers", err)
                    last_warning = now
                time.sleep(0.5)

    def _recall_ids(self, partition: int, committed: int) -> None:
        """Rebuild the partition's memory of recent transaction ids from the input itself: the
        valid, first-seen ids among the ``dedupe_window`` records before the committed offset,
        which is what a worker that never stopped would remember (the input is the durable copy;
        nothing extra is logged per event)."""
        n = self.settings.dedupe_window
        seen: dict[str, None] = {}
        self._seen[partition] = seen
        if not n or committed <= 0:
            return
        decode, now = self.decoder.decode, time.time()

        def remember(key: bytes, value: bytes | None) -> None:
            txn = decode(value, now)
            if type(txn) is Rejection or txn.transaction_id in seen:  # type: ignore[union-attr]
                return
            seen[txn.transaction_id] = None  # type: ignore[union-attr]
            if len(seen) > n:
                del seen[next(iter(seen))]

        read_partition(
            self.settings, partition, committed - n, remember,
            topic=self.settings.topics.transactions, end=committed,
        )

    # -- dead letters and errors ----------------------------------------------------------------

    def _dead_letter(self, msg: Message, rejection: Rejection) -> None:
        value = msg.value() or b""
        key = msg.key()
        ts_type, ts = msg.timestamp()
        record = {
            "schema_version": SCHEMA_VERSION,
            "source_topic": msg.topic(),
            "source_partition": msg.partition(),
            "source_offset": msg.offset(),
            "source_timestamp_ms": ts if ts_type else None,
            "key_b64": base64.b64encode(key).decode() if key is not None else None,
            "payload_b64": base64.b64encode(value).decode(),
            "error_kind": rejection.kind,
            "reason": rejection.reason,
            "errors": list(rejection.errors),
            "failed_at": datetime.now(UTC),
            "worker": self.settings.instance_id,
        }
        headers: list[tuple[str, str | bytes | None]] = [
            ("reason", rejection.reason.encode()[:1000]),
            ("error_kind", rejection.kind.encode()),
        ]
        assert self._producer is not None
        topic, data = self.settings.topics.dlq, orjson.dumps(record)
        cb = self._on_delivery if self.eos else self._unit.on_delivery
        try:
            self._producer.produce(topic, data, key, headers=headers, on_delivery=cb)
        except BufferError:
            self._produce_blocking(topic, data, key, cb, headers=headers)
        self._unit.produced += 1

    def _consumer_error(self, err: KafkaError) -> None:
        self.stats.consumer_errors += 1
        if err.fatal():
            raise KafkaException(err)
        logger.warning("consumer error: %s", err)
