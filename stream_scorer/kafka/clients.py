"""Consumer and producer settings for the worker, in one place, on top of the user's passthrough."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from stream_scorer.config import Settings
from stream_scorer.exceptions import ConfigError

logger = logging.getLogger(__name__)
# librdkafka's own log lines go through Python logging (and so through the JSON formatter).
librdkafka_logger = logging.getLogger("stream_scorer.kafka.librdkafka")

# What the worker's correctness rests on; user passthrough cannot change these.
_CONSUMER_FIXED = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": False,
}


def log_client_error(err: Any) -> None:
    # librdkafka reports transient broker errors here and retries by itself; refused credentials
    # are retried too, but no retry will fix them.
    if err.code() == KafkaError._AUTHENTICATION:
        logger.error("kafka: authentication failed (check sasl.* settings): %s", err.str())
    else:
        logger.warning("kafka: %s", err)


def consumer_config(settings: Settings, group_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """Settings of a consumer that commits only what it chooses to commit."""
    conf: dict[str, Any] = {
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 100,
        # A dead worker's partitions move on after 10 s (librdkafka's default is 45 s).
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        # Bounded prefetch: while the broker or the worker is slow, memory stays flat.
        "queued.max.messages.kbytes": 16_384,
        "error_cb": log_client_error,
        "logger": librdkafka_logger,
    }
    conf.update(settings.kafka_common())
    conf["group.id"] = group_id or settings.group_id
    conf.update(extra)
    conf.update(_CONSUMER_FIXED)
    return conf


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Settings of an idempotent producer that batches (linger) and waits for all replicas."""
    conf: dict[str, Any] = {
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        # Java's partitioner (murmur2 of the key): a card's transactions and labels land on the
        # same partition number, whichever client (Python, Java, Kafka Streams) produced them.
        "partitioner": "murmur2_random",
        "error_cb": log_client_error,
        "logger": librdkafka_logger,
    }
    conf.update(settings.kafka_common())
    conf.update(extra)
    return conf


def make_consumer(settings: Settings, group_id: str | None = None, **extra: Any) -> Consumer:
    """A consumer; a setting librdkafka refuses raises ConfigError naming it."""
    try:
        return Consumer(consumer_config(settings, group_id, **extra))
    except (KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(f"STREAM_SCORER_KAFKA: librdkafka refused a consumer setting: {exc}") from None


def make_producer(settings: Settings, **extra: Any) -> Producer:
    """A producer; a setting librdkafka refuses raises ConfigError naming it."""
    try:
        return Producer(producer_config(settings, **extra))
    except (KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(f"STREAM_SCORER_KAFKA: librdkafka refused a producer setting: {exc}") from None
