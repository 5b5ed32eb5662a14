"""The simulator on a real broker: every transaction and every label arrives, keyed by card, a
card's label on the same partition number as its transactions, at the rate asked for."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import pytest
from confluent_kafka import Message

from stream_scorer.cli import main
from stream_scorer.config import Settings
from stream_scorer.events import Label, Transaction
from stream_scorer.simulate import SimConfig, Simulator, produce_to_kafka
from tests.kafka_helpers import read_all

pytestmark = pytest.mark.integration

N = 1_000


def _value(m: Message) -> bytes:
    value = m.value()
    assert value is not None
    return value


def _partition(m: Message) -> int:
    partition = m.partition()
    assert partition is not None
    return partition


def test_simulate_n_then_read_back_transactions_and_labels(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    config = SimConfig(events_per_second=500.0, start=datetime.now(UTC))
    t0 = time.monotonic()
    stats = produce_to_kafka(
        settings, Simulator(config, seed=11), rate=500.0, count=N, label_delay_mean_s=0.5
    )
    elapsed = time.monotonic() - t0
    assert stats.transactions == N and stats.labels == N
    assert stats.delivered == 2 * N and stats.failed == 0 and stats.undelivered == 0
    # 1000 events at 500/s: about 2 s of wall time, never much faster (the token bucket)
    assert elapsed >= 1.8, elapsed

    expected = Simulator(config, seed=11).take(N)
    txs = read_all(settings, settings.topics.transactions, N)
    labels = read_all(settings, settings.topics.labels, N)
    assert len(txs) == N and len(labels) == N

    tx_values = [orjson.loads(_value(m)) for m in txs]
    assert sorted(v["transaction_id"] for v in tx_values) == sorted(
        e["transaction_id"] for e in expected
    )
    partition_of_card: dict[str, set[int]] = defaultdict(set)
    for m, v in zip(txs, tx_values, strict=True):
        Transaction.model_validate(v)
        assert m.key() == v["card_id"].encode()
        partition_of_card[v["card_id"]].add(_partition(m))
    assert all(len(p) == 1 for p in partition_of_card.values()), "a card lives on one partition"
    assert len({p for ps in partition_of_card.values() for p in ps}) > 1, "cards spread out"

    by_id = {e["transaction_id"]: e for e in expected}
    for m in labels:
        label = Label.model_validate_json(_value(m))
        assert m.key() == label.card_id.encode()  # type: ignore[union-attr]
        assert label.is_fraud is by_id[label.transaction_id]["is_fraud"]
        assert label.label_time > datetime.fromisoformat(by_id[label.transaction_id]["event_time"])
        # murmur2 on both topics: the label reaches the partition (so the worker) of its card
        assert {_partition(m)} == partition_of_card[label.card_id]  # type: ignore[index]
    assert sum(v["is_fraud"] for v in tx_values) == sum(stats.fraud_by_scenario.values()) > 0


def test_cli_simulate_to_kafka_without_inline_labels(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings()
    monkeypatch.setenv("STREAM_SCORER_TOPICS__TRANSACTIONS", settings.topics.transactions)
    monkeypatch.setenv("STREAM_SCORER_TOPICS__LABELS", settings.topics.labels)
    monkeypatch.setenv("STREAM_SCORER_TOPICS__PARTITIONS", "3")
    code = main(
        [
            "simulate",
            "--to-kafka",
            "--bootstrap-servers",
            settings.bootstrap_servers,
            "--count",
            "300",
            "--rate",
            "0",
            "--seed",
            "2",
            "--no-inline-labels",
            "--label-delay-mean",
            "30",
            "--log-level",
            "WARNING",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "sent 300 transactions" in out and "600 delivered, 0 failed" in out
    txs = read_all(settings, settings.topics.transactions, 300, idle=1.0)
    labels = read_all(settings, settings.topics.labels, 300, idle=1.0)
    assert len(txs) == 300 and len(labels) == 300
    assert all("is_fraud" not in orjson.loads(_value(m)) for m in txs)
    # with a 30 s mean delay and ~0.6 s of event time, the labels were all sent at the end
    assert {Label.model_validate_json(_value(m)).transaction_id for m in labels} == {
        orjson.loads(_value(m))["transaction_id"] for m in txs
    }


def test_duration_stops_an_endless_run(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    t0 = time.monotonic()
    stats = produce_to_kafka(settings, Simulator(seed=4), rate=200.0, duration=1.5, labels=False)
    elapsed = time.monotonic() - t0
    assert 1.4 <= elapsed < 10
    # 1.5 s at 200/s, plus the initial burst of the bucket
    assert 250 <= stats.transactions <= 320, stats
    assert stats.labels == 0 and stats.failed == 0 and stats.undelivered == 0
