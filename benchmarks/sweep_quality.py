"""Sweep the champion's model settings on one feature stream: which defaults rank fraud best?

``bench_quality.py`` runs one configuration (champion, challenger, reference) per pass. Choosing a
learning rate or an imbalance setting that way costs a whole pass per value. Here the feature
engine runs once per data set and feeds many champions at once, each a
:class:`~stream_scorer.model.logistic.OnlineLogit` with its own :class:`ModelSettings`, all
predicting every event and learning its label after the same label delay (prequential, as in
``bench_quality.py``; the engine observes the label at the same moment). The metrics are
``bench_quality.measure``'s: AUC, AP, card precision@100 and, per fraud type, AUC/AP.

    .venv/bin/python benchmarks/sweep_quality.py --datasets ulb,long_tail \\
        --variant lr01:learning_rate=0.01 --variant w10:imbalance=weight,weight_cap=10

A variant is ``NAME:key=value,key=value`` (model settings; values read as JSON when they can).
``--set features.KEY=VALUE`` changes the feature engine for every variant of the run.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_quality as bq  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from stream_scorer.backtest import parse_duration  # noqa: E402
from stream_scorer.events import Transaction  # noqa: E402
from stream_scorer.features.engine import FeatureEngine  # noqa: E402
from stream_scorer.model.logistic import OnlineLogit  # noqa: E402
from stream_scorer.model.settings import ModelSettings  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"w10:imbalance=weight,weight_cap=10"`` -> ``("w10", {...})``."""
    name, _, body = text.partition(":")
    kw: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise bq.BenchError(f"--variant {text!r}: expected NAME:key=value,...")
        try:
            kw[key] = json.loads(raw)
        except json.JSONDecodeError:
            kw[key] = raw
    return name, kw


def sweep(
    name: str,
    events: Any,
    delay_s: float,
    feature_overrides: dict[str, Any],
    variants: list[tuple[str, dict[str, Any]]],
    warmup: float,
) -> dict[str, Any]:
    """Every variant on the same features of ``events``; metrics per variant."""
    signals = bq.SIGNALS.get(name.split("-")[0], ())
    fs = bq.feature_settings(feature_overrides, signals)
    engine = FeatureEngine(fs)
    try:
        models = [(v, OnlineLogit(ModelSettings(**kw))) for v, kw in variants]
    except ValidationError as exc:
        raise bq.BenchError(f"bad model setting: {exc}") from exc
    label_key = getattr(engine, "label_key", None)
    cols = bq.Columns()
    cols.scores = {v: array("d") for v, _ in variants}
    cards: dict[str, int] = {}
    kinds: dict[str, int] = {}
    due: list[tuple[float, int, dict[str, float], bool, str, float]] = []
    seq = 0
    wall = time.perf_counter()
    for event, kind in events:
        try:
            txn = Transaction.model_validate(event)
        except ValidationError:
            continue
        ts, y = txn.event_ts, bool(txn.is_fraud)
        while due and due[0][0] <= ts:
            t_label, _, xd, yd, key, t_event = heapq.heappop(due)
            for _, m in models:
                m.learn(xd, yd)
            engine.observe_label(key, yd, t_event, t_label)
        x = engine.update(txn)
        for v, m in models:
            cols.scores[v].append(m.predict_proba(x))
        seq += 1
        key = label_key(txn) if label_key is not None else txn.merchant_id
        heapq.heappush(due, (ts + delay_s, seq, x, y, key, ts))
        cols.ts.append(ts)
        cols.card.append(cards.setdefault(txn.card_id, len(cards)))
        cols.y.append(1 if y else 0)
        cols.kind.append(kinds.setdefault(kind, len(kinds)) if kind is not None and y else -1)
    saved = bq.MODELS
    bq.MODELS = tuple(v for v, _ in variants)  # measure() walks the models it is given
    try:
        out = bq.measure(cols, sorted(kinds, key=kinds.__getitem__), warmup, 100)
    finally:
        bq.MODELS = saved
    out.update(dataset=name, label_delay_s=delay_s, events_total=len(cols.ts),
               frauds_total=int(sum(cols.y)), rejected_by_field={},
               wall_seconds=round(time.perf_counter() - wall, 1),
               cpu_us_per_event={"scorer": 0.0, "reference": 0.0},
               feature_settings=fs.model_dump(mode="json"), variants=dict(variants))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="ulb,long_tail")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=float, default=0.2)
    ap.add_argument("--delay", action="append", default=[], metavar="NAME=DURATION")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="features.KEY=VALUE")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:key=value,...")
    ap.add_argument("--label", default="")
    ap.add_argument("--results-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    feats, model = bq.parse_sets(args.sets)
    if model:
        ap.error("model settings go in --variant")
    variants = [("default", {})] + [parse_variant(v) for v in args.variant]
    delays = dict(bq.LABEL_DELAY_S)
    for item in args.delay:
        key, _, dur = item.partition("=")
        delays[key] = parse_duration(dur)
    started = datetime.now(UTC)
    results = {}
    for name in filter(None, (d.strip() for d in args.datasets.split(","))):
        n = None if name == "ulb" else (args.n or bq.DEFAULT_N.get(name))
        r = sweep(name, bq.events_of(name, n, args.seed), delays[name], feats, variants, args.warmup)
        results[name] = r
        print(bq.table(r) + f"\n({r['wall_seconds']} s)\n", flush=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"sweep-{started:%Y-%m-%d}{'-' + args.label if args.label else ''}.json"
    doc = {"benchmark": "sweep", "started": started.isoformat(), "command": sys.argv,
           "features": feats, "datasets": results}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results in {path}")
    return doc


if __name__ == "__main__":
    main()
