"""The merchant stage: fold ``<group>.by-merchant`` into merchant states, publish them, exactly once.

``stream-scorer merchants`` runs one member of the consumer group ``<group>.merchants``. Per
batch it folds each record into its merchant (:class:`~.book.MerchantBook`: the windows of a
transaction, the fraud rates of a label) and marks the merchant dirty. At most every
``commit_interval_s`` it publishes every dirty merchant's whole state to the same partition of
the compacted ``<group>.merchant-features``, sweeps out the idle merchants (tombstones), and
commits: exactly once, the states and the input offsets go in one Kafka transaction, so the
topic always matches the offsets; at least once, the offsets are committed once the states are
written.

``<group>.merchant-features`` is both the card workers' global table and this stage's changelog
(as a Kafka Streams source-topic changelog): a partition assigned here is restored by reading it
whole (read committed), and an aborted transaction is undone the same way, with the consumer sent
back to the committed offsets. Each merchant lives in one partition of each topic
(:func:`~.records.partition_of`), so adding stages to the group needs nothing else.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_scorer.config import Settings
from stream_scorer.exceptions import StateError
from stream_scorer.features.merchant import MerchantState
from stream_scorer.kafka.admin import ensure_learning_topics, ensure_merchant_topics
from stream_scorer.kafka.clients import make_consumer, make_producer
from stream_scorer.kafka.offsets import Offsets, OpenUnit, committed_offsets, topic_partitions
from stream_scorer.kafka.transactions import Outcome, TransactionalProducer
from stream_scorer.merchants import records
from stream_scorer.merchants.book import MerchantBook
from stream_scorer.merchants.learning import MODEL_KEY, Learner, learn_topic, model_topic
from stream_scorer.merchants.sketches import SketchSet
from stream_scorer.metrics import MetricsServer, start_metrics_server
from stream_scorer.state import changelog

logger = logging.getLogger(__name__)


@dataclass
class StagePartition:
    """The merchants of one partition, and which changed since the last publication."""

    sketches: SketchSet
    """The quantile sketches of the binned values of this partition's transactions."""
    merchants: dict[str, MerchantState] = field(default_factory=dict)
    dirty: dict[str, int] = field(default_factory=dict)
    """Merchant id -> wall-clock ms of the oldest record folded since its last publication."""
    evicted: set[str] = field(default_factory=set)
    sketches_dirty: bool = False
    watermark: float = -math.inf
    """The latest time of any record of this partition (the eviction clock)."""
    next_sweep: float = -math.inf


@dataclass
class StageStats:
    events: int = 0
    labels: int = 0
    refused: int = 0
    published: int = 0
    tombstones: int = 0
    commits: int = 0
    aborts: int = 0
    restores: int = 0
    late: int = 0
    examples: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class StageMetrics:
    """The stage's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        p = "stream_scorer_merchant_stage_"
        self.records = Counter(p + "records", "Records folded, by kind.", ["kind"], registry=r)
        self.examples = Counter(p + "examples_learned", "Labelled feature vectors the learner learned.", registry=r)
        self.refused = Counter(p + "records_refused", "Records that were not by-merchant records.", registry=r)
        self.published = Counter(p + "states_published", "Merchant states published.", registry=r)
        self.tombstones = Counter(p + "tombstones", "Idle merchants evicted (tombstones published).", registry=r)
        self.commits = Counter(p + "commits", "Commits.", registry=r)
        self.aborts = Counter(p + "aborts", "Commit units rolled back and consumed again.", registry=r)
        self.merchants = Gauge(p + "merchants", "Merchants held.", registry=r)
        self.lag = Gauge(
            p + "consumer_lag", "Records behind the end of each owned partition.", ["partition"], registry=r
        )
        self.commit_seconds = Histogram(
            p + "commit_seconds", "Time to publish and commit one unit.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0), registry=r,
        )


class MerchantStage:
    """One member of the merchant stage's consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.book = MerchantBook(s.features)
        self.group = records.stage_group(s.group_id)
        self.in_topic = records.by_merchant_topic(s.group_id)
        self.out_topic = records.features_topic(s.group_id)
        self.eos = s.processing_guarantee == "exactly_once"
        self.parts: dict[int, StagePartition] = {}
        self.learning = s.learning == "stage"
        self.learn_topic = learn_topic(s.group_id)
        self.model_topic = model_topic(s.group_id)
        self.learner: Learner | None = None
        """The shared model's learner, while this member owns ``<group>.learn`` (see
        :mod:`.learning`)."""
        self.stats = StageStats()
        self.metrics = StageMetrics()
        self.unit = OpenUnit(s.commit_interval_s)
        self.ready = threading.Event()
        txn_id = f"{self.group}-{s.instance_id}" if self.eos else None
        self.out = TransactionalProducer(lambda extra: make_producer(s, **extra), txn_id)
        self._consumer: Consumer | None = None
        self._server: MetricsServer | None = None
        self._stop = threading.Event()
        self._failed = 0
        self._last_gauges = 0.0

    def stop(self) -> None:
        """Finish the batch, commit and return (safe from signal handlers)."""
        self._stop.set()

    # -- life cycle -----------------------------------------------------------------------------

    def run(self) -> StageStats:
        """Fold and publish until :meth:`stop`; return the counts."""
        s = self.settings
        if s.metrics_port is not None:
            self._server = start_metrics_server(
                s.metrics_port, s.metrics_host, self.metrics.registry, ready=self.ready.is_set,
                setting="STREAM_SCORER_METRICS_PORT",
            )
        ensure_merchant_topics(s)
        topics = [self.in_topic]
        if self.learning:
            ensure_learning_topics(s)
            topics.append(self.learn_topic)
        self.out.start()
        self._consumer = make_consumer(s, group_id=self.group, **{"partition.assignment.strategy": "range"})
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
        logger.info("merchant stage started: group=%s %s -> %s guarantee=%s", self.group, self.in_topic,
                    self.out_topic, s.processing_guarantee)
        try:
            while not self._stop.is_set():
                msgs = self._consumer.consume(s.batch_size, self.unit.wait_s(s.poll_timeout_s) if self.unit.batches
                                              else s.poll_timeout_s)
                if msgs:
                    self.process(msgs)
                if self.unit.batches and self.unit.due():
                    self._commit()
                self._gauges()
            if self.unit.batches:
                self._commit()
        finally:
            if self._server is not None:
                self._server.close()
            self.out.close()
            if self._consumer is not None:
                self._consumer.close()
            self._consumer = None
        logger.info("merchant stage stopped: %s", self.stats.as_dict())
        return self.stats

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self.learn_topic:
                self._restore_learner()
            else:
                self._restore(tp.partition)
        self.ready.set()
        logger.info("merchant stage assigned partitions %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.unit.batches:
            self._commit()
        for tp in partitions:
            if tp.topic == self.learn_topic:
                self.learner = None
            else:
                self.parts.pop(tp.partition, None)
        logger.info("merchant stage revoked partitions %s", sorted(tp.partition for tp in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.unit.batches:
            self.unit.close()
            if self.eos:
                self.stats.aborts += 1
                self.out.abort()
            self.unit.committed()
        for tp in partitions:
            if tp.topic == self.learn_topic:
                self.learner = None
            else:
                self.parts.pop(tp.partition, None)
        if self.parts or self.learner is not None:
            self._rewind()
        logger.warning("merchant stage lost partitions %s", sorted(tp.partition for tp in partitions))

    # -- restore --------------------------------------------------------------------------------

    def _restore(self, p: int) -> None:
        """Partition ``p``'s merchants from the features topic, as committed."""
        part = self.parts[p] = StagePartition(sketches=SketchSet(self.settings.features))
        book = self.book

        def apply(key: bytes, value: bytes | None) -> None:
            if key == records.SKETCHES_KEY:
                if value is not None:
                    try:
                        part.sketches.loads(value)
                    except StateError as exc:
                        raise StateError(f"{self.out_topic}[{p}]: {exc}") from None
                return
            ident = key.decode()
            if value is None:
                part.merchants.pop(ident, None)
                return
            try:
                m, _ = book.loads(ident, value)
            except StateError as exc:
                raise StateError(f"{self.out_topic}[{p}]: {exc}") from None
            part.merchants[ident] = m
            latest = book.latest(m)
            if latest > part.watermark:
                part.watermark = latest

        n, _ = changelog.read_partition(self.settings, p, 0, apply, topic=self.out_topic)
        self.stats.restores += 1
        logger.info("merchant stage partition %d restored: %d merchants from %d records", p, len(part.merchants), n)

    def _restore_learner(self) -> None:
        """The learner, from the latest published model (a new one if none)."""
        learner = Learner(self.settings)
        latest: list[bytes] = []

        def apply(key: bytes, value: bytes | None) -> None:
            if key == MODEL_KEY and value is not None:
                latest[:] = [value]

        read_partition = changelog.read_partition
        n, _ = read_partition(self.settings, 0, 0, apply, topic=self.model_topic)
        if latest:
            learner.loads(latest[0])
        self.learner = learner
        logger.info("learner restored: %d examples learned (%d records read)", learner.examples, n)

    def _rewind(self) -> None:
        """Back to the last commit: every owned partition restored, the consumer at its offsets."""
        consumer = self._consumer
        assert consumer is not None
        for p in list(self.parts):
            self._restore(p)
        if self.learner is not None:
            self._restore_learner()
        assignment = consumer.assignment()
        for tp in committed_offsets(consumer, assignment) if assignment else []:
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))

    # -- the hot path ---------------------------------------------------------------------------

    def process(self, msgs: list[Message]) -> None:
        """Fold one batch into the merchants of its partitions."""
        if not self.unit.batches and self.eos:
            self.out.begin()
        book, parts, decode = self.book, self.parts, records.decode
        fold_event, fold_label = book.fold_event, book.fold_label
        offsets: Offsets = {}
        events = labels = refused = late = examples = 0
        learn, learner = self.learn_topic, self.learner
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                logger.warning("merchant stage: consumer error: %s", err)
                continue
            p: int = msg.partition()  # type: ignore[assignment]
            topic: str = msg.topic()  # type: ignore[assignment]
            offsets[(topic, p)] = msg.offset() + 1  # type: ignore[operator]
            if topic == learn:
                if learner is not None:
                    if learner.fold(msg.value()):
                        examples += 1
                    else:
                        refused += 1
                continue
            part = parts.get(p)
            if part is None:  # not (or no longer) ours
                continue
            key = msg.key()
            try:
                kind, ts, number, values = decode(msg.value())
                ident = key.decode() if key else ""
            except (ValueError, UnicodeDecodeError):
                refused += 1
                continue
            if not ident:
                refused += 1
                continue
            m = part.merchants.get(ident)
            if m is None:
                m = part.merchants[ident] = book.new(ident)
            if kind == records.EVENT:
                if fold_event(m, ts, number):
                    late += 1
                events += 1
                if values and part.sketches.fold(values):
                    part.sketches_dirty = True
            else:
                fold_label(m, ts, number > 0.5)
                labels += 1
            if ts > part.watermark:
                part.watermark = ts
            if ident not in part.dirty:
                part.dirty[ident] = msg.timestamp()[1]
        self.unit.add(offsets)
        st = self.stats
        st.events += events
        st.labels += labels
        st.late += late
        st.examples += examples
        if refused:
            if not st.refused:
                logger.error("merchant stage: %s holds records that are not by-merchant records", self.in_topic)
            st.refused += refused
            self.metrics.refused.inc(refused)
        self.metrics.examples.inc(examples)
        self.metrics.records.labels("event").inc(events)
        self.metrics.records.labels("label").inc(labels)

    def _sweep(self, part: StagePartition) -> None:
        """Evict the idle merchants (the engine's rule), at most once per ``evict_interval_s``."""
        wm = part.watermark
        if wm < part.next_sweep:
            return
        part.next_sweep = wm + self.settings.features.evict_interval_s
        idle = [k for k, m in part.merchants.items() if self.book.idle(m, wm)]
        for k in idle:
            del part.merchants[k]
            part.dirty.pop(k, None)
            part.evicted.add(k)

    # -- commit ---------------------------------------------------------------------------------

    def _commit(self) -> None:
        """Publish the dirty merchants and the tombstones, then commit with the input offsets."""
        t0 = time.perf_counter()
        consumer = self._consumer
        assert consumer is not None
        out = self.out
        produce = out.produce
        dumps = self.book.dumps
        published = tombstones = 0
        self._failed = 0
        cb = self._on_delivery
        for p, part in self.parts.items():
            self._sweep(part)
            for ident, source_ms in part.dirty.items():
                produce(self.out_topic, dumps(part.merchants[ident], source_ms), ident.encode(), cb, partition=p)
            published += len(part.dirty)
            part.dirty.clear()
            for ident in part.evicted:
                produce(self.out_topic, None, ident.encode(), cb, partition=p)
            tombstones += len(part.evicted)
            part.evicted.clear()
            if part.sketches_dirty:
                produce(self.out_topic, part.sketches.dumps(), records.SKETCHES_KEY, cb, partition=p)
                part.sketches_dirty = False
        learner = self.learner
        if learner is not None and learner.dirty:
            produce(self.model_topic, learner.dumps(), MODEL_KEY, cb, partition=0)
            learner.dirty = False
        offsets = self.unit.close()
        if self.eos:
            group = consumer.consumer_group_metadata()
            outcome = out.commit(topic_partitions(offsets), group)
            ok = outcome is Outcome.COMMITTED
        else:
            out.drain()
            ok = not self._failed
            if ok and offsets:
                consumer.commit(offsets=topic_partitions(offsets), asynchronous=False)
        self.unit.committed()
        st, m = self.stats, self.metrics
        if ok:
            st.commits += 1
            st.published += published
            st.tombstones += tombstones
            m.commits.inc()
            m.published.inc(published)
            m.tombstones.inc(tombstones)
        else:
            st.aborts += 1
            m.aborts.inc()
            self._rewind()
        m.commit_seconds.observe(time.perf_counter() - t0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed += 1
            if self._failed == 1:
                logger.warning("merchant stage: delivery failed: %s", err)

    def _gauges(self) -> None:
        now = time.monotonic()
        if now - self._last_gauges < 5.0:
            return
        self._last_gauges = now
        self.metrics.merchants.set(sum(len(p.merchants) for p in self.parts.values()))
        consumer = self._consumer
        if consumer is None:
            return
        lag: dict[str, int] = {}
        try:
            if self.parts:
                positions = consumer.position([TopicPartition(self.in_topic, p) for p in self.parts])
                for tp in positions:
                    _, high = consumer.get_watermark_offsets(TopicPartition(self.in_topic, tp.partition), cached=True)
                    if tp.offset >= 0 and high >= 0:
                        lag[str(tp.partition)] = max(0, high - tp.offset)
        except KafkaException:
            return
        # Only the partitions owned now: one given to another stage is that stage's to report (a
        # sum over the group's members would count it twice).
        self.metrics.lag.clear()
        for p, n in lag.items():
            self.metrics.lag.labels(p).set(n)

    def held(self) -> dict[str, MerchantState]:
        """Every merchant this member holds (tests and benchmarks compare them)."""
        return {k: m for part in self.parts.values() for k, m in part.merchants.items()}


def run_stage(settings: Settings) -> dict[str, Any]:
    """Run a merchant stage until SIGINT/SIGTERM; return its counts."""
    import signal

    stage = MerchantStage(settings)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stage.stop())
    return stage.run().as_dict()
