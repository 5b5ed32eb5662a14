"""How well does the scorer rank fraud, against a textbook reference, on real and simulated data?

Prequential evaluation: every event is scored first, and its label is learned only once a label
delay of event time has passed, as chargebacks reach the live worker. On the SAME events of each
data set, in the same run:

1. the champion and the challenger of one :class:`stream_scorer.pipeline.Scorer` (features from
   :class:`stream_scorer.features.engine.FeatureEngine` built from ``FeatureSettings``);
2. a textbook reference written here: River's ``StandardScaler | LogisticRegression(SGD(0.01))``
   on the raw producer signals (ULB: V1..V28 and Amount) or on textbook features (simulated
   worlds and SynCCFD: card counts and mean amounts over 1/7/30 days; terminal counts and fraud
   shares over 1/7/30 days in windows that end one label delay before the event; amount; night;
   weekend), learning each label after the same delay (a heap of due labels by event time).

Data sets: ``ulb`` (the ULB credit-card set, delay 0 for comparison with River's
imbalanced-learning notebook: plain LR ROC AUC 0.891, undersampling + positive weight 0.968;
``--ulb-delay 1h`` adds a second run), ``long_tail`` (label delay 7 d), ``simulator`` (label
delay 3 d; 300,000 events span 28 days) and ``synccfd`` (SynCCFD, a third-party simulator derived
from the handbook's, 90 days, label delay 7 d as in the handbook), the last three with fraud
types. The scorer gets the producer signals of ULB (V1..V28) and SynCCFD (``bill_term_km``,
``bill_ship_km``) through ``FeatureSettings.signals``; on SynCCFD the reference has the handbook's
features only, as in the handbook (no distances). Events come from ``benchmarks/datasets.py``;
SynCCFD must have been generated first (``benchmarks/datasets.py fetch synccfd``).

Metrics over the test span (event time after the first ``--warmup`` share): ROC AUC, average
precision, card precision@100 (per UTC day, the 100 cards with the highest max score of the
day, the share of them with a fraud that day, averaged over ALL days of the span, as the
fraud-detection handbook does; days without fraud count 0 for every model) and, per fraud type,
AUC and AP over that type's frauds plus all genuine events. CPU seconds per event are measured
per model with ``time.process_time`` (the scorer's include validating the event).

    .venv/bin/python benchmarks/bench_quality.py                      # all four, default sizes
    .venv/bin/python benchmarks/bench_quality.py --quick              # a tiny run
    .venv/bin/python benchmarks/bench_quality.py --datasets long_tail --n 300000 \\
        --set model.learning_rate=0.05 --set features.risk_prior_weight=2 --label lr05

Results go to ``benchmarks/results/quality-<date>[-label].json``. This supersedes
``bench_imbalance.py`` for model-quality comparisons (that one compares class-imbalance options
on precomputed features with no label delay).
"""

from __future__ import annotations

import argparse
import heapq
import importlib.util
import itertools
import json
import math
import subprocess
import sys
import time
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError
from river import linear_model, optim, preprocessing

from stream_scorer.backtest import average_precision, roc_auc
from stream_scorer.events import Transaction
from stream_scorer.features.engine import FeatureEngine
from stream_scorer.features.settings import FeatureSettings
from stream_scorer.model.settings import ModelSettings, PendingSettings, ScorerSettings
from stream_scorer.pipeline import Scorer

HERE = Path(__file__).resolve().parent
DAY_S = 86_400.0
WINDOWS_D = (1, 7, 30)
ULB_SIGNALS = tuple(f"V{i}" for i in range(1, 29))
SYNCCFD_SIGNALS = ("bill_term_km", "bill_ship_km")
DATASETS = ("ulb", "long_tail", "simulator", "synccfd")
FILES = ("ulb", "synccfd")
"""Data sets read from a file in the cache: all rows unless a number is given."""
LABEL_DELAY_S = {"ulb": 0.0, "long_tail": 7 * DAY_S, "simulator": 3 * DAY_S, "synccfd": 7 * DAY_S}
SIGNALS = {"ulb": ULB_SIGNALS, "synccfd": SYNCCFD_SIGNALS}
"""Producer signals the scorer is given (``FeatureSettings.signals``), per data set."""
REFERENCE_ON_SIGNALS = ("ulb",)
"""Data sets where the reference learns from the raw signals (ULB has no cards or terminals);
elsewhere it has the handbook's features."""
DEFAULT_N = {"long_tail": 600_000, "simulator": 300_000}
QUICK_N = {"ulb": 20_000, "long_tail": 20_000, "simulator": 5_000, "synccfd": 20_000}
QUICK_DELAY_S = {"long_tail": 3_600.0, "simulator": 300.0, "synccfd": 6 * 3_600.0}
"""``--quick`` delays: its tiny streams span hours (20,000 SynCCFD rows: 3.4 days)."""
MODELS = ("champion", "challenger", "reference")


class BenchError(Exception):
    """A data set or a setting the benchmark cannot use; the message says why."""


# -- metrics ------------------------------------------------------------------------------------


def card_precision_at_k(
    day: np.ndarray, card: np.ndarray, y: np.ndarray, score: np.ndarray, k: int = 100
) -> tuple[float, int]:
    """Card precision@k averaged over days: (mean, number of days).

    Per day, each card counts once with its max score of the day and is a fraud card if it had
    at least one fraud that day; the top ``min(k, cards that day)`` cards are taken and the share
    of fraud cards among them is the day's precision. Every day counts, with or without fraud
    (the handbook's definition; a day without fraud is 0 for every model). Cards with equal
    scores keep their order by card index (first seen first), so a constant score gives an
    arbitrary, not a zero, precision.

    >>> d = np.array([0, 0, 0, 1]); c = np.array([1, 1, 2, 1])
    >>> card_precision_at_k(d, c, np.array([0, 1, 0, 0]), np.array([.9, .1, .5, .3]), k=1)
    (0.5, 2)
    """
    if day.size == 0:
        return float("nan"), 0
    order = np.lexsort((-score, card, day))  # by day, card, then highest score first
    d, c, s, f = day[order], card[order], score[order], y[order].astype(np.int8)
    first = np.r_[True, (d[1:] != d[:-1]) | (c[1:] != c[:-1])]
    starts = np.flatnonzero(first)
    g_day, g_score = d[starts], s[starts]
    g_fraud = np.maximum.reduceat(f, starts) > 0
    out = []
    for dd in np.unique(g_day):
        sel = g_day == dd
        top = np.argsort(-g_score[sel], kind="stable")[:k]
        out.append(float(g_fraud[sel][top].mean()))
    return float(np.mean(out)), len(out)


def per_type_metrics(
    y: np.ndarray, score: np.ndarray, types: np.ndarray, names: Sequence[str]
) -> dict[str, dict[str, float | int | None]]:
    """AUC and AP of each fraud type over (that type's frauds + all genuine events).

    ``types[i]`` is an index into ``names`` for a fraud of a known type, -1 otherwise.
    """
    out: dict[str, dict[str, float | int | None]] = {}
    genuine = y == 0
    for i, name in enumerate(names):
        mine = (types == i) & (y == 1)
        sel = genuine | mine
        out[name] = {
            "frauds": int(mine.sum()),
            "roc_auc": _num(roc_auc(y[sel], score[sel])),
            "average_precision": _num(average_precision(y[sel], score[sel])),
        }
    return out


def _num(v: float) -> float | None:
    return None if v is None or math.isnan(v) else round(float(v), 5)


# -- the textbook reference ---------------------------------------------------------------------


class Classifier(Protocol):
    def predict_proba_one(self, x: dict[str, float]) -> dict[Any, float]: ...
    def learn_one(self, x: dict[str, float], y: Any) -> Any: ...


def textbook_model() -> Any:
    """River's plain pipeline, as in its imbalanced-learning notebook."""
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.01))


class DelayedLearner:
    """Predict each event, then learn its label once ``delay_s`` of event time has passed.

    Labels wait in a heap by due time; :meth:`step` first learns every label due by the event's
    time (``due <= ts``), then predicts, then queues the event's own label.
    """

    def __init__(self, model: Classifier, delay_s: float) -> None:
        self.model, self.delay_s = model, delay_s
        self.due: list[tuple[float, int, dict[str, float], bool]] = []
        self.seq = 0
        self.learned = 0

    def step(self, x: dict[str, float], y: bool, ts: float) -> float:
        due, learn = self.due, self.model.learn_one
        while due and due[0][0] <= ts:
            _, _, xd, yd = heapq.heappop(due)
            learn(xd, yd)
            self.learned += 1
        p = float(self.model.predict_proba_one(x).get(True, 0.0))
        self.seq += 1
        heapq.heappush(due, (ts + self.delay_s, self.seq, x, y))
        return p


class _Window:
    """Count and sum over a sliding span of event time (values appended in time order)."""

    __slots__ = ("items", "n", "total")

    def __init__(self) -> None:
        self.items: deque[tuple[float, float]] = deque()
        self.n = 0
        self.total = 0.0

    def add(self, ts: float, v: float) -> None:
        self.items.append((ts, v))
        self.n += 1
        self.total += v

    def drop_before(self, cut: float) -> None:
        items = self.items
        while items and items[0][0] < cut:
            self.total -= items.popleft()[1]
            self.n -= 1


@dataclass
class _Terminal:
    unknown: deque[tuple[float, float]] = field(default_factory=deque)
    """Transactions whose labels are not known yet (ts >= now - delay)."""
    windows: tuple[_Window, ...] = field(default_factory=lambda: tuple(_Window() for _ in WINDOWS_D))


class TextbookFeatures:
    """The fraud-detection handbook's features, computed online with deques per entity.

    Card windows ``(t - w, t]`` include the event itself (count >= 1, its amount in the mean).
    Terminal windows are ``[t - D - w, t - D)``: only transactions whose labels are known by ``t``
    under a fixed delay ``D``; their count and fraud share (0 when empty). Events are assumed in
    event-time order (slightly late ones are counted as if on time).
    """

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.cards: dict[str, tuple[_Window, ...]] = {}
        self.terminals: dict[str, _Terminal] = {}

    def update(self, card: str, terminal: str, amount: float, ts: float, y: bool) -> dict[str, float]:
        x: dict[str, float] = {"amount": amount}
        cw = self.cards.get(card)
        if cw is None:
            cw = self.cards[card] = tuple(_Window() for _ in WINDOWS_D)
        for d, w in zip(WINDOWS_D, cw, strict=True):
            w.add(ts, amount)
            w.drop_before(ts - d * DAY_S + 1e-9)  # (t - w, t]
            x[f"card_{d}d_count"] = float(w.n)
            x[f"card_{d}d_mean_amount"] = w.total / w.n
        term = self.terminals.get(terminal)
        if term is None:
            term = self.terminals[terminal] = _Terminal()
        known_cut = ts - self.delay_s
        unknown = term.unknown
        while unknown and unknown[0][0] < known_cut:
            t_old, y_old = unknown.popleft()
            for w in term.windows:
                w.add(t_old, y_old)
        for d, w in zip(WINDOWS_D, term.windows, strict=True):
            w.drop_before(known_cut - d * DAY_S)
            x[f"terminal_{d}d_count"] = float(w.n)
            x[f"terminal_{d}d_fraud_share"] = w.total / w.n if w.n else 0.0
        unknown.append((ts, 1.0 if y else 0.0))
        hour = (ts % DAY_S) / 3_600.0
        x["night"] = 1.0 if hour < 6.0 else 0.0
        x["weekend"] = 1.0 if int(ts // DAY_S + 3) % 7 >= 5 else 0.0  # 1970-01-01 was a Thursday
        return x


# -- data sets ----------------------------------------------------------------------------------


def _datasets_module() -> ModuleType:
    """``benchmarks/datasets.py``, loaded by path (the benchmarks folder is not a package)."""
    name = "bench_datasets"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "datasets.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def events_of(name: str, n: int | None, seed: int) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(event dict, fraud type or None) of data set ``name``: ``n`` events (ULB, SynCCFD: at most
    ``n``, all when ``None``). SynCCFD is read from the cache, never generated here."""
    ds = _datasets_module()
    if name in FILES:
        if name == "ulb":
            rows: Iterator[tuple[dict[str, Any], str | None]] = ((e, None) for e in ds.ulb_events(ds.fetch_ulb()))
        else:
            rows = ds.synccfd_events(ds.fetch_synccfd(generate=False))
        return itertools.islice(rows, n) if n is not None else rows
    if name not in DATASETS:
        raise BenchError(f"unknown data set {name!r}: choose from {', '.join(DATASETS)}")
    assert n is not None
    return iter(ds.world_events(name, n, seed=seed))


# -- one run ------------------------------------------------------------------------------------


def feature_settings(
    overrides: dict[str, Any], signals: Sequence[str] = (), allow_no_signals: bool = False
) -> FeatureSettings:
    """``FeatureSettings(**overrides)``, with the producer signals when there are any.

    When FeatureSettings has no ``signals`` setting, a :class:`BenchError` says so, unless
    ``allow_no_signals``: then the scorer runs without them (on ULB the reference still has them).
    """
    kw = dict(overrides)
    if signals:
        kw["signals"] = tuple(signals)
    try:
        return FeatureSettings(**kw)
    except ValidationError as exc:
        if signals and any(err["loc"][:1] == ("signals",) for err in exc.errors()):
            if allow_no_signals:
                print(
                    f"warning: FeatureSettings has no `signals`: the scorer sees no {_names(signals)}",
                    file=sys.stderr,
                    flush=True,
                )
                return feature_settings(overrides)
            raise BenchError(
                f"FeatureSettings does not take `signals` (producer signals {_names(signals)}) in this "
                "checkout: this run needs it; run without it, with --allow-no-signals, or update the "
                "feature engine"
            ) from exc
        raise BenchError(f"bad features.* setting: {exc}") from exc


def _names(signals: Sequence[str]) -> str:
    """``V1..V28`` or ``a, b``: signal names short enough for a message."""
    return f"{signals[0]}..{signals[-1]}" if len(signals) > 3 else ", ".join(signals)


@dataclass
class Columns:
    ts: array[float] = field(default_factory=lambda: array("d"))
    card: array[int] = field(default_factory=lambda: array("q"))
    y: array[int] = field(default_factory=lambda: array("b"))
    kind: array[int] = field(default_factory=lambda: array("b"))
    scores: dict[str, array[float]] = field(default_factory=lambda: {m: array("d") for m in MODELS})


def run_dataset(
    name: str,
    events: Iterable[tuple[dict[str, Any], str | None]],
    delay_s: float,
    feature_overrides: dict[str, Any],
    model_overrides: dict[str, Any],
    warmup: float,
    k: int = 100,
    allow_no_signals: bool = False,
) -> dict[str, Any]:
    """Score ``events`` with the scorer and the reference; the metrics over the test span.

    ``name`` is the data set's, or a second run's label that starts with it (``ulb-delay-1h``).
    """
    source = name.partition("-")[0]
    signals = SIGNALS.get(source, ())
    raw_reference = source in REFERENCE_ON_SIGNALS
    fs = feature_settings(feature_overrides, signals, allow_no_signals)
    try:
        model = ModelSettings(**model_overrides)
    except ValidationError as exc:
        raise BenchError(f"bad model.* setting: {exc}") from exc
    settings = ScorerSettings(
        model=model,
        label_delay_s=delay_s,
        # No label may be lost to the store's bound: one partition holds the whole stream here.
        pending=PendingSettings(max_entries=10_000_000, max_age_s=delay_s + 14 * DAY_S),
        with_features=False,
    )
    scorer = Scorer(settings, feature_engine_factory=lambda: FeatureEngine(fs))
    reference = DelayedLearner(textbook_model(), delay_s)
    textbook = TextbookFeatures(delay_s)
    cols = Columns()
    cards: dict[str, int] = {}
    kinds: dict[str, int] = {}
    cpu_scorer = cpu_ref = 0.0
    clock = time.process_time
    sc, sh, sr = cols.scores["champion"], cols.scores["challenger"], cols.scores["reference"]
    wall = time.perf_counter()
    rejected: dict[str, int] = {}
    for event, kind in events:
        t0 = clock()
        try:
            txn = Transaction.model_validate(event)
        except ValidationError as exc:  # the worker would dead-letter it: no model sees it
            where = ".".join(str(p) for p in exc.errors()[0]["loc"])
            rejected[where] = rejected.get(where, 0) + 1
            continue
        rec = scorer.score(txn)
        t1 = clock()
        ts, y = txn.event_ts, bool(txn.is_fraud)
        if raw_reference:
            xr = {s: float(event["signals"][s]) for s in signals}
            xr["Amount"] = txn.amount
        else:
            xr = textbook.update(txn.card_id, txn.merchant_id, txn.amount, ts, y)
        sr.append(reference.step(xr, y, ts))
        cpu_ref += clock() - t1
        cpu_scorer += t1 - t0
        sc.append(rec["score"])
        ch = rec["challenger_score"]
        sh.append(ch if ch is not None else math.nan)
        cols.ts.append(ts)
        cols.card.append(cards.setdefault(txn.card_id, len(cards)))
        cols.y.append(1 if y else 0)
        cols.kind.append(kinds.setdefault(kind, len(kinds)) if kind is not None and y else -1)
    wall = time.perf_counter() - wall
    n = len(cols.ts)
    if n == 0:
        raise BenchError(f"{name}: no event passed the contract (rejected: {rejected})")
    if reference.learned < 0.5 * n:
        span_d = (cols.ts[-1] - cols.ts[0]) / DAY_S
        print(
            f"{name}: warning: only {reference.learned:,} of {n:,} labels were learned: the "
            f"stream spans {span_d:.2f} days of event time, the label delay is "
            f"{delay_s / DAY_S:g} days",
            file=sys.stderr,
            flush=True,
        )
    out = measure(cols, sorted(kinds, key=kinds.__getitem__), warmup, k)
    out.update(
        dataset=name,
        label_delay_s=delay_s,
        events_total=n,
        frauds_total=int(sum(cols.y)),
        rejected_by_field=rejected,
        wall_seconds=round(wall, 1),
        cpu_us_per_event={
            "scorer": round(1e6 * cpu_scorer / n, 1),
            "reference": round(1e6 * cpu_ref / n, 1),
        },
        scorer_counters=scorer.counters(),
        reference_learned=reference.learned,
        feature_settings=fs.model_dump(mode="json"),
        scorer_settings=settings.model_dump(mode="json"),
    )
    return out


def measure(cols: Columns, kind_names: Sequence[str], warmup: float, k: int) -> dict[str, Any]:
    """Metrics of every model over events after the first ``warmup`` share of event time."""
    ts = np.frombuffer(cols.ts, dtype=float)
    cut = ts.min() + warmup * (ts.max() - ts.min())
    test = ts >= cut
    y = np.frombuffer(cols.y, dtype=np.int8)[test]
    card = np.frombuffer(cols.card, dtype=np.int64)[test]
    kind = np.frombuffer(cols.kind, dtype=np.int8)[test]
    day = np.floor(ts[test] / DAY_S).astype(np.int64)
    models: dict[str, Any] = {}
    for m in MODELS:
        s = np.frombuffer(cols.scores[m], dtype=float)[test]
        if np.isnan(s).all():
            continue
        cp, _days = card_precision_at_k(day, card, y, s, k)
        models[m] = {
            "roc_auc": _num(roc_auc(y, s)),
            "average_precision": _num(average_precision(y, s)),
            f"card_precision_at_{k}": _num(cp),
            "per_type": per_type_metrics(y, s, kind, kind_names),
        }
    return {
        "test_from": datetime.fromtimestamp(cut, UTC).isoformat(),
        "test_to": datetime.fromtimestamp(ts.max(), UTC).isoformat(),
        "test_events": int(test.sum()),
        "test_frauds": int(y.sum()),
        "test_days": len(np.unique(day)),
        "test_days_with_fraud": len(np.unique(day[y == 1])),
        "models": models,
    }


# -- output -------------------------------------------------------------------------------------


def _f(v: Any) -> str:
    return "   -  " if v is None else f"{v:6.3f}"


def table(result: dict[str, Any], k: int = 100) -> str:
    """Rows champion / challenger / reference; AUC, AP, CP@k, then AUC/AP per fraud type."""
    models = result["models"]
    types = list(next(iter(models.values()))["per_type"]) if models else []
    head = f"{'model':<11} {'AUC':>6} {'AP':>6} {'CP@' + str(k):>6}" + "".join(f" | {t[:20]:>20} AUC/AP" for t in types)
    lines = [
        f"{result['dataset']}: {result['test_events']:,} test events, {result['test_frauds']:,} "
        f"frauds ({result['events_total']:,} / {result['frauds_total']:,} in all), label delay "
        f"{result['label_delay_s'] / 3600:g} h, {result['test_days']} test days "
        f"({sum(result['rejected_by_field'].values())} rejected by the contract), "
        f"({result['test_days_with_fraud']} with fraud); CPU us/event scorer "
        f"{result['cpu_us_per_event']['scorer']}, reference {result['cpu_us_per_event']['reference']}",
        head,
    ]
    for m, r in models.items():
        row = f"{m:<11} {_f(r['roc_auc'])} {_f(r['average_precision'])} "
        row += _f(r[f"card_precision_at_{k}"])
        for t in types:
            pt = r["per_type"][t]
            row += f" | {pt['frauds']:>7} {_f(pt['roc_auc'])} {_f(pt['average_precision'])}"
        lines.append(row)
    return "\n".join(lines)


def parse_sets(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``features.key=value`` and ``model.key=value`` overrides (values read as JSON if they can)."""
    feats: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        prefix, dot, name = key.partition(".")
        if not sep or not dot or prefix not in ("features", "model"):
            raise BenchError(f"--set {item!r}: expected features.KEY=VALUE or model.KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        (feats if prefix == "features" else model)[name] = value
    return feats, model


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument(
        "--n", type=int, default=None, help="events per simulated world (synccfd: at most this many, default all)"
    )
    ap.add_argument("--ulb-n", type=int, default=None, help="at most this many ULB rows")
    ap.add_argument("--ulb-delay", default=None, help="a second ULB run with this delay, e.g. 1h")
    ap.add_argument(
        "--delay",
        action="append",
        default=[],
        metavar="NAME=DURATION",
        help="another label delay for a data set, e.g. simulator=1h (--quick: 1h long_tail, 5m simulator, 6h synccfd)",
    )
    ap.add_argument(
        "--allow-no-signals",
        action="store_true",
        help="run ULB and SynCCFD even if FeatureSettings cannot take signals (the scorer then has none)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=float, default=0.2, help="share of event time not measured")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", default=None, help="suffix of the results file")
    ap.add_argument("--quick", action="store_true", help="a tiny run (seconds)")
    ap.add_argument("--results-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    started = datetime.now(UTC)
    wall = time.perf_counter()
    try:
        feats, model = parse_sets(args.sets)
    except BenchError as exc:
        ap.error(str(exc))
    from stream_scorer.backtest import parse_duration

    delays = dict(LABEL_DELAY_S)
    if args.quick:
        delays.update(QUICK_DELAY_S)  # tiny worlds span minutes or hours
    for item in args.delay:
        key, _, dur = item.partition("=")
        if key not in delays:
            ap.error(f"--delay {item!r}: expected NAME=DURATION with NAME one of {DATASETS}")
        delays[key] = parse_duration(dur)
    runs: list[tuple[str, str, float]] = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if name not in DATASETS:
            ap.error(f"unknown data set {name!r}: choose from {', '.join(DATASETS)}")
        runs.append((name, name, delays[name]))
        if name == "ulb" and args.ulb_delay:
            runs.append((f"ulb-delay-{args.ulb_delay}", "ulb", parse_duration(args.ulb_delay)))
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for label, source, delay in runs:
        if args.quick:
            n: int | None = QUICK_N[source]
        elif source == "ulb":
            n = args.ulb_n
        else:
            n = args.n or DEFAULT_N.get(source)
        try:
            events = events_of(source, n, args.seed)
            r = run_dataset(
                label,
                events,
                delay,
                feats,
                model,
                args.warmup,
                allow_no_signals=args.allow_no_signals,
            )
        except (BenchError, _datasets_module().DatasetError) as exc:
            print(f"{label}: skipped: {exc}", file=sys.stderr, flush=True)
            skipped[label] = str(exc)
            continue
        results[label] = r
        print(table(r) + f"\n({r['wall_seconds']} s)\n", flush=True)
    seconds = time.perf_counter() - wall
    doc = {
        "benchmark": "quality",
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "seconds": round(seconds, 1),
        "git_commit": _git_commit(),
        "command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "overrides": {"features": feats, "model": model},
        "warmup": args.warmup,
        "card_precision_definition": "mean over all test days (UTC) of the share of fraud cards "
        "among the day's top-100 cards by max score (fewer if fewer cards)",
        "datasets": results,
        "skipped": skipped,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.label}" if args.label else ""
    path = args.results_dir / f"quality-{started:%Y-%m-%d}{suffix}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"total {seconds:.0f} s; results in {path}")
    doc["path"] = str(path)
    return doc


if __name__ == "__main__":
    main()
