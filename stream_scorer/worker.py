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

This module drives; each protocol has a module of its own: the producer and its transactions
(:mod:`stream_scorer.kafka.transactions`), the open commit unit and committed offsets
(:mod:`stream_scorer.kafka.offsets`), at-least-once confirmation (:mod:`stream_scorer.kafka.acks`),
the changelog (:mod:`stream_scorer.state.changelog_writer`), de-duplication
(:mod:`stream_scorer.dedupe`), dead letters (:mod:`stream_scorer.dead_letters`), snapshots,
checkpoints and gauges (:mod:`stream_scorer.housekeeping`).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from stream_scorer.commits import Commits
from stream_scorer.config import Settings
from stream_scorer.dead_letters import dead_letter
from stream_scorer.decode import Decoder, Rejection, decode_label
from stream_scorer.dedupe import Dedupe, input_reader
from stream_scorer.events import Label
from stream_scorer.features import card as card_layout
from stream_scorer.housekeeping import Housekeeper
from stream_scorer.kafka.admin import check_worker_topics, cluster_id, ensure_learning_topics, ensure_merchant_topics
from stream_scorer.kafka.clients import make_consumer, make_producer
from stream_scorer.kafka.offsets import Offsets, committed_offsets
from stream_scorer.kafka.transactions import TransactionalProducer
from stream_scorer.merchants.learning import encode_example, learn_topic, names_crc
from stream_scorer.merchants.model_reader import ModelReader
from stream_scorer.merchants.records import by_merchant_topic
from stream_scorer.merchants.table import MerchantTable
from stream_scorer.merchants.table_reader import TableReader
from stream_scorer.metrics import MetricsServer, start_metrics_server
from stream_scorer.model import kernels as model_kernels
from stream_scorer.pipeline import build_scorer
from stream_scorer.state.changelog import changelog_topic
from stream_scorer.state.changelog_writer import ChangelogWriter
from stream_scorer.state.store import StateStore
from stream_scorer.worker_metrics import WorkerMetrics, WorkerStats

logger = logging.getLogger(__name__)

ADOPT_EVERY_S = 0.2
"""Least wall time between two adoptions of the shared learner's model (see _adopt_model)."""

MAX_REAPPLIED = 10_000
"""Own examples kept to learn again on top of an adopted model: the newest ones (a learner more
than this behind, or none running, must not make a worker hold every feature vector it learns)."""

CONSUMER_REJOIN_S = 45.0
"""A consumer that lost its partitions and has none back after this long is replaced."""


class Worker:
    """One member of the scoring consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.stats = WorkerStats()
        self.decoder = Decoder.from_settings(s)
        self.metrics = WorkerMetrics()
        self.table: MerchantTable | None = None
        self.table_reader: TableReader | None = None
        if s.merchant_features == "stage":
            self.table = MerchantTable(s.features)
            self.table_reader = TableReader(s, self.table, observe=self.metrics.table_staleness.observe)
        self.scorer = build_scorer(s, self.table)
        self.state = StateStore(s, self.scorer, self.table)
        self.model_reader: ModelReader | None = None
        if s.learning == "stage":
            self.scorer.learn_outbox = []
            self.model_reader = ModelReader(s, self.state.names)
        self._learn_topic = learn_topic(s.group_id)
        self._names = self.state.names
        self._names_crc = names_crc(self.state.names)
        # This worker's examples for the learner: a source id of this run, and sequence numbers;
        # those the adopted model may not hold yet are learned again on top of it.
        self._source = zlib.crc32(f"{s.instance_id}/{time.time_ns()}".encode()) or 1
        self._seq = self._committed_seq = 0
        self._examples: deque[tuple[int, dict[str, float], bool]] = deque(maxlen=MAX_REAPPLIED)
        self._next_adoption = 0.0
        self.eos = s.processing_guarantee == "exactly_once"
        self.server: MetricsServer | None = None
        self._last_loop = time.monotonic()
        self.ready = threading.Event()
        """Set once the worker has its partitions' state and consumes (for /readyz)."""
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._abandoned: list[Consumer] = []
        self._owned: set[int] = set()
        self._lost_at: float | None = None
        """When the group last took our partitions away for lack of heartbeats (None: not lost)."""
        self._rebalances = 0  # rebalance callbacks run so far
        self._by_merchant = by_merchant_topic(s.group_id)
        self._stage_warned = False
        txn_id = f"{s.group_id}-{s.instance_id}" if self.eos else None
        self.out = TransactionalProducer(lambda extra: make_producer(s, **extra), txn_id, retrying=self._retrying)
        inputs = (s.topics.transactions, s.topics.labels)
        self.changelog = ChangelogWriter(changelog_topic(s), self.state, self.out, inputs)
        self.commits = Commits(
            self.eos, s.commit_interval_s, self.out, self.changelog, self.state, self.scorer, self.stats, self.metrics
        )
        self.dedupe = Dedupe(s.dedupe_window)
        self.keeper = Housekeeper(s, self.state, self.scorer, self.metrics, self.stats)

    # -- life cycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and return (safe from signal handlers)."""
        self._stop.set()

    def _open(self) -> None:
        s = self.settings
        if s.metrics_port is not None and self.server is None:
            self.server = start_metrics_server(s.metrics_port, s.metrics_host, self.metrics.registry, self._healthy,
                                               self.ready.is_set, setting="STREAM_SCORER_METRICS_PORT")
        check_worker_topics(s, self.changelog.topic)
        self.state.cluster_id = cluster_id(s)
        if self.table is not None and self.table_reader is not None:
            # The whole table before any partition: a worker never scores on a half-read table.
            self.table.partitions = ensure_merchant_topics(s)
            self.table_reader.open(self.table.partitions)
            self.table_reader.bootstrap()
        if self.model_reader is not None:
            # The model of every label so far, before any partition (see merchants.learning).
            ensure_learning_topics(s)
            self.model_reader.open()
            self.model_reader.bootstrap()
            self._adopt_model(0.0)
        self.out.start()
        consumer_extra: dict[str, Any] = {"partition.assignment.strategy": "range"}
        if "instance_id" in s.model_fields_set:
            # Static membership: a restarted worker with the same id gets its partitions back at
            # once, without a rebalance of the group.
            consumer_extra["group.instance.id"] = s.instance_id
        if not self.eos:
            consumer_extra["on_commit"] = self.commits.acks.on_commit  # asynchronous commits report here
        self._consumer_extra = consumer_extra
        self._new_consumer()

    def _new_consumer(self) -> None:
        t = self.settings.topics
        self._consumer = make_consumer(self.settings, **self._consumer_extra)
        self._consumer.subscribe(
            [t.transactions, t.labels], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def _retrying(self, what: str, call: Any) -> None:
        """Every transactional call goes through here (the fault tests inject failures here)."""
        self.out.retry(what, call)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called inside consume(), between batches: no transaction is open.
        self._rebalances += 1
        t = self.settings.topics
        mine = sorted({p.partition for p in partitions if p.topic == t.transactions})
        wanted = [TopicPartition(topic, p) for p in mine for topic in (t.transactions, t.labels)]
        committed = {(tp.topic, tp.partition): tp.offset for tp in committed_offsets(consumer, wanted)} if mine else {}
        for p in mine:
            self._restore(p, committed)
            self._recall_ids(p, committed[(t.transactions, p)])
        self._owned.update(mine)
        self._lost_at = None
        # What is alive now lives as long as the worker: out of the cyclic collector's sight, a full
        # collection no longer stops the stream for tens of milliseconds to walk it all again.
        gc.freeze()
        self.ready.set()
        logger.info("assigned partitions %s", mine)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commit what was processed, state included: the new owner restores it from the
        # changelog. A snapshot now makes our own restore quick if the partition comes back.
        self._rebalances += 1
        if self.commits.open:
            self._commit(wait=True)
        mine = sorted({p.partition for p in partitions if p.topic == self.settings.topics.transactions})
        for p in mine:
            if p in self._owned:
                self.keeper.snapshot_quietly(p)
                self.state.drop(p)
                self._owned.discard(p)
            self.dedupe.drop(p)
        logger.info("revoked partitions %s", mine)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another worker may own them already; our state may be stale, and
        # what we processed since the last commit is theirs to redo.
        self._rebalances += 1
        if self.commits.open and not self.commits.abandon():
            self._rewind()  # the producer was replaced
        for p in {p.partition for p in partitions if p.topic == self.settings.topics.transactions}:
            self.state.drop(p)
            self._owned.discard(p)
            self.dedupe.drop(p)
        if self._owned:
            self._rewind()  # partitions still ours go back to their last commit too
        self._lost_at = time.monotonic()
        logger.warning("lost partitions %s", sorted(p.partition for p in partitions))

    def run(self) -> WorkerStats:
        """Consume and score until :meth:`stop` is called; return the counts."""
        self._open()
        s = self.settings
        logger.info("worker started: group=%s topics=%s,%s guarantee=%s hot path=%s", s.group_id, s.topics.transactions,
                    s.topics.labels, s.processing_guarantee,
                    "C" if model_kernels.NATIVE and card_layout.NATIVE else "Python (C extensions not in use)")
        clean = False
        try:
            reader, models = self.table_reader, self.model_reader
            while not self._stop.is_set():
                if reader is not None:
                    reader.poll()
                if models is not None:
                    models.poll()
                    self._adopt_model()
                msgs = self._next_batch()
                if msgs:
                    self.process_batch(msgs)
                elif self.commits.unit.batches and self.commits.unit.due():
                    self._commit()
                self._housekeeping()
            if self.commits.open:
                self._commit(wait=True)
            clean = True  # memory == committed: after a failure a snapshot would hold uncommitted work
        finally:
            self._close(save=clean)
        logger.info("worker stopped: %s", self.stats.as_dict())
        return self.stats

    def _next_batch(self) -> list[Message]:
        """What has arrived, up to ``batch_size``, without waiting for a batch to fill.

        ``consume(n, timeout)`` waits for ``n`` records or the timeout: under light traffic every
        record would wait out the timeout. Instead take what is there; if nothing is, wait for
        the first record only, then take what came with it. If a rebalance ran inside that second
        call, the first record is dropped: its partition may be gone, or rewound (it comes again).
        """
        consumer, n, wait = self._consumer, self.settings.batch_size, self.settings.poll_timeout_s
        assert consumer is not None
        msgs: list[Message] = consumer.consume(n, 0)
        if not msgs:
            msgs = consumer.consume(1, self.commits.wait_s(wait))
            if msgs and n > 1:
                rebalances = self._rebalances
                more = consumer.consume(n - 1, 0)
                msgs = msgs + more if self._rebalances == rebalances else more
        return msgs

    @property
    def abandoned_clients(self) -> int:
        """Clients given up on (stuck in a call, or out of the group); destroying one may block."""
        return len(self._abandoned) + len(self.out.abandoned)

    def _healthy(self) -> bool:
        """Alive: the loop turned within the last two minutes (a batch never takes that long)."""
        return time.monotonic() - self._last_loop < 120.0

    def _close(self, save: bool) -> None:
        """Release the clients; snapshot and checkpoint first after a clean stop only (see run())."""
        if self.server is not None:
            self.server.close()
            self.server = None
        try:
            if save:
                self.keeper.save_all(self._owned)
        finally:
            self.out.close()
            if self._consumer is not None:
                self._consumer.close()
            self._consumer = None
            if self.table_reader is not None:
                self.table_reader.close()
            if self.model_reader is not None:
                self.model_reader.close()

    def _housekeeping(self) -> None:
        """Per loop turn, not per event: commits of acknowledged units, gauges, snapshots and
        checkpoints when due, and a consumer that stays out of its group is replaced."""
        now = self._last_loop = time.monotonic()
        if self.commits.acks and not self.commits.confirm(self._consumer):
            self._rewind()
        if self.keeper.gauges_if_due(self._consumer, self._owned):
            self._table_gauges()
        if self._lost_at is not None and now - self._lost_at > CONSUMER_REJOIN_S:
            # After a broker restart librdkafka may keep asking a coordinator that no longer
            # exists (confluentinc/librdkafka#5511); a new consumer looks the coordinator up anew.
            logger.warning("no partitions %.0fs after losing them: replacing the consumer", now - self._lost_at)
            self._lost_at = None
            assert self._consumer is not None
            self._abandoned.append(self._consumer)
            self._new_consumer()
        # Only between commits (memory == what is committed): a checkpoint never holds learning
        # that may still be rolled back.
        if not self.commits.open and self.keeper.save_if_due(self._owned):
            self.commits.models_at_commit = self.scorer.save_models()  # the new generation

    # -- the hot path ---------------------------------------------------------------------------

    def process_batch(self, msgs: list[Message]) -> None:
        """Score one batch (steps 1-2 of the module docstring); commit if a commit is due."""
        assert self.out.producer is not None and self._consumer is not None
        t0 = time.perf_counter()
        now = time.time()
        producer = self.out.producer
        s = self.settings
        tx_topic = s.topics.transactions
        scores_topic = s.topics.scores
        decode = self.decoder.decode
        score = self.scorer.score
        apply_label = self.scorer.apply_label
        dumps = orjson.dumps
        commits = self.commits
        on_delivery = commits.score_cb
        produce = producer.produce
        next_offsets: Offsets = {}
        scored = dead = labels = applied = 0
        ids_by_partition = self.dedupe.partitions
        dedupe = self.dedupe if s.dedupe_window else None
        commits.begin()
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
                if dedupe is not None:
                    ids = ids_by_partition.get(partition) or dedupe.partition(partition)
                    if not ids.add(txn.transaction_id):  # type: ignore[union-attr]
                        tid = txn.transaction_id  # type: ignore[union-attr]
                        self._dead_letter(msg, Rejection("duplicate", f"transaction_id {tid!r} was already scored"))
                        dead += 1
                        continue
                record = score(txn, partition, t0)  # type: ignore[arg-type]
                value = dumps(record)
                key = txn.card_id.encode()  # type: ignore[union-attr]
                try:
                    produce(scores_topic, value, key, on_delivery=on_delivery)
                except BufferError:
                    self.out.produce_blocking(scores_topic, value, key, on_delivery)
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

        if self.table is not None and self.table.outbox:
            self._send_to_merchants()
        if self.scorer.learn_outbox:
            self._send_to_learner()
        commits.unit.add(next_offsets)
        commits.reports.produced += scored  # the dead letters count themselves
        self.stats.add_batch(len(msgs), scored, dead, labels, applied, self.scorer.stats.learned)
        self.metrics.add_batch(len(msgs), scored, dead, labels, applied, time.perf_counter() - t0)
        if commits.unit.due():
            self._commit()
        self.metrics.batch_seconds.observe(time.perf_counter() - t0)

    def _send_to_merchants(self) -> None:
        """The batch's transactions and labels, keyed by merchant, to the merchant stage."""
        assert self.table is not None
        self._send(self._by_merchant, self.table.outbox)
        self.table.outbox.clear()

    def _send_to_learner(self) -> None:
        """The batch's labelled feature vectors to the shared learner, numbered for adoption."""
        assert self.scorer.learn_outbox is not None
        outbox = self.scorer.learn_outbox
        names, crc, source, seq, examples = self._names, self._names_crc, self._source, self._seq, self._examples
        out: list[tuple[int, bytes | None, bytes]] = []
        for x, y in outbox:
            seq += 1
            examples.append((seq, x, y))
            out.append((0, None, encode_example(x, y, names, crc, source, seq)))
        self._seq = seq
        self._send(self._learn_topic, out)
        outbox.clear()

    def _send(self, topic: str, records: Sequence[tuple[int, bytes | None, bytes]]) -> None:
        """``(partition, key, value)`` records to ``topic``: in the open transaction (exactly
        once) or counted in the unit's reports (at least once), as dead letters are."""
        assert self.out.producer is not None
        cb = self.commits.record_cb
        produce = self.out.producer.produce
        for partition, key, value in records:
            try:
                produce(topic, value, key, partition=partition, on_delivery=cb)
            except BufferError:
                self.out.produce_blocking(topic, value, key, cb, partition)
        self.commits.reports.produced += len(records)

    def _adopt_model(self, now: float | None = None) -> None:
        """Score with the learner's latest model, between commits only and at most every
        ``ADOPT_EVERY_S``, with this worker's own examples it does not hold yet learned again on
        top; the result becomes the rollback point."""
        reader = self.model_reader
        if reader is None or self.commits.open:
            return
        now = time.monotonic() if now is None else now
        if now < self._next_adoption:
            return
        taken = reader.take()
        if taken is None:
            return
        self._next_adoption = now + ADOPT_EVERY_S
        models, progress = taken
        examples, held = self._examples, progress.get(self._source, 0)
        while examples and examples[0][0] <= held:
            examples.popleft()
        scorer = self.scorer
        learned = scorer.stats.learned  # this worker's own count, which the adoption keeps
        scorer.restore_models(models)
        for _, x, y in examples:
            scorer.learn_features(x, y)
        scorer.stats.learned = learned
        self.commits.models_at_commit = scorer.save_models()
        self.metrics.model_adoptions.inc()

    def _table_gauges(self) -> None:
        table, reader = self.table, self.table_reader
        if table is None or reader is None:
            return
        m = self.metrics
        m.table_merchants.set(len(table.merchants))
        m.table_lag.set(reader.lag())
        if not self._stage_warned and table.applied == 0 and self.stats.scored >= 10_000:
            self._stage_warned = True
            logger.warning(
                "%d transactions scored and no merchant state has arrived on %s: is a merchant stage "
                "(stream-scorer merchants) running for group %s? Merchant features read as new merchants "
                "until one does (or set STREAM_SCORER_MERCHANT_FEATURES=partition)",
                self.stats.scored, reader.topic, self.settings.group_id,
            )

    def _dead_letter(self, msg: Message, rejection: Rejection) -> None:
        value, headers = dead_letter(msg, rejection, self.settings.instance_id)
        self.out.produce(self.settings.topics.dlq, value, msg.key(), self.commits.record_cb, headers=headers)
        self.commits.reports.produced += 1

    def _consumer_error(self, err: KafkaError) -> None:
        self.stats.consumer_errors += 1
        if err.fatal():
            raise KafkaException(err)
        logger.warning("consumer error: %s", err)

    # -- commit ---------------------------------------------------------------------------------

    def _commit(self, wait: bool = False) -> None:
        """Steps 3-5 (:meth:`stream_scorer.commits.Commits.commit`); rewind if rolled back."""
        seq = self._seq
        if not self.commits.commit(self._consumer, wait, self.keeper.sync_due()):
            self._rewind()
        elif self.model_reader is not None:
            self._committed_seq = seq
            self._adopt_model()

    def _rewind(self) -> None:
        """Forget what was not committed: state back to the changelog, the models back to their
        copy at the last commit (so the records are learned once when they come again), the
        consumer back to the committed offsets."""
        consumer = self._consumer
        assert consumer is not None
        if self.table is not None:
            self.table.outbox.clear()
        if self.scorer.learn_outbox:
            self.scorer.learn_outbox.clear()
        # The rolled-back unit's examples were never committed: the learner never sees them.
        while self._examples and self._examples[-1][0] > self._committed_seq:
            self._examples.pop()
        self._seq = self._committed_seq
        self.scorer.restore_models(self.commits.models_at_commit)
        assignment = consumer.assignment()
        committed = committed_offsets(consumer, assignment) if assignment else []
        offsets = {(tp.topic, tp.partition): tp.offset for tp in committed}
        for p in sorted(self._owned):
            self._restore(p, offsets)
        tx_topic = self.settings.topics.transactions
        for tp in committed:
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
            if tp.topic == tx_topic and tp.partition in self._owned:
                self._recall_ids(tp.partition, tp.offset)  # the aborted records' ids come again

    def _restore(self, p: int, committed: Offsets) -> None:
        """Partition ``p``'s state from the changelog; at least once, without what units past the
        ``committed`` offsets wrote (their input comes again: it must not count twice)."""
        t = self.settings.topics
        tx, labels = committed.get((t.transactions, p)), committed.get((t.labels, p))
        self.state.restore(p, None if self.eos or tx is None or labels is None else (tx, labels))
        self.stats.restores += 1

    def _recall_ids(self, p: int, committed: int) -> None:
        self.dedupe.recall(p, committed, input_reader(self.settings, p), self.decoder.decode)
