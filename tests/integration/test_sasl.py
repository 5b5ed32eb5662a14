"""A broker that requires SASL/PLAIN: stream-scorer's clients get in with the right credentials,
and are told plainly, and quickly, when the credentials are wrong.

The broker is this module's own (the launcher with ``sasl_users``), not the session's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from stream_scorer.config import Settings
from stream_scorer.kafka.admin import AuthenticationFailed, ensure_topics
from stream_scorer.kafka.clients import make_consumer, make_producer
from stream_scorer.kafka.launcher import LocalKafka
from stream_scorer.simulate import Simulator, produce_to_kafka

pytestmark = pytest.mark.integration

USER, PASSWORD = "scorer", "scorer-secret"


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[LocalKafka]:
    with LocalKafka(sasl_users={USER: PASSWORD, "evaluator": "evaluator-secret"}) as kafka:
        yield kafka


def _settings(bootstrap: str, password: str) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return Settings.model_validate(
        {
            "bootstrap_servers": bootstrap,
            "group_id": f"sasl-{suffix}",
            "topics": {
                "transactions": f"tx-{suffix}",
                "labels": f"labels-{suffix}",
                "partitions": 2,
            },
            "kafka": {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": USER,
                "sasl.password": password,
            },
            "log_format": "text",
        }
    )


def test_the_broker_refuses_clients_without_sasl(sasl_kafka: LocalKafka) -> None:
    settings = Settings.model_validate({"bootstrap_servers": sasl_kafka.bootstrap_servers})
    from stream_scorer.kafka.admin import BrokerUnreachable

    t0 = time.monotonic()
    with pytest.raises(BrokerUnreachable):
        ensure_topics(settings, ["never-created"], timeout=4)
    assert time.monotonic() - t0 < 15


def test_right_credentials_create_produce_and_consume(sasl_kafka: LocalKafka) -> None:
    settings = _settings(sasl_kafka.bootstrap_servers, PASSWORD)
    created = ensure_topics(settings, [settings.topics.transactions, settings.topics.labels])
    assert sorted(created) == sorted([settings.topics.transactions, settings.topics.labels])

    # the simulator's producer, through stream_scorer.kafka.clients
    stats = produce_to_kafka(
        settings, Simulator(seed=1), rate=None, count=200, label_delay_mean_s=5
    )
    assert stats.transactions == 200 and stats.labels == 200
    assert stats.failed == 0 and stats.undelivered == 0

    producer = make_producer(settings)
    producer.produce(settings.topics.transactions, orjson.dumps({"hello": "sasl"}), b"k")
    assert producer.flush(30) == 0

    consumer = make_consumer(settings)
    consumer.subscribe([settings.topics.transactions])
    got = 0
    deadline = time.monotonic() + 60
    try:
        while got < 201 and time.monotonic() < deadline:
            got += sum(1 for m in consumer.consume(500, 0.5) if m.error() is None)
    finally:
        consumer.close()
    assert got == 201


def test_wrong_password_fails_fast_with_a_named_error(sasl_kafka: LocalKafka) -> None:
    settings = _settings(sasl_kafka.bootstrap_servers, "not-the-password")
    t0 = time.monotonic()
    with pytest.raises(AuthenticationFailed) as info:
        ensure_topics(settings, timeout=60)
    elapsed = time.monotonic() - t0
    message = str(info.value)
    assert "authentication" in message.lower()
    assert "not-the-password" not in message, "the password never appears in an error"
    assert elapsed < 15, f"took {elapsed:.1f}s: it must not wait for the whole timeout"


def test_wrong_user_fails_too(sasl_kafka: LocalKafka) -> None:
    settings = _settings(sasl_kafka.bootstrap_servers, PASSWORD).model_copy(
        update={
            "kafka": {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": "mallory",
                "sasl.password": PASSWORD,
            }
        }
    )
    with pytest.raises(AuthenticationFailed):
        ensure_topics(settings, timeout=60)


def test_scram_sha_512_broker(tmp_path: Path) -> None:
    """SCRAM-SHA-512: credentials written at format time; they survive a broker restart."""
    kafka = LocalKafka(
        data_dir=tmp_path / "kafka", sasl_users={USER: PASSWORD}, sasl_mechanism="SCRAM-SHA-512"
    )
    try:
        kafka.start()
        good = _settings(kafka.bootstrap_servers, PASSWORD)
        good = good.model_copy(update={"kafka": {**good.kafka, "sasl.mechanism": "SCRAM-SHA-512"}})
        assert ensure_topics(good, [good.topics.transactions]) == [good.topics.transactions]
        kafka.stop()
        kafka.start()  # the same data dir: the same SCRAM users, the same broker password
        producer = make_producer(good)
        producer.produce(good.topics.transactions, b"{}", b"k")
        assert producer.flush(30) == 0
        bad = good.model_copy(update={"kafka": {**good.kafka, "sasl.password": "wrong"}})
        with pytest.raises(AuthenticationFailed, match="SCRAM-SHA-512"):
            ensure_topics(bad, timeout=60)
    finally:
        kafka.close()


def test_the_cli_starts_a_sasl_broker_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    """`stream-scorer kafka start --sasl-user`: the command-line way to the broker above."""
    import signal
    import subprocess
    import sys

    from stream_scorer.kafka.launcher import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_scorer.cli", "kafka", "start", "--port", str(port),
         "--data-dir", str(tmp_path / "kafka"), "--sasl-user", f"{USER}={PASSWORD}",
         "--sasl-mechanism", "SCRAM-SHA-256"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("clients:"):
                break
        assert f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}\n" in lines, lines[-20:]
        assert PASSWORD not in "".join(lines), "the password is never printed"
        good = _settings(f"127.0.0.1:{port}", PASSWORD)
        good = good.model_copy(update={"kafka": {**good.kafka, "sasl.mechanism": "SCRAM-SHA-256"}})
        assert ensure_topics(good, [good.topics.transactions]) == [good.topics.transactions]
        bad = good.model_copy(update={"kafka": {**good.kafka, "sasl.password": "wrong"}})
        with pytest.raises(AuthenticationFailed):
            ensure_topics(bad, timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
