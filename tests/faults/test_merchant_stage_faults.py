"""The merchant stage's promises under faults: the stage killed mid-stream, card workers killed
mid-stream, the broker restarted. Every transaction gets exactly one committed score, and the
published merchants equal those of a stage that never stopped, folding every transaction and label
once: neither an aborted stage transaction nor an aborted card-worker transaction counts."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_scorer.config import Settings
from stream_scorer.kafka.admin import ensure_topics
from stream_scorer.kafka.launcher import LocalKafka
from stream_scorer.merchants.records import by_merchant_topic, features_topic, stage_group
from stream_scorer.simulate import Simulator
from tests.kafka_helpers import (
    StageThread,
    WorkerThread,
    committed_total,
    kill_mid_stream,
    merchant_states,
    produce_events,
    published_examples,
    scores_by_id,
    stage_caught_up,
    worker_env,
)
from tests.merchant_helpers import compressed, decoded, differences, reference_states

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]


def _events(n: int, seed: int) -> list[dict]:
    return compressed(Simulator(seed=seed).take(n))


def _produce_paced(settings: Settings, events: list[dict], rate: float) -> None:
    """Produce ``events`` in slices of a tenth of a second's worth, at about ``rate`` per second."""
    step = max(1, int(rate / 10))
    t0 = time.monotonic()
    for i in range(0, len(events), step):
        produce_events(settings, events[i : i + step])
        time.sleep(max(0.0, t0 + (i + step) / rate - time.monotonic()))


def _stage_committed(settings: Settings) -> int:
    """Sum of the merchant stage's committed offsets on ``<group>.by-merchant`` (-1: no answer)."""
    stage = settings.model_copy(update={"group_id": stage_group(settings.group_id)})
    return committed_total(stage, by_merchant_topic(settings.group_id))


def _high_watermarks(settings: Settings, topic: str) -> int:
    """Sum of ``topic``'s high watermarks: every record written, committed or not, and markers (read
    committed, a consumer's high watermark is the last stable offset instead)."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                  "isolation.level": "read_uncommitted"})
    try:
        n = len(c.list_topics(topic, timeout=10).topics[topic].partitions)
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1] for p in range(n))
    finally:
        c.close()


def _wait(what: str, done, timeout: float, *threads) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        for t in threads:
            if t.error is not None:
                raise t.error
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f}s"
        time.sleep(0.2)


def _assert_exactly_once(settings: Settings, events: list[dict]) -> None:
    """One committed score per transaction, and the published merchants are the reference's."""
    n = len(events)
    scores, read = scores_by_id(settings, n)
    assert set(scores) == {e["transaction_id"] for e in events}, "no transaction is missing a score"
    assert read == n, f"{read - n} duplicate committed scores"
    bad = differences(decoded(merchant_states(settings)), reference_states(events))
    assert bad == [], f"{len(bad)} merchants differ from an uninterrupted stage's, e.g. {bad[:3]}"
    if settings.learning == "stage":
        # The shared learner learned each inline label once: none lost, none from an aborted unit.
        assert published_examples(settings) == n


def _assert_nothing_lost(settings: Settings, events: list[dict]) -> None:
    """At least once: every transaction scored, every merchant counts at least its transactions."""
    scores, _ = scores_by_id(settings, len(events))
    assert set(scores) == {e["transaction_id"] for e in events}, "no transaction is missing a score"
    got, want = decoded(merchant_states(settings)), reference_states(events)
    assert set(got) == set(want)
    short = [k for k, m in want.items() if sum(got[k].counts) < sum(m.counts)]
    assert short == [], f"{len(short)} merchants lost transactions, e.g. {short[:3]}"


def _start_stage(settings: Settings, log: Path) -> subprocess.Popen:
    """`stream-scorer merchants`, always as the same instance: a restart fences the one killed
    (its transactional id) and aborts the transaction it left open."""
    cli = [sys.executable, "-m", "stream_scorer.cli", "merchants"]
    env = worker_env(settings, STREAM_SCORER_INSTANCE_ID="stage-1")
    return subprocess.Popen(cli, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def _kill_stage_mid_stream(
    settings: Settings, worker: WorkerThread, events: list[dict], kills: int, seed: int, log_dir: Path,
    timeout: float,
) -> int:
    """Run merchant stage processes one after another; SIGKILL the first ``kills`` of them a
    little after each committed another 2,000-6,000 records, while records keep coming; let the
    last one catch up with everything the worker sent, and stop it. Return the kills."""
    rng = random.Random(seed)
    done_kills = 0
    deadline = time.monotonic() + timeout
    while True:
        log = log_dir / f"stage-{done_kills}.log"
        proc = _start_stage(settings, log)
        target = max(_stage_committed(settings), 0) + rng.randint(2_000, 6_000)
        while done_kills < kills and _stage_committed(settings) < target:
            assert time.monotonic() < deadline, "the stage did not get far enough in time"
            assert proc.poll() is None, log.read_text()[-3000:]
            if worker.error is not None:
                raise worker.error
            time.sleep(0.1)
        if done_kills == kills:
            _wait("the worker scored every transaction",
                  lambda: committed_total(settings) >= len(events), deadline - time.monotonic(), worker)
            assert proc.poll() is None, log.read_text()[-3000:]
            stage_caught_up(settings, timeout=max(deadline - time.monotonic(), 1.0))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()[-3000:]
            return done_kills
        time.sleep(rng.uniform(0.0, 0.1))
        # Mid-stream: the worker has not sent everything yet.
        assert committed_total(settings) < len(events), "the stream finished before the kill"
        proc.kill()
        proc.wait()
        done_kills += 1


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_merchant_stage_sigkilled_three_times_mid_stream(make_settings, tmp_path, guarantee):
    """Each kill lands with a unit open (records folded, not yet published and committed): the next
    stage restores the committed merchants and folds those records again, once. At least once, a
    kill may also land after the publications and before the offsets: folded twice is allowed,
    lost is not."""
    settings = make_settings(
        merchant_features="stage", topics={"partitions": 6}, instance_id="worker-1", batch_size=200,
        processing_guarantee=guarantee,
    )
    events = _events(16_000, seed=41)
    worker = WorkerThread(settings).start()
    # The transactions keep coming (about 400/s, for 40 s) while the stage is killed and restarted
    # (a restart takes some 10 s: the killed member's session has to expire).
    feed = threading.Thread(target=_produce_paced, args=(settings, events, 400.0), daemon=True)
    feed.start()
    kills = _kill_stage_mid_stream(settings, worker, events, kills=3, seed=7, log_dir=tmp_path, timeout=150)
    assert kills == 3
    feed.join(10)
    worker.stop()
    if guarantee == "exactly_once":
        _assert_exactly_once(settings, events)
    else:
        _assert_nothing_lost(settings, events)


class _Crash(Exception):
    """The stage dies here."""


def test_a_stage_that_dies_between_publishing_and_committing_folds_nothing_twice(make_settings):
    """A SIGKILL lands between a unit's publications and its commit only now and then (a few
    milliseconds of each unit): here the stage dies there every time. Its publications reach the
    topic in a transaction left open; the next stage, with the same transactional id, aborts it,
    so neither its restore nor any table reads them."""
    # Merchants only (no shared learner): each unit is then merchant states (the learner's exactly
    # once is checked by the other tests, which count its examples).
    settings = make_settings(merchant_features="stage", learning="worker", topics={"partitions": 6},
                             instance_id="worker-1")
    events = _events(8_000, seed=44)
    produce_events(settings, events)
    worker = WorkerThread(settings).start()
    _wait("the worker scored every transaction", lambda: committed_total(settings) >= len(events), 120, worker)
    # Small units: the backlog takes several.
    stage_settings = settings.model_copy(
        update={"instance_id": "stage-1", "batch_size": 200, "commit_interval_s": 0.01}
    )
    first = StageThread(stage_settings)
    out = first.stage.out
    commits = []

    def dies_at_the_second_commit(what: str, call) -> None:
        if what == "commit_transaction":
            commits.append(what)
            if len(commits) == 2:
                raise _Crash  # the unit's states are produced (flushed as the stage closes)
        out.retry(what, call)

    out.retrying = dies_at_the_second_commit
    first.start()
    first.thread.join(120)
    assert isinstance(first.error, _Crash), first.error
    st = first.stage.stats
    assert st.commits == 1 and st.published > 0, st
    # Beyond the first unit's states and its commit markers (one per partition at most), the topic
    # holds the second unit's, in the transaction left open.
    assert _high_watermarks(settings, features_topic(settings.group_id)) > st.published + 6
    second = StageThread(stage_settings).start()
    stage_caught_up(settings)
    second.stop()
    worker.stop()
    _assert_exactly_once(settings, events)


def test_card_workers_sigkilled_three_times_mid_stream(make_settings, tmp_path):
    settings = make_settings(
        merchant_features="stage", topics={"partitions": 6}, instance_id="worker-1", batch_size=500,
    )
    events = _events(24_000, seed=42)
    produce_events(settings, events)
    stage = StageThread(settings).start()
    # Each kill lands with a worker transaction open: scores and by-merchant records produced,
    # never committed. The stage reads committed records only, so it never folds them.
    kills = kill_mid_stream(settings, len(events), kills=3, seed=8, log_dir=tmp_path, timeout=150)
    assert kills == 3
    stage_caught_up(settings)
    stage.stop()
    _assert_exactly_once(settings, events)


def test_broker_restart_with_a_worker_and_a_stage_running(tmp_path):
    kafka = LocalKafka(data_dir=tmp_path / "kafka")
    kafka.start()
    try:
        s = uuid.uuid4().hex[:6]
        settings = Settings(
            bootstrap_servers=kafka.bootstrap_servers, group_id=f"g-{s}", instance_id="w",
            topics={"transactions": f"tx-{s}", "scores": f"sc-{s}", "labels": f"lb-{s}", "dlq": f"dlq-{s}",
                    "drift_alerts": f"da-{s}", "partitions": 6},
            state_dir=tmp_path / "state", merchant_features="stage", batch_size=200, log_format="text",
            metrics_port=0,
        )
        ensure_topics(settings)
        events = _events(30_000, seed=43)
        produce_events(settings, events)
        stage = StageThread(settings).start()
        worker = WorkerThread(settings).start()
        worker.wait_scored(4_000, timeout=120)
        assert worker.worker.stats.scored < len(events)
        kafka.stop()  # mid-stream: both hold work in open transactions
        time.sleep(8)
        for t in (worker, stage):
            assert t.error is None and t.thread.is_alive(), "the worker and the stage wait for the broker"
        kafka.start()
        # As in test_broker_restart.py: a transaction call that wedged on the broker going away is
        # given up after 45 s, a consumer that stays out of its group is replaced after 45 s more.
        _wait("the worker scored every transaction after the restart",
              lambda: committed_total(settings) >= len(events), 240, worker, stage)
        stage_caught_up(settings)
        worker.stop()
        stage.stop()
        _assert_exactly_once(settings, events)
    finally:
        kafka.close()
