"""The demo: a local broker, the simulator, a worker, and a live view of what it scores.

It is what the README's first command runs. It uses ``KAFKA_BOOTSTRAP_SERVERS`` (or
``STREAM_SCORER_BOOTSTRAP_SERVERS``) when set, and otherwise starts the local broker.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from river import metrics

from stream_scorer.config import Settings
from stream_scorer.kafka.admin import ensure_topics
from stream_scorer.kafka.clients import make_consumer, make_producer
from stream_scorer.kafka.launcher import LocalKafka
from stream_scorer.simulate import SimConfig, Simulator, malformed
from stream_scorer.worker import Worker

logger = logging.getLogger(__name__)


def _external_bootstrap() -> str | None:
    return os.environ.get("STREAM_SCORER_BOOTSTRAP_SERVERS") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")


class _Feed(threading.Thread):
    """Produces simulated transactions at ``rate`` events/s, with a few malformed ones."""

    def __init__(self, settings: Settings, rate: float, seed: int, bad_share: float) -> None:
        super().__init__(name="demo-feed", daemon=True)
        self.settings, self.rate, self.bad_share = settings, rate, bad_share
        self.sim = Simulator(SimConfig(events_per_second=rate, start=datetime.now(UTC)), seed=seed)
        self.rng = random.Random(seed + 1)
        self.sent = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        producer = make_producer(self.settings)
        topic = self.settings.topics.transactions
        t0 = time.monotonic()
        while not self.stop_event.is_set():
            due = int((time.monotonic() - t0) * self.rate) - self.sent
            for _ in range(min(due, 5_000)):
                event = self.sim.next_event()
                value = malformed(self.rng, event) if self.rng.random() < self.bad_share else orjson.dumps(event)
                while True:
                    try:
                        producer.produce(topic, value, event["card_id"].encode())
                        break
                    except BufferError:
                        producer.poll(0.05)
                self.sent += 1
            producer.poll(0)
            time.sleep(0.01)
        producer.flush(10)


class _View(threading.Thread):
    """Reads committed scores back, as any downstream reader would, and keeps a running AUC."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="demo-view", daemon=True)
        self.settings = settings
        self.auc = metrics.ROCAUC()
        self.scores = 0
        self.bands = {"approve": 0, "review": 0, "decline": 0}
        self.stop_event = threading.Event()

    def run(self) -> None:
        consumer = make_consumer(self.settings, group_id=f"stream-scorer-demo-view-{uuid.uuid4().hex[:8]}")
        consumer.subscribe([self.settings.topics.scores])
        try:
            while not self.stop_event.is_set():
                for msg in consumer.consume(1000, 0.2):
                    if msg.error():
                        continue
                    rec = orjson.loads(msg.value() or b"")
                    self.scores += 1
                    self.bands[rec["band"]] += 1
                    if rec.get("label") is not None:
                        self.auc.update(rec["label"], rec["score"])
        finally:
            consumer.close()


def run_demo(settings: Settings, duration: float | None, rate: float, seed: int = 7, bad_share: float = 0.003) -> int:
    """Run the demo until Ctrl-C or ``duration`` seconds; return the process exit code."""
    kafkas: list[LocalKafka] = []
    try:
        return _run(settings, duration, rate, seed, bad_share, kafkas)
    finally:
        for kafka in kafkas:
            kafka.close()


def _run(
    settings: Settings, duration: float | None, rate: float, seed: int, bad_share: float, kafkas: list[LocalKafka]
) -> int:
    kafka: LocalKafka | None = None
    if _external_bootstrap() is None:
        print("starting a local Apache Kafka broker (the first run fetches its jars with Maven)...", flush=True)
        kafka = LocalKafka()
        kafkas.append(kafka)  # closed by run_demo, whatever way this returns
        kafka.start()
        settings = settings.model_copy(update={"bootstrap_servers": kafka.bootstrap_servers})
    print(f"Kafka at {settings.bootstrap_servers}; topics: {', '.join(_topic_names(settings))}", flush=True)
    ensure_topics(settings)
    # A free port for /metrics (a worker may already hold 9108) and a fresh state directory.
    state_dir = tempfile.mkdtemp(prefix="stream-scorer-demo-")
    worker = Worker(settings.model_copy(update={"metrics_port": 0, "state_dir": Path(state_dir)}))
    feed, view = _Feed(settings, rate, seed, bad_share), _View(settings)
    worker_thread = threading.Thread(target=worker.run, name="worker", daemon=True)
    for t in (worker_thread, feed, view):
        t.start()
    t0 = time.monotonic()
    last = (t0, 0)
    try:
        while duration is None or time.monotonic() - t0 < duration:
            time.sleep(2.0)
            now = time.monotonic()
            st = worker.stats
            rate_now = (st.scored - last[1]) / (now - last[0])
            last = (now, st.scored)
            auc = f"{view.auc.get():.3f}" if view.scores else "-"
            print(
                f"[{now - t0:6.0f}s] produced {feed.sent:>8}  scored {st.scored:>8} ({rate_now:7.0f}/s)"
                f"  dead letters {st.dead_letters:>5}  read back {view.scores:>8}"
                f"  approve/review/decline {view.bands['approve']}/{view.bands['review']}/{view.bands['decline']}"
                f"  running AUC {auc}",
                flush=True,
            )
            if not worker_thread.is_alive():
                print("the worker stopped unexpectedly", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    feed.stop_event.set()
    feed.join(15)
    worker.stop()
    worker_thread.join(60)
    view.stop_event.set()
    view.join(10)
    st = worker.stats
    print(f"done: scored {st.scored}, dead letters {st.dead_letters}, learned from {st.learned} labels", flush=True)
    return 0


def _topic_names(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.transactions, t.scores, t.dlq, t.labels, t.drift_alerts]
