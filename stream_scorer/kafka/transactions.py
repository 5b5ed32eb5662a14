"""The worker's producer: its life cycle, back-pressure, and the Kafka transaction protocol.

One :class:`TransactionalProducer` serves both guarantees. At least once it only produces (its
delivery reports go to :mod:`stream_scorer.kafka.acks`); exactly once it also drives one transaction
per commit unit: :meth:`~TransactionalProducer.begin` before the unit's first record, then
:meth:`~TransactionalProducer.commit`, whose :class:`Outcome` tells the caller what became of it:

- ``COMMITTED``: outputs and input offsets are visible, together;
- ``ABORTED``: the commit failed with an abortable error (a fenced epoch, a coordinator that timed
  the transaction out); the transaction was aborted and the caller rewinds to the committed offsets;
- ``REPLACED``: the cluster went away during the transaction, or a call outlived the wedge deadline
  (librdkafka can block forever then: confluentinc/librdkafka#5511, #5456). The producer is
  abandoned, and a new one registered under the same transactional id, which aborts whatever the
  old one left open. The caller rewinds too.

Retriable errors (a broker away) are retried until the cluster answers; each call runs on a helper
thread (:class:`~stream_scorer.kafka.deadline.DeadlineCaller`) so that a wedged one cannot hold
the worker. A fatal error raises.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from stream_scorer.config import TXN_TIMEOUT_S
from stream_scorer.kafka.clients import log_client_error
from stream_scorer.kafka.deadline import CallTimedOut, DeadlineCaller

logger = logging.getLogger(__name__)

TXN_WEDGED_S = TXN_TIMEOUT_S + 15.0
"""A transaction call still running after this long is stuck, not slow: it has outlived its own
timeout, and the coordinator has aborted its transaction by then anyway."""

Headers = list[tuple[str, str | bytes | None]]
Retrying = Callable[[str, Callable[[], Any]], None]


class Outcome(enum.Enum):
    """What became of a transaction (see the module docstring)."""

    COMMITTED = "committed"
    ABORTED = "aborted"
    REPLACED = "replaced"


class TransactionalProducer:
    """The worker's producer, replaced when it wedges; transactional when given an id.

    ``make`` builds a confluent-kafka ``Producer`` from the settings this wrapper owns (the error
    callback, the transactional id and timeout); ``retrying`` is the seam through which every
    transactional call goes (by default :meth:`retry`; the fault tests inject failures there).
    """

    def __init__(
        self,
        make: Callable[[dict[str, Any]], Producer],
        transactional_id: str | None,
        retrying: Retrying | None = None,
        wedged_s: float = TXN_WEDGED_S,
        retry_pause_s: float = 0.5,
    ) -> None:
        self._make = make
        self.transactional_id = transactional_id
        self.retrying: Retrying = retrying or self.retry
        self.wedged_s = wedged_s
        self.retry_pause_s = retry_pause_s
        self.producer: Producer | None = None
        self.abandoned: list[Producer] = []
        """Producers given up on; destroying one stuck in a call would block, so they are kept."""
        self.cluster_was_down = False
        """The cluster was unreachable during the open transaction: commit it no more, replace.
        Cleared by :meth:`begin`: librdkafka also reports ``_ALL_BROKERS_DOWN`` when the brokers
        close idle connections (``connections.max.idle.ms``), which says nothing of the next
        transaction (a real outage then costs a retried or wedged call instead)."""
        self._caller = DeadlineCaller("txn")

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Make the producer; with a transactional id, register it, which fences any earlier
        producer with the same id and aborts the transaction it left open."""
        extra: dict[str, Any] = {"error_cb": self.on_client_error}
        if self.transactional_id is not None:
            extra["transactional.id"] = self.transactional_id
            extra["transaction.timeout.ms"] = int(TXN_TIMEOUT_S * 1000)
        self.producer = producer = self._make(extra)
        self.cluster_was_down = False
        if self.transactional_id is not None:
            self.retrying("init_transactions", lambda: producer.init_transactions(TXN_TIMEOUT_S))

    def on_client_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.cluster_was_down = True
        log_client_error(err)

    def replace(self, why: str) -> Outcome:
        """Drop the producer and its open transaction; a new one takes its place."""
        logger.warning("%s: abandoning the transaction and rewinding to the committed offsets", why)
        if self.producer is not None:
            self.abandoned.append(self.producer)
        self.start()
        return Outcome.REPLACED

    def close(self, timeout_s: float = 30.0) -> None:
        if self.producer is not None:
            self.producer.flush(timeout_s)
        self.producer = None

    # -- producing ------------------------------------------------------------------------------

    def produce_blocking(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        cb: Any,
        partition: int = -1,
        headers: Headers | None = None,
    ) -> None:
        """The local queue is full: serve delivery reports until there is room (back-pressure)."""
        assert self.producer is not None
        while True:
            self.producer.poll(0.05)
            try:
                self.producer.produce(topic, value, key, partition=partition, on_delivery=cb, headers=headers)
                return
            except BufferError:
                continue

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        cb: Any = None,
        partition: int = -1,
        headers: Headers | None = None,
    ) -> None:
        """Produce, waiting for room when the local queue is full (the hot path calls the
        producer's own ``produce`` and comes here only on ``BufferError``)."""
        assert self.producer is not None
        try:
            self.producer.produce(topic, value, key, partition=partition, on_delivery=cb, headers=headers)
        except BufferError:
            self.produce_blocking(topic, value, key, cb, partition, headers)

    def drain(self) -> None:
        """Wait until every record produced has its delivery report (saying so once if it lasts)."""
        assert self.producer is not None
        warned = False
        while self.producer.flush(5.0) > 0:
            if not warned:
                logger.warning("waiting for Kafka to acknowledge the records in flight")
                warned = True

    # -- transactions ---------------------------------------------------------------------------

    def begin(self) -> None:
        assert self.producer is not None
        self.cluster_was_down = False
        self.producer.begin_transaction()

    def commit(self, offsets: list[TopicPartition], group: Any) -> Outcome:
        """Offsets into the transaction, then commit; abort (or replace) if it cannot commit.

        ``group`` is the consumer's group metadata, read by the caller on the thread that polls
        the consumer: inside a rebalance callback, asking for it from the helper thread can wait
        on the rebalance that is waiting on us.
        """
        assert self.producer is not None
        producer = self.producer
        if self.cluster_was_down:
            return self.replace("the cluster was unreachable during the transaction")
        try:
            if offsets:
                self.retrying(
                    "send_offsets_to_transaction",
                    lambda: producer.send_offsets_to_transaction(offsets, group, TXN_TIMEOUT_S),
                )
            self.retrying("commit_transaction", lambda: producer.commit_transaction(TXN_TIMEOUT_S))
            return Outcome.COMMITTED
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if not err.txn_requires_abort():
                raise
            logger.warning("transaction aborted (%s); rewinding to the committed offsets", err)
        except CallTimedOut as exc:
            return self.replace(str(exc))
        # Outside the handlers: the abort's own failures (a wedged call) must be handled, not escape.
        return self.abort()

    def abort(self) -> Outcome:
        """Abort the open transaction; replace the producer if the abort fails or wedges. A fatal
        error raises (the producer was fenced: another worker has its transactional id)."""
        assert self.producer is not None
        producer = self.producer
        try:
            self.retrying("abort_transaction", lambda: producer.abort_transaction(TXN_TIMEOUT_S))
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            return self.replace(f"abort failed ({exc})")
        except CallTimedOut as exc:
            return self.replace(f"abort failed ({exc})")
        return Outcome.ABORTED

    def retry(self, what: str, call: Callable[[], Any]) -> None:
        """Call a transactional API, retrying while its error is retriable (e.g. broker away).

        Past ``wedged_s`` a call raises :class:`CallTimedOut` (it may still run on its thread).
        """
        last_warning = 0.0
        while True:
            try:
                try:
                    self._caller.call(call, self.wedged_s)
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
                time.sleep(self.retry_pause_s)
