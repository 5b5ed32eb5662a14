"""The local broker launcher: a real KRaft broker that supports groups and transactions, and stops clean."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream_scorer.kafka.launcher import LocalKafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _java_pids(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return out.stdout.split()


def test_broker_runs_transactions_and_groups_then_stops_clean(tmp_path):
    kafka = LocalKafka(data_dir=tmp_path / "kafka")
    with kafka:
        bootstrap = kafka.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("t", num_partitions=2, replication_factor=1)])["t"].result(30)

        tx = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{uuid.uuid4()}"})
        tx.init_transactions(30)
        tx.begin_transaction()
        tx.produce("t", b"aborted")
        tx.abort_transaction(30)
        tx.begin_transaction()
        for i in range(10):
            tx.produce("t", str(i).encode(), key=str(i).encode())
        tx.commit_transaction(30)

        c = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "g", "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        })
        c.subscribe(["t"])
        got: list[bytes] = []
        for _ in range(60):
            got += [m.value() for m in c.consume(100, 0.5) if m.error() is None]
            if len(got) >= 10:
                break
        c.commit(asynchronous=False)
        c.close()
        assert sorted(got) == sorted(str(i).encode() for i in range(10)), "aborted record hidden, committed seen"
        assert _java_pids(str(tmp_path)), "the broker runs as a java process"
    assert not _java_pids(str(tmp_path)), "no stray broker process after close()"


def test_stop_and_start_keeps_the_data(tmp_path):
    kafka = LocalKafka(data_dir=tmp_path / "kafka")
    try:
        kafka.start()
        port = kafka.port
        p = Producer({"bootstrap.servers": kafka.bootstrap_servers})
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
        admin.create_topics([NewTopic("keep", num_partitions=1, replication_factor=1)])["keep"].result(30)
        p.produce("keep", b"v")
        assert p.flush(30) == 0
        kafka.stop()
        kafka.start()
        assert kafka.port == port
        c = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "k", "auto.offset.reset": "earliest"})
        c.subscribe(["keep"])
        got = []
        for _ in range(60):
            got += [m.value() for m in c.consume(10, 0.5) if m.error() is None]
            if got:
                break
        c.close()
        assert got == [b"v"]
    finally:
        kafka.close()
