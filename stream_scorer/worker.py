"""The live path: consume a batch, decode, compute features, score, produce, then commit.

At-least-once: a batch's offsets are committed only after every record it produced (scores and
dead letters) was acknowledged by Kafka. A crash between the two re-scores at most that batch.

Per batch (the steps, in the order correctness needs):

1. ``consume()`` up to ``batch_size`` records;
2. per record: decode and validate, then either produce a dead letter, or compute features from
   state before the event, score, produce the score, and learn from an inline label;
3. ``flush()`` the producer: every record of the batch is acknowledged, or the batch failed;
4. if any delivery failed, stop without committing (the batch will be consumed again);
5. commit the next offset of every partition the batch touched, synchronously.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from stream_scorer.config import Settings
from stream_scorer.decode import Decoder, Rejection
from stream_scorer.events import SCHEMA_VERSION
from stream_scorer.exceptions import DeliveryError
from stream_scorer.features import CardFeatures
from stream_scorer.kafka.admin import ensure_topics
from stream_scorer.kafka.clients import make_consumer, make_producer
from stream_scorer.model import OnlineLogit, band_of

logger = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """Running counts of what the worker did; read by the demo and the metrics."""

    consumed: int = 0
    scored: int = 0
    dead_letters: int = 0
    learned: int = 0
    batches: int = 0
    commits: int = 0
    delivery_failures: int = 0
    consumer_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Worker:
    """One member of the scoring consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = WorkerStats()
        self.decoder = Decoder(
            max_bytes=settings.max_event_bytes,
            max_future_skew_s=settings.max_future_skew_s,
            min_event_time=settings.min_event_time,
        )
        self.features = CardFeatures()
        self.model = OnlineLogit(settings.model)
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its batch, flush, commit and return (safe from signal handlers)."""
        self._stop.set()

    def _open(self) -> None:
        s = self.settings
        if s.create_topics:
            ensure_topics(s)
        self._producer = make_producer(s)
        self._consumer = make_consumer(s)
        self._consumer.subscribe(
            [s.topics.transactions], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("assigned partitions %s", [p.partition for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Offsets of finished batches are already committed: nothing of ours is in flight here.
        logger.info("revoked partitions %s", [p.partition for p in partitions])

    def run(self) -> WorkerStats:
        """Consume and score until :meth:`stop` is called; return the counts."""
        self._open()
        assert self._consumer is not None and self._producer is not None
        consumer = self._consumer
        logger.info("worker started: group=%s topic=%s", self.settings.group_id, self.settings.topics.transactions)
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(self.settings.batch_size, self.settings.poll_timeout_s)
                if msgs:
                    self.process_batch(msgs)
        finally:
            self._close()
        logger.info("worker stopped: %s", self.stats.as_dict())
        return self.stats

    def _close(self) -> None:
        if self._producer is not None:
            self._producer.flush(30)
        if self._consumer is not None:
            self._consumer.close()
        self._consumer = self._producer = None

    # -- the hot path ---------------------------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.stats.delivery_failures += 1

    def process_batch(self, msgs: list[Message]) -> None:
        """Score one batch end to end and commit it (steps 2-5 of the module docstring)."""
        assert self._producer is not None and self._consumer is not None
        t0 = time.perf_counter()
        now = time.time()
        producer = self._producer
        produce = producer.produce
        on_delivery = self._on_delivery
        decode = self.decoder.decode
        features = self.features.update
        model = self.model
        score_one = model.score
        s = self.settings
        scores_topic, dlq_topic = s.topics.scores, s.topics.dlq
        review, decline = s.review_threshold, s.decline_threshold
        version = model.version
        failures_before = self.stats.delivery_failures
        next_offsets: dict[tuple[str, int], int] = {}
        scored = dead = learned = 0

        for msg in msgs:
            err = msg.error()
            if err is not None:
                self._consumer_error(err)
                continue
            next_offsets[(msg.topic(), msg.partition())] = msg.offset() + 1  # type: ignore[operator]
            value = msg.value()
            txn = decode(value, now)
            if type(txn) is Rejection:
                self._dead_letter(msg, txn, dlq_topic)
                dead += 1
                continue
            x = features(txn)
            p, reasons = score_one(x)
            record: dict[str, Any] = {
                "schema_version": SCHEMA_VERSION,
                "transaction_id": txn.transaction_id,
                "card_id": txn.card_id,
                "event_time": txn.event_time,
                "score": p,
                "band": band_of(p, review, decline),
                "model_version": version,
                "latency_ms": (time.perf_counter() - t0) * 1000.0,
                "reason_codes": [{"feature": n, "contribution": c} for n, c in reasons],
                "label": txn.is_fraud,
                "features": x,
                "amount": txn.amount,
                "merchant_id": txn.merchant_id,
            }
            self._produce(produce, scores_topic, txn.card_id.encode(), orjson.dumps(record), on_delivery)
            scored += 1
            if txn.is_fraud is not None:
                model.learn(x, txn.is_fraud)
                learned += 1

        st = self.stats
        st.consumed += len(msgs)
        st.scored += scored
        st.dead_letters += dead
        st.learned += learned
        st.batches += 1
        remaining = producer.flush(60)
        if remaining or st.delivery_failures > failures_before:
            raise DeliveryError(
                f"{st.delivery_failures - failures_before} records failed and {remaining} are undelivered; "
                "the batch's offsets are not committed"
            )
        if next_offsets:
            self._commit(next_offsets)

    def _produce(self, produce: Any, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        try:
            produce(topic, value, key, on_delivery=on_delivery)
        except BufferError:
            # The local queue is full: serve delivery reports until there is room (back-pressure).
            assert self._producer is not None
            while True:
                self._producer.poll(0.05)
                try:
                    produce(topic, value, key, on_delivery=on_delivery)
                    return
                except BufferError:
                    continue

    def _dead_letter(self, msg: Message, rejection: Rejection, topic: str) -> None:
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
            "worker": self.settings.client_id,
        }
        headers = [("reason", rejection.reason.encode()[:1000]), ("error_kind", rejection.kind.encode())]
        self._produce_dlq(topic, key, orjson.dumps(record), headers)

    def _produce_dlq(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        assert self._producer is not None
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=self._on_delivery)
                return
            except BufferError:
                self._producer.poll(0.05)

    def _consumer_error(self, err: KafkaError) -> None:
        self.stats.consumer_errors += 1
        if err.fatal():
            raise KafkaException(err)
        logger.warning("consumer error: %s", err)

    def _commit(self, next_offsets: dict[tuple[str, int], int]) -> None:
        assert self._consumer is not None
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
            self.stats.commits += 1
        except KafkaException as exc:
            # A rebalance took the partitions away: their new owner re-scores from the last commit.
            logger.warning("commit failed (%s); the batch may be scored again after a rebalance", exc)
