"""Fixtures shared by every test: one real Kafka broker for the session, and isolated settings.

The broker, in order of preference: the cluster named by ``KAFKA_BOOTSTRAP_SERVERS``; a
testcontainers Kafka container when a Docker daemon answers; the project's own launcher, which
fetches Apache Kafka's jars from Maven Central and runs a KRaft broker on 127.0.0.1.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stream_scorer.config import NOT_SETTINGS_ENV, Settings
from stream_scorer.kafka.admin import ensure_topics


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a real Kafka broker for this test session."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from stream_scorer.kafka.launcher import LocalKafka

    with LocalKafka() as kafka:
        yield kafka.bootstrap_servers


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings in the developer's environment must not leak into tests."""
    for key in list(os.environ):
        if key.startswith("STREAM_SCORER_") and key not in NOT_SETTINGS_ENV:
            monkeypatch.delenv(key)


@pytest.fixture
def make_settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """Settings on the session's broker with topics and group of their own, per call."""
    def make(**overrides: Any) -> Settings:
        # Each call gets topics and a group of its own (hypothesis runs one test many times).
        suffix = uuid.uuid4().hex[:8]
        topics = {
            "transactions": f"transactions-{suffix}",
            "labels": f"labels-{suffix}",
            "scores": f"scores-{suffix}",
            "drift_alerts": f"drift-alerts-{suffix}",
            "dlq": f"transactions.dlq-{suffix}",
            "partitions": 3,
        }
        topics.update(overrides.pop("topics", {}))
        base: dict[str, Any] = {
            "bootstrap_servers": kafka_bootstrap,
            "group_id": f"scorer-{suffix}",
            "topics": topics,
            "log_format": "text",
            "state_dir": tmp_path_factory.mktemp("state"),
            "instance_id": f"w-{uuid.uuid4().hex[:6]}",
            "metrics_port": 0,
            # Per-partition merchant features, so that a worker alone equals the backtest; the
            # merchant stage's tests ask for "stage".
            "merchant_features": "partition",
        }
        base.update(overrides)
        settings = Settings(**base)
        # Topics exist before a test produces to them (the broker does not auto-create topics).
        ensure_topics(settings)
        return settings

    return make


EXIT_WATCHDOG_S = 120.0


def pytest_unconfigure(config: pytest.Config) -> None:
    """If the process has not exited this long after the run, print every thread's stack and
    exit with status 1: a thread stuck at exit must fail the run, not hang it until CI kills it."""
    faulthandler.dump_traceback_later(EXIT_WATCHDOG_S, exit=True, file=sys.__stderr__)
