"""Merchant features at scale: does the live path give the backtest's quality, however many
partitions and workers? And what does the merchant stage cost per event, and how stale is it?

On a long-tail world (tens of thousands of terminals, most seen about once a day; labels inline,
learned at once), in one run, on one own broker:

1. ``stream-scorer backtest`` of the file (one partition, no staleness): the reference;
2. the live path, ``stream-scorer backfill FILE --wait`` (at full speed, or ``--rate R``) into W
   ``stream-scorer run`` workers over P partitions, for each (mode, W, P[, R]) asked: ``partition``
   (each worker its partitions' view of a merchant: the old way) and ``stage`` (with one
   ``stream-scorer merchants`` process);

and prints, for the same transactions (all but the first ``--warmup`` share), ROC AUC and
average precision beside the backtest's, their ratio, the workers' merchant-table staleness
(from their ``/metrics`` histogram), wall seconds, and CPU seconds per event of the workers and
the stage (each process's own, from /proc).

    .venv/bin/python benchmarks/bench_merchant_stage.py                   # ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_merchant_stage.py --events 60000 --runs stage:1:6
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
for _p in (str(ROOT), str(BENCH)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import orjson  # noqa: E402
from run import CLI, Broker, Ctx, _worker_env, cpu_seconds  # noqa: E402

from stream_scorer.evaluation.metrics import average_precision_exact, roc_auc_exact  # noqa: E402
from stream_scorer.kafka.launcher import free_port  # noqa: E402


def write_world(path: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` events of the long-tail world, moved so that the last one happens an hour ago."""
    from stream_scorer.simulate import shifted_to
    from stream_scorer.simulate_longtail import LongTailSimulator

    events = LongTailSimulator(seed=seed).take(n)
    span = datetime.fromisoformat(events[-1]["event_time"]) - datetime.fromisoformat(events[0]["event_time"])
    events = shifted_to(events, datetime.now(UTC) - timedelta(hours=1) - span)
    with path.open("wb") as f:
        for e in events:
            f.write(orjson.dumps(e) + b"\n")
    return events


def evaluate(scores: dict[str, float], events: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    tail = events[int(len(events) * warmup):]
    pairs = [(scores[e["transaction_id"]], bool(e["is_fraud"])) for e in tail if e["transaction_id"] in scores]
    return {
        "scored": len(pairs),
        "of": len(tail),
        "frauds": sum(y for _, y in pairs),
        "auc": roc_auc_exact(pairs),
        "ap": average_precision_exact(pairs),
    }


def backtest(work: Path, data: Path) -> tuple[dict[str, float], float, float]:
    import resource
    import subprocess

    out = work / "backtest-scores.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_SCORER_")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([CLI, "backtest", str(data), "--scores-out", str(out), "--log-level", "WARNING"], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    scores = {}
    with out.open("rb") as f:
        for line in f:
            r = orjson.loads(line)
            scores[r["transaction_id"]] = r["score"]
    return scores, seconds, cpu


def histogram_quantiles(text: str, name: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, Any]:
    """Quantiles (bucket upper bounds) of a Prometheus histogram in an exposition ``text``."""
    buckets = []
    for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)$', text, re.M):
        buckets.append((float(m.group(1)), float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return {"samples": 0}
    total = buckets[-1][1]
    out: dict[str, Any] = {"samples": int(total)}
    for q in qs:
        out[f"p{round(q * 100)}_le_s"] = next(le for le, c in buckets if c >= q * total)
    return out


def live(
    ctx: Ctx, data: Path, n: int, mode: str, workers: int, partitions: int, ctx_env: dict[str, str],
    pace: float | None = None,
) -> dict[str, Any]:
    """Backfill ``data`` into ``workers`` workers over ``partitions`` partitions; scores by id."""
    import subprocess

    tag = ctx.uid()
    topic, group, scores_topic = f"tx-{tag}", f"g-{tag}", f"scores-{tag}"
    ctx.broker.create({topic: partitions, f"{topic}.labels": partitions})
    ports = [free_port() for _ in range(workers)]
    base = dict(STREAM_SCORER_MERCHANT_FEATURES=mode, STREAM_SCORER_LOG_LEVEL="WARNING", **ctx_env)
    procs = []
    stage = None
    if mode == "stage":
        # The stage's topics get the same partitions as the input (created here, before anyone
        # can create them with the default count).
        env = _env(ctx, topic, group, tag, partitions, "stage", **base,
                   STREAM_SCORER_METRICS_PORT=str(free_port()))
        ctx.broker.create({f"{group}.by-merchant": partitions})
        stage = ctx.spawn(f"stage-{tag}", [CLI, "merchants"], env)
    for i in range(workers):
        env = _env(ctx, topic, group, tag, partitions, f"w{i}-{tag}", **base,
                   STREAM_SCORER_METRICS_PORT=str(ports[i]))
        procs.append(ctx.spawn(f"w{i}-{tag}", [CLI, "run"], env))
    time.sleep(3.0)  # the workers join the group before the backfill starts
    env = _env(ctx, topic, group, tag, partitions, f"backfill-{tag}")
    t0 = time.perf_counter()
    rate = ["--rate", str(pace)] if pace else []
    subprocess.run([CLI, "backfill", str(data), "--wait", "--timeout", "3600", *rate], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    metrics = [urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=10).read().decode() for p in ports]
    cpu_workers = sum(cpu_seconds(p.popen.pid) for p in procs)
    cpu_stage = cpu_seconds(stage.popen.pid) if stage is not None else 0.0
    out: dict[str, Any] = {
        "mode": mode, "workers": workers, "partitions": partitions, "seconds": seconds,
        "events_per_s": n / seconds, "cpu_us_per_event_workers": cpu_workers / n * 1e6,
        "cpu_us_per_event_stage": cpu_stage / n * 1e6,
    }
    if mode == "stage":
        merged = "\n".join(metrics)
        out["staleness"] = _merged_quantiles(metrics)
        out["table_merchants"] = [float(m.group(1)) for m in
                                  re.finditer(r"^stream_scorer_merchant_table_merchants ([0-9.e+]+)$", merged, re.M)]
    for p in procs:
        p.stop()
    if stage is not None:
        stage.stop()
    out["scores"] = _read_scores(ctx, scores_topic, n)
    return out


def _merged_quantiles(texts: list[str]) -> dict[str, Any]:
    name = "stream_scorer_merchant_table_staleness_seconds"
    sums: dict[float, float] = {}
    for text in texts:
        for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)$', text, re.M):
            sums[float(m.group(1))] = sums.get(float(m.group(1)), 0.0) + float(m.group(2))
    merged = "\n".join(f'{name}_bucket{{le="{le}"}} {c}' for le, c in sorted(sums.items()))
    return histogram_quantiles(merged, name)


def _env(ctx: Ctx, topic: str, group: str, tag: str, partitions: int, name: str, **more: str) -> dict[str, str]:
    """A worker's, stage's or backfill's environment: ``run.py``'s, on ``partitions`` partitions."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_SCORER_") or "KAFKA_" in k}
    env.update(_worker_env(ctx, name, topic, group, tag))
    env.update(STREAM_SCORER_TOPICS__PARTITIONS=str(partitions), STREAM_SCORER_METRICS_PORT="0")
    env.update(more)
    return env


def _read_scores(ctx: Ctx, topic: str, n: int) -> dict[str, float]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": ctx.broker.bootstrap, "group.id": f"read-{ctx.uid()}",
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed", "log_level": 0})
    c.subscribe([topic])
    out: dict[str, float] = {}
    deadline = time.monotonic() + 300
    try:
        while len(out) < n and time.monotonic() < deadline:
            for m in c.consume(5000, 1.0):
                if m.error() is None:
                    r = orjson.loads(m.value())
                    out[r["transaction_id"]] = r["score"]
    finally:
        c.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=150_000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=0.2, help="share of the first events left out of the metrics")
    ap.add_argument("--runs", default="partition:1:6,stage:1:6,stage:3:12",
                    help="comma list of mode:workers:partitions[:rate, the backfill's --rate in events a second]")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="more environment for the workers and the stage (repeatable)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-merchants-"))
    data = work / "longtail.jsonl"
    events = write_world(data, args.events, args.seed)
    res: dict[str, Any] = {"events": len(events), "seed": args.seed, "warmup": args.warmup, "runs": []}
    scores, seconds, cpu = backtest(work, data)
    res["backtest"] = {**evaluate(scores, events, args.warmup), "seconds": seconds,
                       "cpu_us_per_event": cpu / len(events) * 1e6}
    print(_line("backtest", res["backtest"], res["backtest"]), flush=True)
    broker = Broker()
    ctx = Ctx(broker, work, quick=False)
    try:
        for spec in args.runs.split(","):
            mode, w, p, *pace = spec.split(":")
            run = live(ctx, data, len(events), mode, int(w), int(p), dict(kv.split("=", 1) for kv in args.env),
                       float(pace[0]) if pace else None)
            if pace:
                run["pace"] = float(pace[0])
            run.update(evaluate(run.pop("scores"), events, args.warmup))
            res["runs"].append(run)
            print(_line(f"{mode} {w}w/{p}p" + (f" @{pace[0]}/s" if pace else ""), run, res["backtest"]), flush=True)
    finally:
        for proc in ctx.procs:
            proc.stop(10)
        broker.close()
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


def _line(name: str, r: dict[str, Any], ref: dict[str, Any]) -> str:
    ratio = r["ap"] / ref["ap"] if r.get("ap") and ref.get("ap") else float("nan")
    extra = ""
    if "staleness" in r:
        st = r["staleness"]
        extra = f" staleness p50<={st.get('p50_le_s')}s p95<={st.get('p95_le_s')}s p99<={st.get('p99_le_s')}s"
    if "cpu_us_per_event_workers" in r:
        extra += (f" cpu/event workers {r['cpu_us_per_event_workers']:.0f}us stage {r['cpu_us_per_event_stage']:.0f}us"
                  f" {r['events_per_s']:.0f} ev/s")
    return (f"{name:>16}: scored {r['scored']}/{r['of']} AUC {r['auc']:.4f} AP {r['ap']:.4f} "
            f"(x{ratio:.3f} of backtest){extra}")


if __name__ == "__main__":
    main()
