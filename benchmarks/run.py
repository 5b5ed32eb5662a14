"""Issue 8's benchmark suite: how fast is stream-scorer, against its own limit and against a peer?

One command measures, in one run, on this machine:

1. **limit**: River's StandardScaler + LogisticRegression (SGD), ``predict_proba_one`` then
   ``learn_one``, on feature dicts with the feature engine's features; no I/O;
2. **offline**: ``Decoder.decode`` + ``Scorer.score`` (features, champion + challenger, learning
   from the inline label) + ``orjson.dumps`` on pre-encoded JSON events, no Kafka; and per stage;
3. **end to end** on an own local Apache Kafka broker (``LocalKafka``): a topic pre-filled with
   simulated events, one ``stream-scorer run`` process, time from its start until the group's
   committed offsets reach the end, for exactly-once and at-least-once;
4. **latency** from produce to a committed (read_committed) score at fixed offered rates;
5. **scale-out**: two workers on a 2-partition topic against one;
6. **state**: bytes and RSS per card with many cards, ``FeatureEngine.restore`` of the snapshot,
   and a worker's time to its first commit when it restores that snapshot at start;
7. **peer**: the same pipeline with Quix Streams (``benchmarks/quix_peer.py``), both guarantees;
8. **long stream** (only with ``--only longstream``): a worker's CPU per event (the process's
   CPU time) over the first and the last 200,000 of 1,000,000 events on one partition, for this
   tree and, in the same run, for ``--long-baseline`` (default 93eb3d0, before issue 17);
9. **merchant stage cost** (only with ``--only stagecost``): one worker over the same topic for
   ``--stage-baseline`` (the commit before the merchant stage), this tree with per-partition
   merchants, and this tree with the stage: wall time, and CPU per event of worker and stage.

    .venv/bin/python benchmarks/run.py                 # full, ~10-15 min on 2 cores
    .venv/bin/python benchmarks/run.py --quick         # < 3 min
    .venv/bin/python benchmarks/run.py --json out.json --profile
    .venv/bin/python benchmarks/run.py --only longstream  # ~15 min
    .venv/bin/python benchmarks/run.py --only stagecost   # ~5 min

Workers and the peer run as subprocesses (their own interpreter and GIL); the broker, the
harness (producer, committed-offset watcher, score reader) and the workers share the machine's
cores, so numbers are for *this* machine, with its noise.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
for _p in (str(ROOT), str(BENCH)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import orjson  # noqa: E402

from stream_scorer.kafka.launcher import free_port  # noqa: E402

PY = sys.executable
CLI = str(Path(PY).with_name("stream-scorer"))


# -- data ------------------------------------------------------------------------------------------


def simulate(n: int, seed: int = 8, n_cards: int = 20_000, n_merchants: int = 2_000) -> list[tuple[bytes, bytes]]:
    """``n`` simulated transactions as (key, JSON value) pairs, keyed by card as producers do."""
    from stream_scorer.simulate import SimConfig, Simulator

    sim = Simulator(SimConfig(n_cards=n_cards, n_merchants=n_merchants), seed=seed)
    dumps = orjson.dumps
    return [(e["card_id"].encode(), dumps(e)) for e in sim.events(n)]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settings_for(**kw: Any) -> Any:
    from stream_scorer.config import Settings

    kw.setdefault("bootstrap_servers", "127.0.0.1:9")
    kw.setdefault("log_format", "text")
    return Settings(**kw)


# -- 1. the limit ----------------------------------------------------------------------------------


def feature_rows(values: list[bytes]) -> list[tuple[dict[str, float], bool]]:
    """The features the engine computes for each event (realistic values for the model alone)."""
    from stream_scorer.decode import Decoder
    from stream_scorer.features.engine import FeatureEngine

    dec, eng, now = Decoder(), FeatureEngine(), time.time()
    out = []
    for v in values:
        txn = dec.decode(v, now)
        out.append((eng.update(txn), bool(txn.is_fraud)))  # type: ignore[union-attr]
    return out


def bench_limit(rows: list[tuple[dict[str, float], bool]]) -> dict[str, Any]:
    from stream_scorer.features.engine import FeatureEngine
    from stream_scorer.model.logistic import OnlineLogit, river_pipeline
    from stream_scorer.model.settings import ModelSettings

    ms = ModelSettings()
    assert len(rows[0][0]) == len(FeatureEngine.names), (len(rows[0][0]), len(FeatureEngine.names))
    model = river_pipeline(ms)  # River's own, configured as the champion is
    predict, learn = model.predict_proba_one, model.learn_one
    t0 = time.perf_counter()
    for x, y in rows:
        predict(x)
        learn(x, y)
    dt = time.perf_counter() - t0
    # the package's own champion (score with reason codes + learn), for reference
    m = OnlineLogit(ms)
    t1 = time.perf_counter()
    for x, y in rows:
        m.score(x)
        m.learn(x, y)
    dt2 = time.perf_counter() - t1
    n = len(rows)
    return {
        "events": n,
        "features": len(rows[0][0]),
        "events_per_s": n / dt,
        "us_per_event": dt / n * 1e6,
        "online_logit_events_per_s": n / dt2,
        "online_logit_us_per_event": dt2 / n * 1e6,
    }


# -- 2. offline pipeline ---------------------------------------------------------------------------


def bench_offline(values: list[bytes], batch: int = 500) -> dict[str, Any]:
    """The worker's per-record work without Kafka, as one loop and stage by stage."""
    from stream_scorer.decode import Decoder
    from stream_scorer.features.engine import FeatureEngine
    from stream_scorer.worker import build_scorer

    s = settings_for()
    n = len(values)

    def pipeline() -> tuple[float, float]:
        decode = Decoder(s.max_event_bytes, s.max_future_skew_s, s.min_event_time).decode
        score = build_scorer(s).score
        dumps = orjson.dumps
        t_start, c_start = time.perf_counter(), time.process_time()
        for i in range(0, n, batch):
            t0, now = time.perf_counter(), time.time()
            for v in values[i : i + batch]:
                txn = decode(v, now)
                dumps(score(txn, 0, t0))  # type: ignore[arg-type]
        return time.perf_counter() - t_start, time.process_time() - c_start

    gc.collect()
    # Wall clock, and this process's CPU time: on a machine shared with other jobs the second
    # does not count the time the loop waited for a core.
    total, cpu = pipeline()

    dec = Decoder(s.max_event_bytes, s.max_future_skew_s, s.min_event_time)
    now = time.time()
    t0 = time.perf_counter()
    txns = [dec.decode(v, now) for v in values]
    t_decode = time.perf_counter() - t0

    eng = FeatureEngine(s.features)
    t0 = time.perf_counter()
    for txn in txns:
        eng.update(txn)  # type: ignore[arg-type]
    t_features = time.perf_counter() - t0

    scorer = build_scorer(s)
    score = scorer.score
    t0 = time.perf_counter()
    records = [score(txn, 0, t0) for txn in txns]  # type: ignore[arg-type]
    t_score = time.perf_counter() - t0

    dumps = orjson.dumps
    t0 = time.perf_counter()
    for r in records:
        dumps(r)
    t_dumps = time.perf_counter() - t0

    us = lambda t: t / n * 1e6  # noqa: E731
    return {
        "events": n,
        "events_per_s": n / total,
        "us_per_event": us(total),
        "cpu_us_per_event": us(cpu),
        "stages_us": {
            "decode (orjson + pydantic + rules)": us(t_decode),
            "features (FeatureEngine.update)": us(t_features),
            "model + record (score - features)": us(t_score - t_features),
            "orjson.dumps(record)": us(t_dumps),
        },
        "score_us": us(t_score),
        "challenger": scorer.challenger is not None,
    }


# -- Kafka helpers ---------------------------------------------------------------------------------


class Broker:
    """An own LocalKafka with small admin/produce/committed helpers."""

    def __init__(self) -> None:
        from stream_scorer.kafka.launcher import LocalKafka

        self.kafka = LocalKafka(heap="1g")
        self.kafka.start()
        self.bootstrap = self.kafka.bootstrap_servers
        assert self.kafka.process is not None
        self.pid = self.kafka.process.pid
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})

    def close(self) -> None:
        self.kafka.close()

    def create(self, topics: dict[str, int]) -> None:
        from confluent_kafka.admin import NewTopic

        futures = self.admin.create_topics([NewTopic(t, p, 1) for t, p in topics.items()])
        for f in futures.values():
            f.result(30)

    def produce(self, topic: str, pairs: list[tuple[bytes, bytes]]) -> float:
        from confluent_kafka import Producer

        p = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "log_level": 0,
                "linger.ms": 20,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
                "compression.type": "none",
                "acks": "all",
                "partitioner": "murmur2_random",
            }
        )
        t0 = time.perf_counter()
        for k, v in pairs:
            while True:
                try:
                    p.produce(topic, v, k)
                    break
                except BufferError:
                    p.poll(0.05)
        if p.flush(120) != 0:
            raise RuntimeError("pre-fill: records not acknowledged")
        return time.perf_counter() - t0

    def high_watermarks(self, topic: str, partitions: int) -> int:
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "watermarks", "enable.auto.commit": False})
        try:
            return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                       for p in range(partitions))
        finally:
            c.close()

    def committed(self, group: str, topic: str, partitions: int) -> int:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
            return sum(max(tp.offset, 0) for tp in tps)
        except KafkaException:
            return -1
        finally:
            c.close()


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Ctx:
    broker: Broker
    work: Path
    quick: bool
    profile_worker: bool = False
    procs: list[Proc] = field(default_factory=list)

    def uid(self) -> str:
        return uuid.uuid4().hex[:6]

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Proc:
        log = self.work / f"{name}.log"
        out = open(log, "wb")  # noqa: SIM115
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=str(cwd),
        )
        out.close()
        proc = Proc(popen, log)
        self.procs.append(proc)
        return proc

    def worker(
        self, name: str, topic: str, partitions: int, group: str, scores: str,
        guarantee: str = "exactly_once", state_dir: Path | None = None, **more: str,
    ) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_SCORER_") or "KAFKA_" in k}
        env.update(
            STREAM_SCORER_BOOTSTRAP_SERVERS=self.broker.bootstrap,
            STREAM_SCORER_GROUP_ID=group,
            STREAM_SCORER_TOPICS__TRANSACTIONS=topic,
            STREAM_SCORER_TOPICS__LABELS=f"{topic}.labels",
            STREAM_SCORER_TOPICS__SCORES=scores,
            STREAM_SCORER_TOPICS__DLQ=f"{scores}.dlq",
            STREAM_SCORER_TOPICS__DRIFT_ALERTS=f"{scores}.drift",
            STREAM_SCORER_TOPICS__PARTITIONS=str(partitions),
            STREAM_SCORER_STATE_DIR=str(state_dir or (self.work / f"state-{name}")),
            STREAM_SCORER_INSTANCE_ID=name,
            STREAM_SCORER_PROCESSING_GUARANTEE=guarantee,
            STREAM_SCORER_LOG_FORMAT="text",
            STREAM_SCORER_LOG_LEVEL="WARNING",
            STREAM_SCORER_METRICS_PORT=str(free_port()),  # /metrics is served per batch, never per event
        )
        env.update(more)
        return self.spawn(name, [CLI, "run"], env)

    def input_topic(self, partitions: int, pairs: list[tuple[bytes, bytes]]) -> tuple[str, float]:
        topic = f"tx-{self.uid()}"
        self.broker.create({topic: partitions, f"{topic}.labels": partitions})
        return topic, self.broker.produce(topic, pairs)

    def wait_committed(
        self, procs: list[Proc], group: str, topic: str, partitions: int, n: int, t_start: float,
        timeout: float,
    ) -> dict[str, Any]:
        """Poll the group's committed offsets until they sum to ``n``; times from ``t_start``."""
        t_first = c_first = None
        samples = []
        deadline = t_start + timeout
        while True:
            c = self.broker.committed(group, topic, partitions)
            now = time.perf_counter()
            samples.append((round(now - t_start, 3), c))
            if c > 0 and t_first is None:
                t_first, c_first = now, c
            if c >= n:
                break
            dead = [p for p in procs if p.popen.poll() is not None]
            if dead:
                raise RuntimeError(f"process exited ({dead[0].popen.returncode}):\n{dead[0].tail()}")
            if now > deadline:
                raise RuntimeError(f"committed {c} of {n} after {timeout:.0f}s:\n{procs[0].tail()}")
            time.sleep(0.2)
        total = now - t_start
        out = {
            "events": n,
            "seconds_to_last_commit": total,
            "events_per_s": n / total,
            "seconds_to_first_commit": (t_first - t_start) if t_first else None,
        }
        if t_first is not None and now > t_first and c_first is not None and c_first < n:
            out["steady_events_per_s"] = (n - c_first) / (now - t_first)
        return out


# -- 3. end to end ---------------------------------------------------------------------------------


def bench_e2e(ctx: Ctx, topic: str, partitions: int, n: int, guarantee: str, **env: str) -> dict[str, Any]:
    group, tag = f"bench-{guarantee}-{ctx.uid()}", ctx.uid()
    t0 = time.perf_counter()
    w = ctx.worker(f"e2e-{guarantee}-{tag}", topic, partitions, group, f"scores-{tag}", guarantee, **env)
    spy = None
    if ctx.profile_worker:
        # py-spy attached to the live worker (sampling; it writes its file when the worker exits)
        raw = ctx.work / f"worker-{guarantee}.pyspy.txt"
        spy = ctx.spawn(f"pyspy-{tag}", [str(Path(PY).with_name("py-spy")), "record", "--format", "raw",
                                         "--rate", "100", "--nonblocking", "--output", str(raw),
                                         "--pid", str(w.popen.pid)])
    try:
        res = ctx.wait_committed([w], group, topic, partitions, n, t0, timeout=900)
    finally:
        w.stop()
    if spy is not None:
        try:
            spy.popen.wait(60)
        except subprocess.TimeoutExpired:
            spy.stop(5)
        if raw.exists():
            res["profile"] = {"raw": str(raw), "all": summarize_raw(raw, "Worker.run"),
                              "process_batch": summarize_raw(raw, "Worker.process_batch")}
    return res


def bench_quix(ctx: Ctx, topic: str, partitions: int, n: int, guarantee: str) -> dict[str, Any]:
    group, tag = f"quix-{guarantee}-{ctx.uid()}", ctx.uid()
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_SCORER_")}
    p = ctx.spawn(
        f"quix-{guarantee}-{tag}",
        [PY, str(BENCH / "quix_peer.py"), "--broker", ctx.broker.bootstrap, "--input", topic,
         "--output", f"scores-quix-{tag}", "--group", group, "--guarantee", guarantee],
        env,
    )
    try:
        res = ctx.wait_committed([p], group, topic, partitions, n, t0, timeout=900)
    finally:
        p.stop()
    return res


# -- 4. latency ------------------------------------------------------------------------------------


LATENCY_PRODUCER: dict[str, Any] = {"linger.ms": 5}
"""The offering producer: librdkafka's default linger, as a user's producer has (linger 1 ms made
the broker's share of the two cores 36% at 5,000 ev/s, against 17%)."""
LATENCY_READER: dict[str, Any] = {"fetch.wait.max.ms": 100, "fetch.min.bytes": 1}
"""The scores reader: a fetch returns as soon as a record is there, whatever the wait. A wait of
5 ms made an idle reader cost the broker 45% of a core (55% against 10% with no client, measured
with one consumer on an empty 6-partition topic), taken from the worker under test."""


def bench_latency(
    ctx: Ctx, rate: float, seconds: float, pairs: list[tuple[bytes, bytes]], **worker_env: str,
) -> dict[str, Any]:
    """A rate-controlled producer thread; a read_committed reader of the scores topic; latency =
    read time - produce call time, per transaction id (and to the score record's Kafka timestamp)."""
    from confluent_kafka import Consumer, Producer

    partitions, tag = 3, ctx.uid()
    topic = f"lat-{tag}"
    scores = f"scores-lat-{tag}"
    group = f"bench-lat-{tag}"
    ctx.broker.create({topic: partitions, f"{topic}.labels": partitions, scores: 6})
    w = ctx.worker(f"lat-{int(rate)}-{tag}", topic, partitions, group, scores, **worker_env)
    n = int(rate * seconds)
    warm, load = pairs[:200], pairs[200 : 200 + n]
    assert len(load) == n, "not enough events for the latency run"
    tids = [orjson.loads(v)["transaction_id"] for _, v in load]
    sent: dict[str, float] = {}
    got_read: dict[str, float] = {}
    got_kts: dict[str, float] = {}
    stop = threading.Event()

    def reader() -> None:
        c = Consumer(
            {
                "bootstrap.servers": ctx.broker.bootstrap, "group.id": f"reader-{tag}",
                "auto.offset.reset": "earliest", "enable.auto.commit": False,
                "isolation.level": "read_committed", **LATENCY_READER,
            }
        )
        c.subscribe([scores])
        loads = orjson.loads
        try:
            while not stop.is_set():
                # consume(n, t) waits for n records or t: take what is there, else wait for one.
                batch = c.consume(1000, 0) or c.consume(1, 0.02)
                for m in batch:
                    if m.error() is not None:
                        continue
                    now = time.time()
                    v = m.value()
                    i = v.find(b'"transaction_id":"')
                    tid = v[i + 18 : v.index(b'"', i + 18)].decode() if i >= 0 else loads(v)["transaction_id"]
                    got_read[tid] = now
                    got_kts[tid] = m.timestamp()[1] / 1000.0
        finally:
            c.close()

    producer = Producer({"bootstrap.servers": ctx.broker.bootstrap, "acks": "all", "log_level": 0, **LATENCY_PRODUCER})
    try:
        # warm-up: the worker joined, restored and scored, the reader sees scores
        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        for k, v in warm:
            producer.produce(topic, v, k)
        producer.flush(30)
        deadline = time.monotonic() + 90
        while len(got_read) < len(warm):
            if w.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"latency warm-up: {len(got_read)} of {len(warm)} scores read\n{w.tail()}")
            time.sleep(0.05)

        pids = {"broker": ctx.broker.pid, "worker": w.popen.pid, "harness": os.getpid()}
        cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        t0 = time.perf_counter()
        wall0 = time.time()
        i = 0
        produce, poll = producer.produce, producer.poll
        while i < n:
            due = t0 + i / rate
            now = time.perf_counter()
            if now < due:
                time.sleep(min(due - now, 0.002))
                continue
            k, v = load[i]
            sent[tids[i]] = wall0 + (now - t0)
            try:
                produce(topic, v, k)
            except BufferError:
                poll(0.01)
                continue
            i += 1
            if i % 100 == 0:
                poll(0)
        offered_s = time.perf_counter() - t0
        cpu = {k: round(100 * (cpu_seconds(pid) - cpu0[k]) / offered_s) for k, pid in pids.items()}
        producer.flush(30)
        deadline = time.monotonic() + 60
        while sum(1 for t in tids if t in got_read) < n and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        w.stop()
    lat_read = [(got_read[t] - sent[t]) * 1000 for t in tids if t in got_read]
    lat_kts = [(got_kts[t] - sent[t]) * 1000 for t in tids if t in got_kts]
    return {
        "offered_rate": rate,
        "achieved_offer_rate": n / offered_s,
        "events": n,
        "received": len(lat_read),
        "ms_produce_to_read_committed": {
            "p50": percentile(lat_read, 50), "p99": percentile(lat_read, 99),
            "p99.9": percentile(lat_read, 99.9), "max": max(lat_read, default=float("nan")),
        },
        "ms_produce_to_score_timestamp": {
            "p50": percentile(lat_kts, 50), "p99": percentile(lat_kts, 99),
            "p99.9": percentile(lat_kts, 99.9),
        },
        "worker_env": worker_env,
        "cpu_percent_while_offered": cpu,
        "producer": LATENCY_PRODUCER,
    }


# -- 5. scale-out ----------------------------------------------------------------------------------


def bench_scale(ctx: Ctx, pairs: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    topic, _ = ctx.input_topic(2, pairs)
    n = len(pairs)
    out: dict[str, Any] = {"events": n, "partitions": 2}
    for k in (1, 2):
        group, tag = f"bench-scale{k}-{ctx.uid()}", ctx.uid()
        t0 = time.perf_counter()
        ws = [ctx.worker(f"scale{k}-{i}-{tag}", topic, 2, group, f"scores-{tag}") for i in range(k)]
        try:
            out[f"workers_{k}"] = ctx.wait_committed(ws, group, topic, 2, n, t0, timeout=900)
        finally:
            for w in ws:
                w.stop()
    out["speedup"] = out["workers_2"]["events_per_s"] / out["workers_1"]["events_per_s"]
    s1, s2 = out["workers_1"].get("steady_events_per_s"), out["workers_2"].get("steady_events_per_s")
    if s1 and s2:
        out["steady_speedup"] = s2 / s1
    return out


# -- 8. long stream ---------------------------------------------------------------------------------


def cpu_at(samples: list[tuple[int, float]], committed: float) -> float:
    """The worker's CPU seconds when the group's committed offset passed ``committed``: linear
    between the two samples around it (samples are (committed, cpu) pairs, in time order)."""
    for (c0, t0), (c1, t1) in itertools.pairwise(samples):
        if c0 <= committed <= c1 and c1 > c0:
            return t0 + (t1 - t0) * (committed - c0) / (c1 - c0)
    raise ValueError(f"no samples around committed offset {committed:,.0f}")


def per_event_windows(samples: list[tuple[int, float]], n: int, window: int) -> dict[str, float]:
    """CPU per event (microseconds) over the first ``window`` events after the first commit (so
    that start-up, imports and restore, is left out) and over the last ``window`` of ``n``."""
    start = next(c for c, _ in samples if c > 0)
    first = (cpu_at(samples, start + window) - cpu_at(samples, start)) / window * 1e6
    last = (cpu_at(samples, n) - cpu_at(samples, n - window)) / window * 1e6
    step = max(window // 2, 1)  # the curve in between, to see where a difference comes from
    edges = [start, *range(step, n, step), n]
    curve = [round((cpu_at(samples, b) - cpu_at(samples, a)) / (b - a) * 1e6, 1)
             for a, b in itertools.pairwise(edges) if b > a]
    return {"first_from": start, "cpu_us_per_event_first": first, "cpu_us_per_event_last": last,
            "last_over_first": last / first, f"cpu_us_per_event_every_{step}": curve}


_BUILD_KERNELS = """
from setuptools import Distribution, Extension
from setuptools.command.build_ext import build_ext
exts = [Extension(f"stream_scorer.{m}._kernels", [f"stream_scorer/{m}/_kernels.c"],
                  extra_compile_args=["-ffp-contract=off"]) for m in ("model", "features")]
cmd = build_ext(Distribution({"name": "stream-scorer-baseline", "ext_modules": exts}))
cmd.inplace = True
cmd.ensure_finalized()
cmd.run()
"""


def export_tree(rev: str, dest: Path) -> Path:
    """``rev``'s ``stream_scorer`` package in ``dest``, with compiled kernels: this tree's when the
    C sources are the same at ``rev``, else built from ``rev``'s own (a worker must run the code
    it names)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    dest.mkdir(parents=True, exist_ok=True)
    same_c = not git("diff", "--stat", rev, "--", "stream_scorer/model/_kernels.c", "stream_scorer/features/_kernels.c")
    archive = subprocess.run(["git", "archive", rev, "stream_scorer"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    if same_c:
        for sub in ("model", "features"):
            for so in (ROOT / "stream_scorer" / sub).glob("_kernels*.so"):
                shutil.copy2(so, dest / "stream_scorer" / sub / so.name)
    else:  # the flags of pyproject.toml's ext-modules
        subprocess.run([PY, "-c", _BUILD_KERNELS], cwd=dest, check=True, capture_output=True)
    return dest


def run_long(ctx: Ctx, name: str, topic: str, n: int, window: int, tree: Path | None) -> dict[str, Any]:
    """One worker (this tree's, or the package exported to ``tree``) over ``topic``: samples of
    (committed offset, the worker process's CPU seconds) every 0.2 s until it committed all ``n``."""
    group, tag = f"bench-long-{name}-{ctx.uid()}", ctx.uid()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_SCORER_") or "KAFKA_" in k}
    env.update(_worker_env(ctx, name, topic, group, tag))
    if tree is None:
        proc = ctx.spawn(f"long-{name}-{tag}", [CLI, "run"], env)
    else:  # the same interpreter and environment, the other package first on the path
        env["PYTHONPATH"] = str(tree)
        proc = ctx.spawn(f"long-{name}-{tag}", [PY, "-m", "stream_scorer.cli", "run"], env, cwd=tree)
    t0 = time.perf_counter()
    samples: list[tuple[int, float]] = []
    try:
        while True:
            c = ctx.broker.committed(group, topic, 1)
            samples.append((c, cpu_seconds(proc.popen.pid)))
            if c >= n:
                break
            if proc.popen.poll() is not None:
                raise RuntimeError(f"worker exited ({proc.popen.returncode}):\n{proc.tail()}")
            if time.perf_counter() - t0 > 1800:
                raise RuntimeError(f"committed {c} of {n} after 1800 s:\n{proc.tail()}")
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
    finally:
        proc.stop()
    out: dict[str, Any] = {"events": n, "seconds": seconds, "events_per_s": n / seconds, "samples": len(samples)}
    out.update(per_event_windows(samples, n, window))
    return out


def _worker_env(ctx: Ctx, name: str, topic: str, group: str, tag: str) -> dict[str, str]:
    return dict(
        STREAM_SCORER_BOOTSTRAP_SERVERS=ctx.broker.bootstrap,
        STREAM_SCORER_GROUP_ID=group,
        STREAM_SCORER_TOPICS__TRANSACTIONS=topic,
        STREAM_SCORER_TOPICS__LABELS=f"{topic}.labels",
        STREAM_SCORER_TOPICS__SCORES=f"scores-{tag}",
        STREAM_SCORER_TOPICS__DLQ=f"scores-{tag}.dlq",
        STREAM_SCORER_TOPICS__DRIFT_ALERTS=f"scores-{tag}.drift",
        STREAM_SCORER_TOPICS__PARTITIONS="1",
        STREAM_SCORER_STATE_DIR=str(ctx.work / f"state-long-{name}-{tag}"),
        STREAM_SCORER_INSTANCE_ID=f"long-{name}-{tag}",
        STREAM_SCORER_LOG_FORMAT="text",
        STREAM_SCORER_LOG_LEVEL="WARNING",
        STREAM_SCORER_METRICS_PORT=str(free_port()),
    )


def bench_longstream(ctx: Ctx, n: int, window: int, baseline: str | None) -> dict[str, Any]:
    """A worker's CPU per event over the first and the last ``window`` of ``n`` events on one
    partition: the per-event cost must not grow with the stream (state eviction, de-duplication,
    anything that walks more as it ages). ``baseline`` (a git revision) runs the same topic."""
    pairs = simulate(n, seed=17)
    topic, fill = ctx.input_topic(1, pairs)
    del pairs
    gc.collect()
    out: dict[str, Any] = {"events": n, "window": window, "partitions": 1, "prefill_seconds": fill}
    out["current"] = run_long(ctx, "current", topic, n, window, None)
    if baseline:
        tree = export_tree(baseline, ctx.work / f"tree-{baseline}")
        out["baseline_rev"] = baseline
        out["baseline"] = _safe(lambda: run_long(ctx, "baseline", topic, n, window, tree))
    return out


# -- 9. the merchant stage's cost -------------------------------------------------------------------


def run_stage_cost(
    ctx: Ctx, name: str, topic: str, partitions: int, n: int, tree: Path | None, mode: str | None
) -> dict[str, Any]:
    """One worker (this tree's, or the package exported to ``tree``) over ``topic``; with ``mode``
    ``stage`` a ``stream-scorer merchants`` process too. Wall time until the worker committed all
    ``n`` and the stage caught up; each process's own CPU seconds, per event."""
    group, tag = f"bench-stage-{name}-{ctx.uid()}", ctx.uid()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_SCORER_") or "KAFKA_" in k}
    env.update(_worker_env(ctx, name, topic, group, tag))
    env["STREAM_SCORER_TOPICS__PARTITIONS"] = str(partitions)
    if mode is not None:
        env["STREAM_SCORER_MERCHANT_FEATURES"] = mode
    procs: list[Proc] = []
    stage = None
    t0 = time.perf_counter()
    try:
        if mode == "stage":
            ctx.broker.create({f"{group}.by-merchant": partitions})
            stage_env = dict(env, STREAM_SCORER_METRICS_PORT=str(free_port()))
            stage = ctx.spawn(f"stage-{name}-{tag}", [CLI, "merchants"], stage_env)
            procs.append(stage)
        if tree is None:
            worker = ctx.spawn(f"stagecost-{name}-{tag}", [CLI, "run"], env)
        else:  # the same interpreter and environment, the other package first on the path
            env["PYTHONPATH"] = str(tree)
            worker = ctx.spawn(f"stagecost-{name}-{tag}", [PY, "-m", "stream_scorer.cli", "run"], env, cwd=tree)
        procs.append(worker)
        res = ctx.wait_committed(procs, group, topic, partitions, n, t0, timeout=1800)
        worker_cpu = cpu_seconds(worker.popen.pid)
        stage_cpu = 0.0
        if stage is not None:
            by_merchant = f"{group}.by-merchant"
            deadline = time.monotonic() + 300
            while True:
                high = ctx.broker.high_watermarks(by_merchant, partitions)
                done = ctx.broker.committed(f"{group}.merchants", by_merchant, partitions)
                if done >= high - partitions:  # commit markers: one per partition at most
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"merchant stage at {done} of {high}:\n{stage.tail()}")
                time.sleep(0.2)
            stage_cpu = cpu_seconds(stage.popen.pid)
        seconds = time.perf_counter() - t0
    finally:
        for p in procs:
            p.stop()
    return {
        "events": n, "seconds": seconds, "events_per_s": n / seconds,
        "seconds_to_last_commit": res["seconds_to_last_commit"],
        "cpu_us_per_event_worker": worker_cpu / n * 1e6,
        "cpu_us_per_event_stage": stage_cpu / n * 1e6,
        "cpu_us_per_event_total": (worker_cpu + stage_cpu) / n * 1e6,
    }


def bench_stage_cost(ctx: Ctx, n: int, baseline: str | None, partitions: int = 3) -> dict[str, Any]:
    """The end-to-end cost of the merchant stage: one worker over ``n`` events on ``partitions``
    partitions, for ``baseline`` (the commit before the stage), this tree with per-partition
    merchants, and this tree with the stage (worker + stage process), all in this run."""
    pairs = simulate(n, seed=23)
    topic, fill = ctx.input_topic(partitions, pairs)
    del pairs
    gc.collect()
    out: dict[str, Any] = {"events": n, "partitions": partitions, "prefill_seconds": fill}
    if baseline:
        tree = export_tree(baseline, ctx.work / f"tree-{baseline}")
        out["baseline_rev"] = baseline
        out["baseline"] = _safe(lambda: run_stage_cost(ctx, "baseline", topic, partitions, n, tree, None))
    out["partition"] = _safe(lambda: run_stage_cost(ctx, "partition", topic, partitions, n, None, "partition"))
    out["stage"] = _safe(lambda: run_stage_cost(ctx, "stage", topic, partitions, n, None, "stage"))
    base = out.get("baseline") or {}
    if "cpu_us_per_event_worker" in base and "cpu_us_per_event_total" in out["stage"]:
        out["stage_total_over_baseline"] = out["stage"]["cpu_us_per_event_total"] / base["cpu_us_per_event_worker"]
        out["stage_worker_over_baseline"] = out["stage"]["cpu_us_per_event_worker"] / base["cpu_us_per_event_worker"]
    return out


# -- 6. state --------------------------------------------------------------------------------------


def build_engine(n_cards: int, n_merchants: int = 5_000) -> Any:
    """Like ``bench_features.bench_rss``: ``n_cards`` cards, one event each, dirty keys cleared as
    the worker does per batch."""
    import random

    from bench_features import T0

    from stream_scorer.features.engine import FeatureEngine

    eng = FeatureEngine()
    rng = random.Random(3)
    for i in range(n_cards):
        if i % 500 == 0:
            eng.clear_dirty()
        eng.update_raw(f"card-{i:08d}", f"merchant-{rng.randrange(n_merchants):06d}", 10.0 + i % 97, T0 + i * 0.001)
    eng.clear_dirty()
    return eng


def bench_state_memory(n_cards: int) -> tuple[dict[str, Any], Any]:
    from stream_scorer.features.engine import FeatureEngine

    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    eng = build_engine(n_cards)
    t_build = time.perf_counter() - t0
    gc.collect()
    rss1 = rss_bytes()
    value = eng.dump_key("c:card-00000000")
    t0 = time.perf_counter()
    snap = eng.snapshot()
    t_snap = time.perf_counter() - t0
    gc.collect()
    t0 = time.perf_counter()
    restored = FeatureEngine.restore(snap)
    t_restore = time.perf_counter() - t0
    assert len(restored.cards) == n_cards
    del restored
    gc.collect()
    return {
        "cards": n_cards,
        "merchants": len(eng.merchants),
        "card_buffer_bytes": eng._card.size,
        "card_changelog_value_bytes": len(value) if value else None,
        "rss_bytes_per_card": (rss1 - rss0) / n_cards,
        "rss_mib": rss1 / 2**20,
        "rss_delta_mib": (rss1 - rss0) / 2**20,
        "snapshot_mb": len(snap) / 1e6,
        "snapshot_bytes_per_card": len(snap) / n_cards,
        "seconds_to_build": t_build,
        "seconds_snapshot": t_snap,
        "seconds_restore": t_restore,
    }, (eng, snap)


def bench_state_worker_start(ctx: Ctx, eng: Any) -> dict[str, Any]:
    """A worker whose state dir holds a snapshot of ``eng`` on partition 0: time from its start to
    its first committed score (restore included), against the same start without a snapshot."""
    from stream_scorer.pipeline import Scorer
    from stream_scorer.state.store import StateStore
    from stream_scorer.worker import build_scorer

    out: dict[str, Any] = {"cards": len(eng.cards)}
    pairs = simulate(1, seed=99)
    for with_snap in (False, True):
        tag = ctx.uid()
        topic, _ = ctx.input_topic(1, pairs)
        group = f"bench-restore-{tag}"
        state_dir = ctx.work / f"state-restore-{tag}"
        if with_snap:
            s = settings_for(bootstrap_servers=ctx.broker.bootstrap, group_id=group, state_dir=state_dir,
                             topics={"transactions": topic, "labels": f"{topic}.labels", "partitions": 1})
            scorer: Scorer = build_scorer(s)
            scorer.partition(0).engine = eng
            store = StateStore(s, scorer)
            if hasattr(store, "cluster_id"):  # snapshots name their cluster; another's is refused
                from stream_scorer.kafka.admin import cluster_id

                store.cluster_id = cluster_id(s)
            t0 = time.perf_counter()
            store.snapshot(0)
            out["seconds_write_snapshot_files"] = time.perf_counter() - t0
            out["snapshot_file_mb"] = sum(p.stat().st_size for p in (state_dir / group).glob("*")) / 1e6
        t0 = time.perf_counter()
        w = ctx.worker(f"restore-{int(with_snap)}-{tag}", topic, 1, group, f"scores-{tag}", state_dir=state_dir,
                      STREAM_SCORER_LOG_LEVEL="INFO")
        try:
            r = ctx.wait_committed([w], group, topic, 1, 1, t0, timeout=300)
        finally:
            w.stop()
        restored_line = next((ln for ln in w.log.read_text(errors="replace").splitlines() if "restored" in ln), "")
        out["with_snapshot" if with_snap else "without_snapshot"] = {
            "seconds_to_first_commit": r["seconds_to_last_commit"],
            "restore_log": restored_line[-200:],
            "snapshot_used": " from snapshot" in restored_line,
        }
    out["restore_cost_seconds"] = (
        out["with_snapshot"]["seconds_to_first_commit"] - out["without_snapshot"]["seconds_to_first_commit"]
    )
    return out


# -- profile ---------------------------------------------------------------------------------------


def profile_offline(work: Path, n: int) -> dict[str, Any]:
    """py-spy (sampling, native off) on a child running the offline pipeline; self and inclusive
    shares per function from the collapsed stacks."""
    spy = shutil.which("py-spy") or str(Path(PY).with_name("py-spy"))
    raw = work / "offline.pyspy.txt"
    cmd = [spy, "record", "--format", "raw", "--rate", "250", "--output", str(raw), "--",
           PY, str(Path(__file__).resolve()), "--child-offline", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not raw.exists():
        return {"error": (proc.stderr or proc.stdout)[-800:]}
    out = summarize_raw(raw, "_hot_loop")
    out["raw"] = str(raw)
    return out


def summarize_raw(raw: Path, marker: str) -> dict[str, Any]:
    """Self and inclusive shares per function from py-spy's collapsed stacks, over the samples
    whose stack holds the function ``marker`` (the timed loop, not the set-up)."""
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        if not any(f.startswith(marker + " ") for f in frames):
            continue
        total += c
        self_c[frames[-1]] += c
        for f in set(frames):
            incl_c[f] += c
    pct = lambda c: round(100.0 * c / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "self_pct_top": [(f, pct(c)) for f, c in self_c.most_common(25)],
        "inclusive_pct_top": [(f, pct(c)) for f, c in incl_c.most_common(40)],
    }


def pipeline_for_profile(values: list[bytes]) -> None:
    from stream_scorer.decode import Decoder
    from stream_scorer.worker import build_scorer

    s = settings_for()
    decode = Decoder(s.max_event_bytes, s.max_future_skew_s, s.min_event_time).decode
    _hot_loop(values, decode, build_scorer(s).score)


def _hot_loop(values: list[bytes], decode: Any, score: Any) -> None:
    """The worker's per-record work, per batch of 500 (the only part the profile counts)."""
    dumps = orjson.dumps
    for i in range(0, len(values), 500):
        t0, now = time.perf_counter(), time.time()
        for v in values[i : i + 500]:
            dumps(score(decode(v, now), 0, t0))


# -- report ----------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def table(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    g = lambda *ks: _get(r, *ks)  # noqa: E731
    f0 = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
    f1 = lambda v: "-" if v is None else f"{v:,.1f}"  # noqa: E731
    f2 = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    limit = g("limit", "events_per_s")
    rows.append(("1 limit: River scaler+logreg predict+learn", f"{f0(limit)} ev/s", "", ""))
    rows.append(("  package OnlineLogit score+learn (1 model)",
                 f"{f0(g('limit', 'online_logit_events_per_s'))} ev/s", "", ""))
    rows.append(("2 offline: decode+score(champion+challenger)+dumps", f"{f0(g('offline', 'events_per_s'))} ev/s",
                 "", f"{f2(_ratio(g('offline', 'events_per_s'), limit))} x limit"))
    if g("offline", "cpu_us_per_event") is not None:
        rows.append(("  CPU time of the process (not waiting for a core)",
                     f"{f1(g('offline', 'cpu_us_per_event'))} us/ev", "", ""))
    for k, v in (g("offline", "stages_us") or {}).items():
        rows.append((f"  {k}", f"{f1(v)} us/ev", "", ""))
    for gua in ("exactly_once", "at_least_once"):
        e = g("e2e", gua) or {}
        ratio = _ratio(e.get("events_per_s"), limit)
        rows.append((f"3 end to end, 1 worker, {gua}", f"{f0(e.get('events_per_s'))} ev/s "
                     f"({f1(e.get('seconds_to_last_commit'))} s; steady {f0(e.get('steady_events_per_s'))})",
                     ">= 50% of limit", f"{f2(ratio)} x limit {verdict(None if ratio is None else ratio >= 0.5)}"))
    e = g("e2e", "exactly_once_no_challenger") or {}
    if e:
        ratio = _ratio(e.get("events_per_s"), limit)
        rows.append(("3 end to end, exactly_once, challenger off", f"{f0(e.get('events_per_s'))} ev/s "
                     f"({f1(e.get('seconds_to_last_commit'))} s; steady {f0(e.get('steady_events_per_s'))})",
                     "", f"{f2(ratio)} x limit"))
    for gua, qg in (("exactly_once", "exactly-once"), ("at_least_once", "at-least-once")):
        q = g("quix", qg) or {}
        ratio = _ratio(g("e2e", gua, "events_per_s"), q.get("events_per_s"))
        rows.append((f"7 Quix Streams peer, {qg}", f"{f0(q.get('events_per_s'))} ev/s "
                     f"({f1(q.get('seconds_to_last_commit'))} s; steady {f0(q.get('steady_events_per_s'))})",
                     ">= 2x Quix", f"{f2(ratio)} x {verdict(None if ratio is None else ratio >= 2.0)}"))
    for lat in r.get("latency", []):
        m = lat["ms_produce_to_read_committed"]
        env = dict(lat["worker_env"])
        gua = "ALOS" if env.pop("STREAM_SCORER_PROCESSING_GUARANTEE", "") == "at_least_once" else "EOS"
        target = "p99 <= 20 ms" if lat["offered_rate"] == 5000 and not env else ""
        ok = verdict(m["p99"] <= 20.0) if target else ""
        tune = " " + ",".join(f"{k.removeprefix('STREAM_SCORER_').lower()}={v}" for k, v in env.items()) if env else ""
        rows.append((f"4 latency @ {lat['offered_rate']:,.0f} ev/s ({gua}{tune})",
                     f"p50 {f1(m['p50'])} / p99 {f1(m['p99'])} / p99.9 {f1(m['p99.9'])} ms "
                     f"({lat['received']}/{lat['events']}{_cpu(lat)})", target, ok))
    sc = r.get("scale") or {}
    if sc:
        sp = sc.get("speedup")
        rows.append(("5 scale-out: 2 workers vs 1 (2 partitions, 2 cores)",
                     f"{f0(_get(sc, 'workers_1', 'events_per_s'))} -> {f0(_get(sc, 'workers_2', 'events_per_s'))} ev/s "
                     f"(steady x{f2(sc.get('steady_speedup'))})", ">= 1.7x",
                     f"{f2(sp)} x {verdict(None if sp is None else sp >= 1.7)}"))
    st = r.get("state") or {}
    if st:
        bpc = st.get("rss_bytes_per_card")
        rows.append((f"6 state: RSS per card ({st['cards']:,} cards)", f"{f0(bpc)} B "
                     f"(buffer {st['card_buffer_bytes']} B, snapshot {f0(st['snapshot_bytes_per_card'])} B/card)",
                     "<= 1 KiB", verdict(bpc <= 1024)))
        scale = 1_000_000 / st["cards"]
        est = "" if scale == 1 else f" (x{scale:.0f} -> {f1(st['seconds_restore'] * scale)} s est.)"
        rows.append((f"6 FeatureEngine.restore of {st['cards']:,} cards", f"{f2(st['seconds_restore'])} s{est}",
                     "<= 10 s for 1M", verdict(st["seconds_restore"] * scale <= 10.0)))
    ws = r.get("state_worker") or {}
    if ws.get("with_snapshot"):
        rows.append((f"6 worker start -> first commit, {ws['cards']:,}-card snapshot",
                     f"{f1(ws['with_snapshot']['seconds_to_first_commit'])} s "
                     f"(no snapshot {f1(ws['without_snapshot']['seconds_to_first_commit'])} s)"
                     + ("" if ws["with_snapshot"].get("snapshot_used") else " SNAPSHOT NOT USED"), "", ""))
    ls = r.get("longstream") or {}
    for who in ("current", "baseline"):
        e = ls.get(who) or {}
        if "cpu_us_per_event_first" in e:
            ratio = e["last_over_first"]
            name = "this tree" if who == "current" else ls.get("baseline_rev", "baseline")
            rows.append((f"8 long stream ({name}): CPU/event, first vs last {ls['window']:,} of {ls['events']:,}",
                         f"{f1(e['cpu_us_per_event_first'])} -> {f1(e['cpu_us_per_event_last'])} us "
                         f"({f0(e['events_per_s'])} ev/s)", "within 10%",
                         f"x{f2(ratio)} {verdict(abs(ratio - 1.0) <= 0.10)}"))
        elif e:
            rows.append((f"8 long stream ({who})", "failed", "within 10%", "n/a"))
    sc9 = r.get("stagecost") or {}
    for who in ("baseline", "partition", "stage"):
        e = sc9.get(who) or {}
        if "cpu_us_per_event_total" in e:
            name = {"baseline": sc9.get("baseline_rev", "baseline"), "partition": "this tree, per-partition merchants",
                    "stage": "this tree, worker + merchant stage"}[who]
            extra = f" (worker {f1(e['cpu_us_per_event_worker'])} + stage {f1(e['cpu_us_per_event_stage'])})" \
                if who == "stage" else ""
            ratio = _ratio(e["cpu_us_per_event_total"], _get(sc9, "baseline", "cpu_us_per_event_total"))
            rows.append((f"9 merchant stage cost ({name})", f"{f1(e['cpu_us_per_event_total'])} us CPU/ev{extra}, "
                         f"{f0(e['events_per_s'])} ev/s", "", "" if ratio is None else f"x{f2(ratio)} baseline"))
        elif e:
            rows.append((f"9 merchant stage cost ({who})", "failed", "", "n/a"))
    head = ("measure", "value", "target", "result")
    w = [max(len(x[i]) for x in [*rows, head]) for i in range(4)]
    line = lambda x: "  ".join(x[i].ljust(w[i]) for i in range(4)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * n for n in w)), *(line(x) for x in rows)])


def _cpu(lat: dict[str, Any]) -> str:
    cpu = lat.get("cpu_percent_while_offered")
    return f"; cpu% broker {cpu['broker']} worker {cpu['worker']} harness {cpu['harness']}" if cpu else ""


def _get(d: Any, *ks: str) -> Any:
    for k in ks:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, help="events of the pre-filled topic (default 200,000; quick 30,000)")
    ap.add_argument("--quick", action="store_true", help="small sizes, < 3 minutes")
    ap.add_argument("--json", default=str(BENCH / "results.json"), help="where to write the results")
    ap.add_argument("--profile", action="store_true", help="also profile the offline pipeline with py-spy")
    ap.add_argument("--only", help="comma list of sections: limit,offline,e2e,quix,latency,scale,state,longstream,"
                    "stagecost (longstream and stagecost run only when named)")
    ap.add_argument("--long-events", type=int, default=1_000_000, help="events of the long stream (one partition)")
    ap.add_argument("--long-window", type=int, default=200_000, help="events of its first and last windows")
    ap.add_argument("--long-baseline", default="93eb3d0",
                    help="git revision whose worker runs the long stream too, in the same run ('' : none)")
    ap.add_argument("--profile-worker", action="store_true", help="attach py-spy to the end-to-end workers")
    ap.add_argument("--stage-events", type=int, default=100_000, help="events of the merchant stage's cost run")
    ap.add_argument("--stage-baseline", default="ee6a149",
                    help="git revision (before the merchant stage) whose worker runs the stage-cost stream too")
    ap.add_argument("--child-offline", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child_offline:
        values = [v for _, v in simulate(args.child_offline)]
        pipeline_for_profile(values)
        return

    # a SIGTERM unwinds through the finally blocks: workers stopped, broker closed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    q = args.quick
    n = args.events or (30_000 if q else 200_000)
    n_scale = 20_000 if q else 100_000
    lat_s = 5.0 if q else 20.0
    state_cards = 100_000 if q else 1_000_000
    sections = set((args.only or "limit,offline,e2e,quix,latency,scale,state").split(","))
    results: dict[str, Any] = {
        "command": " ".join([Path(PY).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_head": _git_head(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "sizes": {"events": n, "scale_events": n_scale, "latency_seconds": lat_s, "state_cards": state_cards},
    }
    t_all = time.perf_counter()

    def step(name: str) -> None:
        print(f"[{time.perf_counter() - t_all:6.1f}s] {name}", flush=True)

    def save() -> None:
        results["seconds_total"] = time.perf_counter() - t_all
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))

    # state first, as bench_features does: memory freed later would hide the growth
    snap_engine = None
    if "state" in sections:
        step(f"state: {state_cards:,} cards")
        results["state"], (snap_engine, _snap) = bench_state_memory(state_cards)
        del _snap
        gc.collect()

    pairs: list[tuple[bytes, bytes]] = []
    if sections & {"limit", "offline", "e2e", "quix"}:
        step(f"simulate {n:,} events")
        pairs = simulate(n)
    values = [v for _, v in pairs]
    if "limit" in sections:
        step("limit")
        rows = feature_rows(values[: min(n, 100_000)])
        results["limit"] = bench_limit(rows)
        del rows
    if "offline" in sections:
        step("offline pipeline")
        results["offline"] = bench_offline(values[: min(n, 100_000)])
    save()

    work = Path(tempfile.mkdtemp(prefix="stream-scorer-bench-"))
    broker_needed = sections & {"e2e", "quix", "latency", "scale", "state", "longstream", "stagecost"}
    ctx: Ctx | None = None
    try:
        if broker_needed:
            step("broker")
            ctx = Ctx(Broker(), work, q, profile_worker=args.profile_worker)
        if ctx and sections & {"e2e", "quix"}:
            step(f"pre-fill a 3-partition topic with {n:,} events")
            topic, t_fill = ctx.input_topic(3, pairs)
            results["prefill_seconds"] = t_fill
            # The broker's JVM compiles its transaction, fetch and commit paths on first use: one
            # short exactly-once run first, so that no measured run (ours or the peer's) pays it.
            step("warm-up: a short exactly-once run, not measured")
            n_warm = min(n, 30_000)
            warm_topic, _ = ctx.input_topic(3, pairs[:n_warm])
            results["warmup"] = _safe(lambda: bench_e2e(ctx, warm_topic, 3, n_warm, "exactly_once"))
            for gua in ("exactly_once", "at_least_once"):
                if "e2e" in sections:
                    step(f"end to end, {gua}")
                    results.setdefault("e2e", {})[gua] = _safe(lambda gua=gua: bench_e2e(ctx, topic, 3, n, gua))
                    save()
            if "e2e" in sections:
                step("end to end, exactly_once, no challenger (one model, as the limit)")
                results["e2e"]["exactly_once_no_challenger"] = _safe(
                    lambda: bench_e2e(ctx, topic, 3, n, "exactly_once", STREAM_SCORER_CHALLENGER__KIND="none"))
                save()
            for gua in ("exactly-once", "at-least-once"):
                if "quix" in sections:
                    step(f"quix, {gua}")
                    results.setdefault("quix", {})[gua] = _safe(lambda gua=gua: bench_quix(ctx, topic, 3, n, gua))
                    save()
        if ctx and "latency" in sections:
            lat_pairs = simulate(int(5000 * lat_s) + 300, seed=21)
            results["latency"] = []
            tuned = {"STREAM_SCORER_COMMIT_INTERVAL_S": "0.02"}  # more, smaller transactions
            # At-least-once scores are visible once written; exactly-once ones once committed.
            alos = {"STREAM_SCORER_PROCESSING_GUARANTEE": "at_least_once"}
            runs = ((1000.0, {}), (5000.0, {}), (1000.0, tuned), (5000.0, tuned), (1000.0, alos), (5000.0, alos))
            for rate, env in runs:
                step(f"latency at {rate:.0f} ev/s {env or ''}")
                res = _safe(lambda rate=rate, env=env: bench_latency(ctx, rate, lat_s, lat_pairs, **env))
                if "error" in res:
                    res.update(offered_rate=rate, worker_env=env, received=0, events=0,
                               ms_produce_to_read_committed=dict.fromkeys(("p50", "p99", "p99.9"), float("nan")))
                results["latency"].append(res)
                save()
        if ctx and "scale" in sections:
            step(f"scale-out on {n_scale:,} events")
            results["scale"] = _safe(lambda: bench_scale(ctx, simulate(n_scale, seed=5)))
            save()
        if ctx and "longstream" in sections:
            step(f"long stream: {args.long_events:,} events on one partition"
                 + (f", this tree and {args.long_baseline}" if args.long_baseline else ""))
            results["longstream"] = _safe(lambda: bench_longstream(
                ctx, args.long_events, args.long_window, args.long_baseline or None))
            save()
        if ctx and "stagecost" in sections:
            step(f"merchant stage cost: {args.stage_events:,} events, {args.stage_baseline or 'no baseline'} and "
                 "this tree, per-partition merchants and the stage")
            results["stagecost"] = _safe(lambda: bench_stage_cost(ctx, args.stage_events, args.stage_baseline or None))
            save()
        if ctx and "state" in sections and snap_engine is not None:
            step(f"worker start with a {len(snap_engine.cards):,}-card snapshot")
            results["state_worker"] = _safe(lambda: bench_state_worker_start(ctx, snap_engine))
            save()
    finally:
        if ctx is not None:
            for p in ctx.procs:
                p.stop(10)
            ctx.broker.close()
        snap_engine = None
    if args.profile:
        step("profile (py-spy) of the offline pipeline")
        results["profile"] = profile_offline(work, min(n, 100_000))
    if not (args.profile or args.profile_worker):
        shutil.rmtree(work, ignore_errors=True)
    save()
    step("done")
    print()
    print(table(results))
    print(f"\nJSON: {args.json}  ({results['seconds_total']:.0f} s; {os.cpu_count()} CPUs; broker, harness and "
          "workers share them)")
    if args.profile and "self_pct_top" in results["profile"]:
        print("\nprofile, offline pipeline, top self time (% of samples):")
        for fn, p in results["profile"]["self_pct_top"][:12]:
            print(f"  {p:5.1f}%  {fn}")
        print("top inclusive:")
        for fn, p in results["profile"]["inclusive_pct_top"][:20]:
            print(f"  {p:5.1f}%  {fn}")
    for gua, e in (results.get("e2e") or {}).items():
        prof = e.get("profile") if isinstance(e, dict) else None
        if prof:
            print(f"\nprofile, live worker ({gua}), {prof['all']['samples']} samples of the main thread's run():")
            for fn, p in prof["all"]["inclusive_pct_top"][:30]:
                print(f"  {p:5.1f}%  {fn}")


def _git_head() -> str:
    """The commit measured (others edit the package meanwhile: a dirty tree is said so)."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "stream_scorer")
        return head + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def _safe(fn: Any) -> dict[str, Any]:
    try:
        return fn()
    except Exception as exc:
        print(f"  FAILED: {exc}", flush=True)
        return {"error": str(exc)[-2000:]}


if __name__ == "__main__":
    main()
