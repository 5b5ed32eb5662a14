"""Small helpers for tests that read and write topics on the real broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Message, Producer

from stream_scorer.config import Settings
from stream_scorer.worker import Worker

WORKER_METRICS = (
    "stream_scorer_events_consumed_total",
    "stream_scorer_scores_produced_total",
    "stream_scorer_dead_letters_total",
    "stream_scorer_latency_seconds_bucket",
    "stream_scorer_consumer_lag",
    "stream_scorer_state_entities",
    "stream_scorer_pending_labels",
    "stream_scorer_model_info",
    "stream_scorer_batches_per_commit_bucket",
)
"""The worker metrics the dashboards rely on."""


def produce(settings: Settings, values: Iterable[tuple[bytes | None, bytes]], topic: str | None = None) -> int:
    """Produce ``(key, value)`` pairs and wait until all are acknowledged; return how many."""
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "linger.ms": 5,
            "acks": "all",
            "partitioner": "murmur2_random",
        }
    )
    n = 0
    for key, value in values:
        while True:
            try:
                producer.produce(topic or settings.topics.transactions, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
    assert producer.flush(60) == 0
    return n


def produce_events(settings: Settings, events: Iterable[dict]) -> int:
    return produce(settings, ((e["card_id"].encode(), orjson.dumps(e)) for e in events))


def read_all(
    settings: Settings,
    topic: str,
    expected: int,
    timeout: float = 120.0,
    idle: float = 3.0,
) -> list[Message]:
    """Read ``topic`` from the start (read_committed) until ``expected`` records came and no more
    came for ``idle`` seconds, or ``timeout`` passed."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(1000, 0.5)
            good = [m for m in msgs if m.error() is None]
            if good:
                out.extend(good)
                last_new = time.monotonic()
            elif len(out) >= expected and time.monotonic() - last_new > idle:
                break
    finally:
        consumer.close()
    return out


class WorkerThread:
    """A worker running in a thread, stopped gracefully by :meth:`stop`."""

    def __init__(self, settings: Settings, factory: Callable[[Settings], Worker] = Worker) -> None:
        self.worker = factory(settings)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self.error = exc

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def wait_scored(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.worker.stats.scored + self.worker.stats.dead_letters < n:
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise AssertionError(f"worker handled {self.worker.stats.as_dict()} of {n} in {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "worker did not stop within 60s"
        if self.error is not None:
            raise self.error


def worker_env(settings: Settings, **more: str) -> dict[str, str]:
    """The environment of a `stream-scorer run` process with ``settings``'s broker, topics and state."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_SCORER_") or "KAFKA_" in k}
    t = settings.topics
    env.update(
        STREAM_SCORER_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        STREAM_SCORER_GROUP_ID=settings.group_id,
        STREAM_SCORER_TOPICS__TRANSACTIONS=t.transactions,
        STREAM_SCORER_TOPICS__SCORES=t.scores,
        STREAM_SCORER_TOPICS__DLQ=t.dlq,
        STREAM_SCORER_TOPICS__LABELS=t.labels,
        STREAM_SCORER_TOPICS__DRIFT_ALERTS=t.drift_alerts,
        STREAM_SCORER_TOPICS__PARTITIONS=str(t.partitions),
        STREAM_SCORER_STATE_DIR=str(settings.state_dir),
        STREAM_SCORER_INSTANCE_ID=settings.instance_id,
        STREAM_SCORER_PROCESSING_GUARANTEE=settings.processing_guarantee,
        STREAM_SCORER_MERCHANT_FEATURES=settings.merchant_features,
        STREAM_SCORER_BATCH_SIZE=str(settings.batch_size),
        STREAM_SCORER_LOG_FORMAT="text",
        STREAM_SCORER_METRICS_PORT="0",
    )
    env.update(more)
    return env


def committed_total(settings: Settings, topic: str | None = None) -> int:
    """Sum of the group's committed offsets on ``topic`` (-1 while its coordinator is not found)."""
    from confluent_kafka import KafkaException, TopicPartition

    topic = topic or settings.topics.transactions
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": settings.group_id})
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
        return sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
    except KafkaException:
        return -1
    finally:
        c.close()


def reference_features(settings: Settings, n: int) -> dict[str, dict[str, float]]:
    """The features an uninterrupted worker computes for each transaction id: the pure scoring
    path run over the transactions topic, partition by partition, in offset order."""
    from stream_scorer.events import Transaction
    from stream_scorer.features.engine import FeatureEngine
    from stream_scorer.pipeline import Scorer, scorer_settings

    msgs = read_all(settings, settings.topics.transactions, expected=n, idle=1.0)
    msgs.sort(key=lambda m: (m.partition(), m.offset()))
    features = settings.features
    scorer = Scorer(scorer_settings(settings), lambda: FeatureEngine(features), with_challenger=False)
    out: dict[str, dict[str, float]] = {}
    for m in msgs:
        txn = Transaction.model_validate_json(m.value())
        out[txn.transaction_id] = scorer.score(txn, m.partition())["features"]
    return out


def scores_by_id(settings: Settings, n: int) -> tuple[dict[str, dict], int]:
    """Committed scores keyed by transaction id, and how many records were read in all."""
    msgs = read_all(settings, settings.topics.scores, expected=n)
    out = {}
    for m in msgs:
        rec = orjson.loads(m.value())
        out[rec["transaction_id"]] = rec
    return out, len(msgs)


def kill_mid_stream(settings: Settings, n_events: int, kills: int, seed: int, log_dir: Path, timeout: float) -> int:
    """Run `stream-scorer run` processes one after another over a topic of ``n_events``, SIGKILL
    the first ``kills`` of them mid-stream, and let the last one finish and stop; return the kills.

    Each is killed a little after it committed another 1,500-6,000 events: somewhere inside one
    of the next batches (a worker scores a batch of 500 in tens of milliseconds), late enough to
    lose uncommitted work, early enough to leave the stream unfinished for the next one.
    """
    import random
    import signal
    import subprocess
    import sys

    rng = random.Random(seed)
    cli = [sys.executable, "-m", "stream_scorer.cli", "run"]
    done_kills = 0
    deadline = time.monotonic() + timeout
    while True:
        log = log_dir / f"worker-{done_kills}.log"
        proc = subprocess.Popen(cli, env=worker_env(settings), stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        target = max(committed_total(settings), 0) + rng.randint(1_500, 6_000)
        while True:
            assert time.monotonic() < deadline, "the stream did not finish in time"
            assert proc.poll() is None, log.read_text()[-3000:]
            done = committed_total(settings)
            if done >= n_events or (done_kills < kills and done >= target):
                break
            time.sleep(0.1)
        if done >= n_events:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()[-3000:]
            return done_kills
        time.sleep(rng.uniform(0.0, 0.1))
        assert committed_total(settings) < n_events, "the stream finished before the last kill"
        proc.kill()
        proc.wait()
        done_kills += 1


class StageThread:
    """A merchant stage running in a thread, stopped gracefully by :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        from stream_scorer.merchants.stage import MerchantStage

        self.stage = MerchantStage(settings)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.stage.run()
        except BaseException as exc:
            self.error = exc

    def start(self) -> StageThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stage.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "merchant stage did not stop within 60s"
        if self.error is not None:
            raise self.error


def stage_caught_up(settings: Settings, timeout: float = 120.0) -> None:
    """Wait until the merchant stage's group has committed everything on ``<group>.by-merchant``
    (and on ``<group>.learn``, the shared learner's input, when it exists).

    Between the stage's committed offset and the end of a partition there may be offsets it never
    reads: transaction markers (one per card worker whose transaction wrote there: with two
    workers, the tail may be two markers) and aborted records. So a partition whose end is more
    than one offset ahead is read from the committed offset, read committed: caught up if nothing
    comes before the end.
    """
    from confluent_kafka import TopicPartition

    from stream_scorer.merchants.learning import learn_topic
    from stream_scorer.merchants.records import by_merchant_topic, stage_group

    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": stage_group(settings.group_id),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        md = c.list_topics(timeout=10).topics
        parts = [TopicPartition(t, p) for t in (by_merchant_topic(settings.group_id), learn_topic(settings.group_id))
                 if t in md for p in md[t].partitions]
        deadline = time.monotonic() + timeout
        while True:
            # Read committed, the end of a partition is its last stable offset.
            highs = [c.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in parts]
            done = [max(tp.offset, 0) for tp in c.committed(parts, timeout=10)]
            # A committed transaction ends with a marker: the last offset may be a marker.
            ahead = {(tp.topic, tp.partition): (d, h) for tp, h, d in zip(parts, highs, done, strict=True) if h - d > 1}
            if sum(highs) > 0 and not _records_in(settings, ahead):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"merchant stage behind: committed {done} of {highs}")
            time.sleep(0.3)
    finally:
        c.close()


def _records_in(settings: Settings, spans: dict[tuple[str, int], tuple[int, int]], wait: float = 2.0) -> bool:
    """Whether any committed record lies in ``[start, end)`` of a partition of ``spans`` ((topic,
    partition) -> (start, end)); True too if the reader did not reach every end within ``wait`` seconds."""
    from confluent_kafka import TopicPartition

    if not spans:
        return False
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(t, p, start) for (t, p), (start, _) in spans.items()])
        left = dict(spans)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            for m in c.consume(100, 0.2):
                key = (m.topic(), m.partition())
                if m.error() is None and key in left and m.offset() < left[key][1]:
                    return True
            # Markers and aborted records are never delivered: ask where each partition stands.
            for tp in c.position([TopicPartition(t, p) for t, p in left]):
                if tp.offset >= left[(tp.topic, tp.partition)][1]:
                    del left[(tp.topic, tp.partition)]
        return bool(left)
    finally:
        c.close()


def merchant_states(settings: Settings) -> dict[str, bytes]:
    """The latest committed value of every merchant in ``<group>.merchant-features`` (tombstones
    remove; the quantile sketches left out)."""
    from stream_scorer.merchants.records import SKETCHES_KEY, features_topic

    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    from confluent_kafka import TopicPartition

    topic = features_topic(settings.group_id)
    try:
        n = len(c.list_topics(topic, timeout=10).topics[topic].partitions)
        out: dict[str, bytes] = {}
        for p in range(n):
            tp = TopicPartition(topic, p)
            _, high = c.get_watermark_offsets(tp, timeout=10, cached=False)
            if high <= 0:
                continue
            c.assign([TopicPartition(topic, p, 0)])
            deadline = time.monotonic() + 60
            while c.position([tp])[0].offset < high:
                assert time.monotonic() < deadline, f"reading {topic}[{p}] timed out"
                for m in c.consume(1000, 0.5):
                    if m.error() is None and m.key() != SKETCHES_KEY:
                        key = m.key().decode()
                        if m.value() is None:
                            out.pop(key, None)
                        else:
                            out[key] = m.value()
        return out
    finally:
        c.close()


def published_examples(settings: Settings) -> int:
    """How many labelled feature vectors the shared learner's latest committed model learned
    (0 when none was published)."""
    from confluent_kafka import TopicPartition

    from stream_scorer.features.engine import FeatureEngine
    from stream_scorer.merchants.learning import decode_model, model_topic, names_crc

    topic = model_topic(settings.group_id)
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        tp = TopicPartition(topic, 0)
        _, high = c.get_watermark_offsets(tp, timeout=10, cached=False)
        latest = None
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 60
        while high > 0 and c.position([tp])[0].offset < high:
            assert time.monotonic() < deadline, f"reading {topic} timed out"
            for m in c.consume(100, 0.5):
                if m.error() is None and m.value() is not None:
                    latest = m.value()
        if latest is None:
            return 0
        return decode_model(latest, names_crc(tuple(FeatureEngine(settings.features).names)))[1]
    finally:
        c.close()
