"""The demo: the whole system on one machine, with a live terminal view and the operations page.

It is what the README's first command runs. In one process, on threads:

1. a local Apache Kafka broker (:class:`~stream_scorer.kafka.launcher.LocalKafka`, a Java
   process of its own), unless ``KAFKA_BOOTSTRAP_SERVERS`` (or ``STREAM_SCORER_BOOTSTRAP_SERVERS``)
   names one;
2. the simulator: transactions at ``rate`` events/s (a few malformed, for the dead-letter topic),
   their labels about ``label_delay_s`` later on the labels topic, and a drift (amounts shift,
   card testing starts) ``drift_after_s`` in;
3. ``workers`` scoring workers in one consumer group, sharing the partitions;
4. a merchant stage (:class:`~stream_scorer.merchants.stage.MerchantStage`), which folds what the
   workers send it by merchant and publishes the merchant table they read (unless
   ``STREAM_SCORER_MERCHANT_FEATURES=partition``);
5. the side evaluator, whose port serves the operations page (``/``) and Prometheus (``/metrics``);
6. a reader of the metrics and drift-alerts topics, which the live view (rich) shows.

On Ctrl-C, SIGTERM or after ``duration`` seconds it stops them in the order data flows (feed,
workers, merchant stage, evaluator, reader, broker), prints a summary, and leaves no process behind.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from stream_scorer.config import Settings
from stream_scorer.demo_view import StageRow, TopicReader, WorkerRow, render, summary
from stream_scorer.evaluator import Evaluator
from stream_scorer.kafka.admin import all_topics, ensure_merchant_topics, ensure_topics
from stream_scorer.kafka.clients import make_producer
from stream_scorer.kafka.launcher import LocalKafka
from stream_scorer.merchants.stage import MerchantStage
from stream_scorer.simulate import LabelQueue, SimConfig, Simulator, malformed
from stream_scorer.worker import Worker

logger = logging.getLogger(__name__)

# The evaluator's windows, smaller than a production run's so that a drift a few minutes in is
# measured against a reference of its own: after the warm-up (see demo_evaluation), 10,000 scores
# of reference, then windows of 2,500.
DEMO_EVALUATION: dict[str, Any] = {
    "publish_interval_s": 2.0,
    "reference_size": 10_000,
    "drift_window": 2_500,
    "performance_min_labels": 2_500,
    "label_window": 2_500,
    "cooldown_s": 600.0,
}


@dataclass
class DemoOptions:
    """What ``stream-scorer demo`` takes on its command line."""

    duration: float | None = None
    rate: float = 500.0
    seed: int = 7
    workers: int = 2
    drift_after_s: float = 150.0
    label_delay_s: float = 60.0
    bad_share: float = 0.003
    page_port: int = 9109


def demo_evaluation(o: DemoOptions) -> dict[str, Any]:
    """The evaluator's settings for the demo: the warm-up lasts until the models have learned from
    30 s of labels. A reference taken earlier holds the scores of a model that has learned nothing
    yet (the labels come a minute late), and the first labels then move the score distribution
    enough to fire a prediction-drift alert long before the drift (seen with a 5,000-score warm-up:
    psi:score at 40 s).

    >>> w = demo_evaluation(DemoOptions(rate=500, label_delay_s=60))["warmup"]
    >>> w, (w + 10_000 + 2_500) / 500 < DemoOptions().drift_after_s
    (45000, True)
    """
    return {**DEMO_EVALUATION, "warmup": int(o.rate * (o.label_delay_s + 30.0))}


def _external_bootstrap() -> str | None:
    return os.environ.get("STREAM_SCORER_BOOTSTRAP_SERVERS") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Feed(threading.Thread):
    """The simulator: transactions (a few malformed) and, with their delay, their labels."""

    def __init__(self, settings: Settings, o: DemoOptions) -> None:
        super().__init__(name="demo-feed", daemon=True)
        self.settings, self.rate, self.bad_share, self.label_delay_s = settings, o.rate, o.bad_share, o.label_delay_s
        self.drift_at = int(o.rate * o.drift_after_s)
        config = SimConfig(events_per_second=o.rate, start=datetime.now(UTC), drift_at=self.drift_at)
        self.sim = Simulator(config, seed=o.seed)
        self.rng = random.Random(o.seed + 1)
        self.sent = self.bad = self.labels = 0
        self.drift_began: float | None = None  # wall-clock time of the first drifted event
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc
            logger.exception("the simulator failed")

    def _run(self) -> None:
        producer = make_producer(self.settings)
        topics = self.settings.topics

        def send(topic: str, key: bytes, value: bytes) -> None:
            while True:
                try:
                    producer.produce(topic, value, key)
                    return
                except BufferError:
                    producer.poll(0.05)

        def send_labels(due: list[dict[str, Any]]) -> None:
            for label in due:
                send(topics.labels, label["card_id"].encode(), orjson.dumps(label))
            self.labels += len(due)

        queue = LabelQueue()
        t0 = time.monotonic()
        while not self.stop_event.is_set():
            due = int((time.monotonic() - t0) * self.rate) - self.sent
            for _ in range(min(due, 5_000)):
                event = self.sim.next_event()
                label = self.sim.label_for(event, self.label_delay_s)
                send_labels(queue.push(datetime.fromisoformat(label["label_time"]).timestamp(), label))
                # The workers learn from the labels topic, a minute later, not from the event.
                if self.rng.random() < self.bad_share:
                    value = malformed(self.rng, event)
                    self.bad += 1
                else:
                    value = orjson.dumps({k: v for k, v in event.items() if k != "is_fraud"})
                send(topics.transactions, event["card_id"].encode(), value)
                self.sent += 1
                if self.sent == self.drift_at + 1:
                    self.drift_began = time.time()
            send_labels(queue.pop_due(self.sim.clock))
            producer.poll(0)
            time.sleep(0.02)
        producer.flush(10)


class _Loop(threading.Thread):
    """Runs a worker's, the merchant stage's or the evaluator's loop, keeping what it raised."""

    def __init__(self, name: str, loop: Worker | MerchantStage | Evaluator) -> None:
        super().__init__(name=name, daemon=True)
        self.loop = loop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:
            self.error = exc
            logger.exception("%s failed", self.name)


def run_demo(settings: Settings, options: DemoOptions) -> int:
    """Run the demo until Ctrl-C or ``options.duration`` seconds; return the process exit code."""
    kafkas: list[LocalKafka] = []
    try:
        return _run(settings, options, kafkas)
    finally:
        # The loops hold their Kafka clients in reference cycles: collect them while the broker
        # still answers, not at interpreter exit after it stopped (librdkafka would then print
        # connection errors on its way out).
        gc.collect()
        for kafka in kafkas:
            kafka.close()


def _run(settings: Settings, o: DemoOptions, kafkas: list[LocalKafka]) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    # librdkafka's warnings as clients come and go (a producer closed mid-handshake) are noise here.
    logging.getLogger("stream_scorer.kafka.librdkafka").setLevel(logging.ERROR)
    if _external_bootstrap() is None:
        console.print("starting a local Apache Kafka broker (the first run fetches its jars with Maven)...")
        kafka = LocalKafka()
        kafkas.append(kafka)  # closed by run_demo, whatever way this returns
        kafka.start()
        settings = settings.model_copy(update={"bootstrap_servers": kafka.bootstrap_servers})
        pid = kafka.process.pid if kafka.process is not None else None
        console.print(f"broker at {kafka.bootstrap_servers} (process {pid})")
    page_port = o.page_port if o.page_port and _free(o.page_port) else 0
    evaluation = settings.evaluation.model_copy(
        update={**demo_evaluation(o), "metrics_port": page_port, "metrics_host": "127.0.0.1"}
    )
    settings = settings.model_copy(update={"evaluation": evaluation})
    ensure_topics(settings, [*all_topics(settings), evaluation.metrics_topic])
    with_stage = settings.merchant_features == "stage"
    if with_stage:
        ensure_merchant_topics(settings)  # once, here, rather than raced for by the workers and the stage

    state_root = Path(tempfile.mkdtemp(prefix="stream-scorer-demo-"))
    workers = [
        Worker(
            settings.model_copy(
                update={"metrics_port": 0, "state_dir": state_root / f"worker-{i}", "instance_id": f"demo-{i}"}
            )
        )
        for i in range(1, o.workers + 1)
    ]
    loops = [_Loop(f"worker-{i}", w) for i, w in enumerate(workers, 1)]
    stage = (
        MerchantStage(settings.model_copy(update={"metrics_port": 0, "instance_id": "demo-merchants"}))
        if with_stage
        else None
    )
    stage_loops = [_Loop("merchants", stage)] if stage is not None else []
    evaluator = Evaluator(settings)
    eval_loop = _Loop("evaluator", evaluator)
    feed, reader = _Feed(settings, o), TopicReader(settings)
    for t in (*loops, *stage_loops, eval_loop, reader):
        t.start()
    page = _wait_page(evaluator, eval_loop)
    console.print(f"operations page: {page}  (Prometheus: {page}metrics)")
    feed.start()

    window = f"last_{min(evaluation.windows)}"
    rows = [WorkerRow(t.name) for t in loops]
    stage_row = StageRow() if stage is not None else None
    t0 = time.monotonic()
    last = (t0, [0] * len(workers))
    header = ""
    rc = 0

    def frame() -> Any:
        nonlocal last, header
        now = time.monotonic()
        lag = {m["member_id"]: m for m in evaluator.dashboard.lag}
        for row, w, t, before in zip(rows, workers, loops, last[1], strict=True):
            row.scored, row.dead_letters, row.alive = w.stats.scored, w.stats.dead_letters, t.is_alive()
            row.rate = (row.scored - before) / max(now - last[0], 1e-9)
            member = lag.get(_member_id(w) or "")
            row.lag = member["lag"] if member else None
            row.partitions = member["partitions"] if member else []
        last = (now, [r.scored for r in rows])
        if stage is not None and stage_row is not None:
            _read_stage(stage_row, stage, stage_loops[0].is_alive(), rows, workers)
        elapsed = now - t0
        header = (
            f"stream-scorer demo · {elapsed:4.0f}s · Kafka {settings.bootstrap_servers} · operations page {page}"
            + (f" · stops after {o.duration:.0f}s" if o.duration else " · Ctrl-C stops everything")
        )
        to_drift = feed.drift_at - feed.sent
        drift = (
            f"drift (amounts shift, card testing starts) at event {feed.drift_at:,}, in {to_drift / o.rate:.0f}s"
            if to_drift > 0
            else f"drift started {-to_drift / o.rate:.0f}s ago (event {feed.drift_at:,})"
        )
        feed_line = (
            f"simulator: {feed.sent:,} transactions ({o.rate:.0f}/s, {feed.bad:,} malformed), {feed.labels:,} labels"
            f" (about {o.label_delay_s:.0f}s late) · {drift}"
        )
        return render(header, feed_line, rows, reader, window, stage_row)

    watched: list[_Loop | _Feed] = [*loops, *stage_loops, eval_loop, feed]
    try:
        with Live(frame(), console=console, refresh_per_second=2, transient=False) as live:
            while o.duration is None or time.monotonic() - t0 < o.duration:
                time.sleep(1.0)
                live.update(frame())
                failed = [(t.name, t.error) for t in watched if t.error is not None]
                if failed:
                    console.print(f"[red]{failed[0][0]} stopped: {failed[0][1]!r}[/red]")
                    rc = 1
                    break
    except KeyboardInterrupt:
        console.print("stopping...")
    seconds = time.monotonic() - t0
    # Stop in the order data flows: nothing new in, workers finish and commit, then the readers.
    feed.stop_event.set()
    feed.join(15)
    for w in workers:
        w.stop()
    for t in loops:
        t.join(60)
    if stage is not None:
        # The stage folds what the workers sent in their last transactions, then commits and stops.
        scored = sum(w.stats.scored for w in workers)
        deadline = time.monotonic() + 15.0
        while stage_loops[0].is_alive() and stage.stats.events < scored and time.monotonic() < deadline:
            time.sleep(0.2)
        stage.stop()
        stage_loops[0].join(60)
    time.sleep(min(3.0, evaluation.publish_interval_s + 0.5))  # the evaluator reads the last scores
    evaluator.stop()
    eval_loop.join(60)
    time.sleep(0.5)
    reader.stop_event.set()
    reader.join(15)
    for row, w in zip(rows, workers, strict=True):
        row.scored, row.dead_letters = w.stats.scored, w.stats.dead_letters
    if stage is not None and stage_row is not None:
        _read_stage(stage_row, stage, False, rows, workers)
    stuck = [t.name for t in (*loops, *stage_loops, eval_loop, feed, reader) if t.is_alive()]
    if stuck:
        console.print(f"[red]still running after their deadline: {', '.join(stuck)}[/red]")
        rc = 1
    print(
        "\n" + summary(seconds, feed, rows, reader, window, settings, broker_kept=not kafkas, stage=stage_row),
        flush=True,
    )
    sys.stdout.flush()
    return rc


def _gauge_sum(registry: CollectorRegistry, name: str) -> float | None:
    """The sum of a gauge's samples (over its labels), None before it has any."""
    for family in registry.collect():
        if family.name == name:
            values = [s.value for s in family.samples if s.name == name]
            return sum(values) if values else None
    return None


def _read_stage(row: StageRow, stage: MerchantStage, alive: bool, rows: list[WorkerRow], workers: list[Worker]) -> None:
    """Fill the view's row of the merchant stage: what it holds and did (its gauges and counts, as
    Prometheus would read them), and the workers' merchant tables with their latest staleness."""
    st = stage.stats
    row.alive, row.partitions = alive, sorted(stage.parts)
    merchants = _gauge_sum(stage.metrics.registry, "stream_scorer_merchant_stage_merchants")
    lag = _gauge_sum(stage.metrics.registry, "stream_scorer_merchant_stage_consumer_lag")
    row.merchants = None if merchants is None else int(merchants)
    row.lag = None if lag is None else int(lag)
    row.events, row.labels, row.published, row.tombstones = st.events, st.labels, st.published, st.tombstones
    row.commits, row.aborts = st.commits, st.aborts
    row.tables, row.staleness, row.updates = {}, [], 0
    for wrow, w in zip(rows, workers, strict=True):
        if w.table is None or w.table_reader is None:
            continue
        row.tables[wrow.name] = len(w.table.merchants)
        row.staleness += _snapshot(w.table_reader.recent)
        row.updates += int(
            w.metrics.registry.get_sample_value("stream_scorer_merchant_table_staleness_seconds_count") or 0
        )


def _snapshot(samples: Any) -> list[float]:
    """A copy of a deque another thread appends to (a copy that met an append is taken again)."""
    for _ in range(5):
        try:
            return list(samples)
        except RuntimeError:
            continue
    return []


def _member_id(worker: Worker) -> str | None:
    consumer = getattr(worker, "_consumer", None)
    try:
        return consumer.memberid() if consumer is not None else None
    except Exception:  # not yet in the group, or closed
        return None


def _wait_page(evaluator: Evaluator, loop: _Loop, timeout: float = 30.0) -> str:
    """The operations page's address, once the evaluator's server listens."""
    deadline = time.monotonic() + timeout
    while evaluator.server is None and loop.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if evaluator.server is None:
        return "(the evaluator's page did not start)"
    return f"http://localhost:{evaluator.server.port}/"
