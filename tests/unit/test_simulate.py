"""The simulator: reproducible, a sane amount of fraud of every kind, drift, late labels, pacing."""

from __future__ import annotations

import statistics
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from stream_scorer.cli import build_parser
from stream_scorer.config import Settings
from stream_scorer.events import Label, Transaction
from stream_scorer.kafka.clients import producer_config
from stream_scorer.simulate import (
    CHARGEBACK_DELAY_MEAN_S,
    LabelQueue,
    SimConfig,
    Simulator,
    TokenBucket,
    write_jsonl,
)

N = 20_000


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    assert Simulator(seed=3).take(2_000) == Simulator(seed=3).take(2_000)
    assert Simulator(seed=3).take(200) != Simulator(seed=4).take(200)


def test_asking_for_labels_does_not_change_the_transactions() -> None:
    plain = Simulator(seed=5).take(2_000)
    sim = Simulator(seed=5)
    with_labels = []
    for event in sim.events(2_000):
        sim.label_for(event)
        with_labels.append(event)
    assert with_labels == plain


def test_labels_are_reproducible_too() -> None:
    def labels(seed: int) -> list[dict[str, object]]:
        sim = Simulator(seed=seed)
        return [sim.label_for(e, 60.0) for e in sim.events(500)]

    assert labels(2) == labels(2)


def test_events_are_valid_transactions() -> None:
    for event in Simulator(seed=1).take(2_000):
        Transaction.model_validate(event)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fraud_rate_in_a_sane_band(seed: int) -> None:
    events = Simulator(seed=seed).take(N)
    rate = sum(e["is_fraud"] for e in events) / N
    # Card fraud in the wild is well under 1%; a simulator for learning needs a bit more, not 10%.
    assert 0.005 <= rate <= 0.05, rate


def test_every_fraud_scenario_happens_and_is_counted() -> None:
    sim = Simulator(seed=0)
    events = sim.take(N)
    counts = sim.scenario_counts
    assert set(counts) == {"stolen_card", "compromised_merchant", "odd_amount"}
    assert all(n >= 10 for n in counts.values()), counts
    assert sum(counts.values()) == sum(e["is_fraud"] for e in events)
    # stolen cards come in bursts: several frauds on the same card
    sim2 = Simulator(seed=0)
    stolen_cards: dict[str, int] = {}
    for e in sim2.events(N):
        if sim2.last_scenario == "stolen_card":
            stolen_cards[e["card_id"]] = stolen_cards.get(e["card_id"], 0) + 1
    assert max(stolen_cards.values()) >= 3


def test_fraud_is_unusually_large() -> None:
    events = Simulator(seed=0).take(N)
    fraud = statistics.median(e["amount"] for e in events if e["is_fraud"])
    genuine = statistics.median(e["amount"] for e in events if not e["is_fraud"])
    assert fraud > 2 * genuine


def test_drift_shifts_amounts_after_drift_at_and_starts_card_testing() -> None:
    at = 10_000
    base = Simulator(SimConfig(), seed=0).take(2 * at)
    sim = Simulator(SimConfig(drift_at=at), seed=0)
    drifted = sim.take(2 * at)
    assert drifted[:at] == base[:at], "nothing changes before drift_at"
    assert sim.scenario_counts["card_testing"] > 0
    before = statistics.median(e["amount"] for e in drifted[:at])
    after = statistics.median(e["amount"] for e in drifted[at:] if not e["is_fraud"])
    same_span = statistics.median(e["amount"] for e in base[at:] if not e["is_fraud"])
    assert after > 1.5 * before
    assert after > 1.5 * same_span


def test_labels_are_late_and_valid() -> None:
    sim = Simulator(seed=0)
    delays = []
    for event in sim.events(5_000):
        raw = sim.label_for(event)
        label = Label.model_validate(raw)
        assert label.transaction_id == event["transaction_id"]
        assert label.card_id == event["card_id"]
        assert label.is_fraud is event["is_fraud"]
        delays.append(_ts(raw["label_time"]) - _ts(event["event_time"]))
    assert min(delays) > 0
    # chargebacks: days; the mean of the log-normal is the configured mean
    assert statistics.mean(delays) == pytest.approx(CHARGEBACK_DELAY_MEAN_S, rel=0.05)
    assert statistics.median(delays) < statistics.mean(delays), "right-skewed: a few come very late"


def test_scaled_down_label_delay_for_demos() -> None:
    sim = Simulator(seed=0)
    delays = [
        _ts(sim.label_for(e, 30.0)["label_time"]) - _ts(e["event_time"]) for e in sim.events(5_000)
    ]
    assert statistics.mean(delays) == pytest.approx(30.0, rel=0.05)


def test_label_queue_releases_in_label_time_order() -> None:
    q = LabelQueue()
    for due, tid in [(30.0, "c"), (10.0, "a"), (20.0, "b")]:
        assert q.push(due, {"transaction_id": tid}) == []
    assert q.pop_due(5.0) == []
    assert [x["transaction_id"] for x in q.pop_due(20.0)] == ["a", "b"]
    assert [x["transaction_id"] for x in q.drain()] == ["c"]
    assert len(q) == 0


def test_label_queue_is_bounded() -> None:
    q = LabelQueue(max_pending=2)
    q.push(3.0, {"transaction_id": "c"})
    q.push(1.0, {"transaction_id": "a"})
    early = q.push(2.0, {"transaction_id": "b"})
    assert [x["transaction_id"] for x in early] == ["a"]
    assert q.released_early == 1 and len(q) == 2


def test_jsonl_with_labels_file(tmp_path: Path) -> None:
    tx, lab = tmp_path / "t.jsonl", tmp_path / "l.jsonl"
    assert write_jsonl(tx, 3_000, seed=1, labels_path=lab, label_delay_mean_s=60.0) == 3_000
    events = [orjson.loads(line) for line in tx.read_bytes().splitlines()]
    labels = [orjson.loads(line) for line in lab.read_bytes().splitlines()]
    assert events == Simulator(seed=1).take(3_000), "the file holds exactly the seed's stream"
    assert sorted(x["transaction_id"] for x in labels) == sorted(
        e["transaction_id"] for e in events
    )
    times = [_ts(x["label_time"]) for x in labels]
    assert times == sorted(times), "labels come in label_time order, as on a labels topic"
    for x in labels:
        Label.model_validate(x)


def test_jsonl_without_inline_labels(tmp_path: Path) -> None:
    tx = tmp_path / "t.jsonl"
    write_jsonl(tx, 100, seed=1, inline_labels=False)
    for line in tx.read_bytes().splitlines():
        event = orjson.loads(line)
        assert "is_fraud" not in event
        assert Transaction.model_validate(event).is_fraud is None


def test_token_bucket_holds_the_rate() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    bucket = TokenBucket(1_000.0, burst=50, clock=lambda: now[0], sleep=sleep)
    sent = 0
    while now[0] < 10.0:
        sent += bucket.take(200)
    # 10 s at 1000/s, plus at most the initial burst
    assert 10_000 <= sent <= 10_000 + 50 + 1


def test_token_bucket_grants_batches_up_to_the_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(100.0, burst=20, clock=lambda: now[0], sleep=lambda s: None)
    assert bucket.take(500) == 20
    now[0] += 0.05
    assert bucket.take(500) == 5


def test_token_bucket_refuses_no_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0.0)


def test_cli_simulate_options() -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "simulate",
            "--to-kafka",
            "--rate",
            "200",
            "--count",
            "50",
            "--seed",
            "9",
            "--drift-at",
            "10",
            "--label-delay-mean",
            "30",
            "--no-inline-labels",
            "--labels",
            "--bootstrap-servers",
            "k:9092",
        ]
    )
    assert args.to_kafka and args.rate == 200 and args.count == 50 and args.seed == 9
    assert args.drift_at == 10 and args.label_delay_mean == 30
    assert args.labels is True and args.inline_labels is False
    assert parser.parse_args(["simulate", "--to-kafka", "--no-labels"]).labels is False
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--to-kafka", "--count", "5", "--duration", "3"])
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--to-kafka", "--out", "x.jsonl"])


def test_cli_simulate_writes_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stream_scorer.cli import main

    out = tmp_path / "t.jsonl"
    assert main(["simulate", "--out", str(out), "--count", "100", "--seed", "4"]) == 0
    assert len(out.read_bytes().splitlines()) == 100
    assert "wrote 100 transactions" in capsys.readouterr().out
    assert main(["simulate"]) == 2, "neither --to-kafka nor --out"


def test_producers_partition_like_java_clients() -> None:
    # Labels and transactions keyed by card must land on the same partition number.
    assert producer_config(Settings.model_validate({}))["partitioner"] == "murmur2_random"
