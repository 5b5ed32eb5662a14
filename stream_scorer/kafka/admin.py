"""Topic administration: create the topics stream-scorer needs when they are missing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stream_scorer.config import Settings
from stream_scorer.exceptions import ConfigError, StreamScorerError

logger = logging.getLogger(__name__)


class BrokerUnreachable(StreamScorerError):
    """No broker answered at the configured bootstrap servers."""


class AuthenticationFailed(StreamScorerError):
    """A broker answered but refused the client's credentials (SASL authentication failed)."""


class _AuthWatch:
    """An ``error_cb`` that keeps the first authentication error librdkafka reports."""

    def __init__(self) -> None:
        self.error: str | None = None

    def __call__(self, err: KafkaError) -> None:
        if err.code() == KafkaError._AUTHENTICATION:
            self.error = self.error or err.str()
        else:
            logger.debug("kafka admin: %s", err)


def admin_client(
    settings: Settings, error_cb: Callable[[KafkaError], Any] | None = None
) -> AdminClient:
    """An AdminClient with the common settings (security included); bad settings raise ConfigError."""
    conf = settings.kafka_common()
    if error_cb is not None:
        conf["error_cb"] = error_cb
    try:
        return AdminClient(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(f"STREAM_SCORER_KAFKA: librdkafka refused a setting: {exc}") from None


def all_topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.transactions, t.labels, t.scores, t.drift_alerts, t.dlq]


def ensure_topics(
    settings: Settings,
    names: Iterable[str] | None = None,
    timeout: float = 30.0,
    compacted: Iterable[str] = (),
    partitions: int | None = None,
) -> list[str]:
    """Create the missing topics among ``names`` (all of stream-scorer's by default).

    Returns the names created. Another worker creating the same topic at the same time is fine.
    Raises :class:`BrokerUnreachable` when no broker answers within ``timeout``, and
    :class:`AuthenticationFailed` as soon as a broker refuses the credentials.
    """
    auth = _AuthWatch()
    admin = admin_client(settings, error_cb=auth)
    wanted = list(names) if names is not None else all_topics(settings)
    compacted = set(compacted)
    deadline = time.monotonic() + timeout
    while True:
        try:
            existing = set(admin.list_topics(timeout=min(5.0, timeout)).topics)
            break
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb: was it the credentials?
            if auth.error is not None:
                raise AuthenticationFailed(
                    f"Kafka at {settings.bootstrap_servers} refused the credentials (check the"
                    " sasl.mechanism, sasl.username and sasl.password in STREAM_SCORER_KAFKA):"
                    f" {auth.error}"
                ) from None
            if time.monotonic() > deadline:
                raise BrokerUnreachable(
                    f"no Kafka broker answered at {settings.bootstrap_servers} within {timeout:.0f}s: {exc}"
                ) from None
            time.sleep(0.5)
    missing = [n for n in wanted if n not in existing]
    if not missing:
        return []
    new = [
        NewTopic(
            n,
            num_partitions=partitions or settings.topics.partitions,
            replication_factor=settings.topics.replication_factor,
            config={"cleanup.policy": "compact"} if n in compacted else {},
        )
        for n in missing
    ]
    created = []
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    _wait_visible(admin, missing, deadline)
    if created:
        logger.info("created topics %s", ", ".join(created))
    return created


def _wait_visible(admin: AdminClient, names: list[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=5)
        if all(n in md.topics and not md.topics[n].error for n in names):
            return
        time.sleep(0.1)


def partition_count(settings: Settings, topic: str, timeout: float = 30.0) -> int:
    """How many partitions ``topic`` has (0 when it does not exist)."""
    md = admin_client(settings).list_topics(topic, timeout=timeout)
    t = md.topics.get(topic)
    return 0 if t is None or t.error is not None else len(t.partitions)


def cluster_id(settings: Settings, timeout: float = 30.0) -> str | None:
    """The id of the cluster at the bootstrap servers (KRaft clusters always have one)."""
    md = admin_client(settings).list_topics(timeout=timeout)
    return str(md.cluster_id) if md.cluster_id else None


def check_worker_topics(settings: Settings, changelog: str) -> None:
    """Create what is missing (``create_topics``), then check what a worker relies on: the input
    topics exist and are co-partitioned (a card's label must reach the worker holding its state),
    and the compacted state changelog has as many partitions. ConfigError names the setting."""
    t = settings.topics
    if settings.create_topics:
        ensure_topics(settings)
    n_tx, n_labels = partition_count(settings, t.transactions), partition_count(settings, t.labels)
    if n_tx == 0:
        raise ConfigError(f"STREAM_SCORER_TOPICS__TRANSACTIONS: topic {t.transactions!r} does not exist")
    if n_labels != n_tx:
        raise ConfigError(
            f"STREAM_SCORER_TOPICS__LABELS: topic {t.labels!r} has {n_labels} partitions and "
            f"{t.transactions!r} has {n_tx}; they must match so a card's label reaches its state"
        )
    ensure_topics(settings, [changelog], compacted=[changelog], partitions=n_tx)
    if partition_count(settings, changelog) != n_tx:
        raise ConfigError(f"the state changelog {changelog!r} must have {n_tx} partitions")


def ensure_merchant_topics(settings: Settings) -> int:
    """Create the merchant stage's topics if missing (``<group>.by-merchant``, and the compacted
    ``<group>.merchant-features`` with as many partitions), check them, and return their
    partition count. Both the card workers and the merchant stage call this at start."""
    from stream_scorer.merchants.records import by_merchant_topic, features_topic

    by_merchant, features = by_merchant_topic(settings.group_id), features_topic(settings.group_id)
    n = partition_count(settings, by_merchant)
    if n == 0:
        if not settings.create_topics:
            raise ConfigError(
                f"STREAM_SCORER_CREATE_TOPICS: topic {by_merchant!r} does not exist and topics are not created"
            )
        ensure_topics(settings, [by_merchant])
        n = partition_count(settings, by_merchant)
    if settings.create_topics:
        ensure_topics(settings, [features], compacted=[features], partitions=n)
    n_features = partition_count(settings, features)
    if n_features != n:
        raise ConfigError(
            f"the merchant table {features!r} has {n_features} partitions and {by_merchant!r} has {n}: "
            "they must match (a merchant's records and state share a partition number)"
        )
    return n


def ensure_learning_topics(settings: Settings) -> None:
    """Create the shared learner's topics if missing: ``<group>.learn`` (one partition: one
    learning order) and the compacted ``<group>.model``."""
    from stream_scorer.merchants.learning import learn_topic, model_topic

    learn, model = learn_topic(settings.group_id), model_topic(settings.group_id)
    if settings.create_topics:
        ensure_topics(settings, [learn], partitions=1)
        ensure_topics(settings, [model], compacted=[model], partitions=1)
    missing = [t for t in (learn, model) if partition_count(settings, t) == 0]
    if missing:
        raise ConfigError(
            f"STREAM_SCORER_LEARNING: topic(s) {', '.join(map(repr, missing))} do not exist and topics are not "
            "created (STREAM_SCORER_CREATE_TOPICS=false): create them, or set STREAM_SCORER_LEARNING=worker"
        )
