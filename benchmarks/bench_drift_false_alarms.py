"""How often does the evaluator cry wolf, and how fast does it see a real drift?

Two sources of Score records, both driven through the evaluator's own pipeline
(:class:`stream_scorer.evaluation.monitor.Monitor`, polled every ``--poll-every`` scores as the
evaluator does once per batch):

- ``synthetic``: drawn scores (:func:`stream_scorer.evaluation.synthetic.synthetic_scores`);
- ``simulator``: the simulator's transactions scored by the production path
  (:class:`stream_scorer.pipeline.Scorer`: features, champion and challenger, learning from the
  inline labels), so the scores and features move as a live model's do.

Part 1 counts the alerts fired on stationary streams (false alarms). Part 2 injects drifts at a
known index and reports the delay, in scores, until each expected alert fires. Part 3 counts what
River's KSWIN (default settings) would have flagged on the same stationary amounts, for contrast.

    .venv/bin/python benchmarks/bench_drift_false_alarms.py --count 100000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from stream_scorer.evaluation.monitor import Monitor
from stream_scorer.evaluation.settings import EvaluationSettings
from stream_scorer.evaluation.synthetic import synthetic_scores

REVIEW, DECLINE = 0.5, 0.8


def simulator_scores(n: int, seed: int, drift_at: int | None = None) -> Iterator[dict[str, Any]]:
    """Simulated transactions scored (and learned from) by the production Scorer."""
    from stream_scorer.events import Transaction
    from stream_scorer.pipeline import Scorer
    from stream_scorer.simulate import SimConfig, Simulator

    scorer = Scorer()
    sim = Simulator(SimConfig(drift_at=drift_at), seed=seed)
    validate = Transaction.model_validate
    for event in sim.events(n):
        yield scorer.score(validate(event))


def run(
    scores: Iterable[dict[str, Any]], settings: EvaluationSettings, poll_every: int
) -> tuple[list[tuple[int, dict[str, Any]]], Monitor, int]:
    """Feed ``scores`` to a Monitor; return every (index, alert), the monitor and the count."""
    m = Monitor(settings, REVIEW, DECLINE)
    alerts: list[tuple[int, dict[str, Any]]] = []
    i = -1
    for i, s in enumerate(scores):
        m.update_score(s)
        if i % poll_every == poll_every - 1:
            alerts.extend((i, a) for a in m.poll())
    alerts.extend((i, a) for a in m.poll())
    return alerts, m, i + 1


def _key(a: dict[str, Any]) -> str:
    return f"{a['detector']}:{a['subject']}"


def false_alarms(
    source: str, count: int, seeds: list[int], settings: EvaluationSettings, poll_every: int
) -> None:
    total_events = total_alarms = 0
    by_key: Counter[str] = Counter()
    t0 = time.perf_counter()
    for seed in seeds:
        stream = (
            synthetic_scores(count, seed=seed)
            if source == "synthetic"
            else simulator_scores(count, seed)
        )
        alerts, m, n = run(stream, settings, poll_every)
        firing = [(i, a) for i, a in alerts if a["status"] == "firing"]
        total_events += n
        total_alarms += len(firing)
        by_key.update(_key(a) for _, a in firing)
        n_det = len(m.checks())
        print(
            f"  {source:9s} seed {seed}: {n} scores, {n_det} detectors, {len(firing)} firing alerts"
            + (f" {[(i, _key(a), round(a['statistic'], 4)) for i, a in firing]}" if firing else "")
        )
    rate = total_alarms / total_events * 100_000
    print(
        f"  {source}: {total_alarms} false alarms in {total_events} stationary scores"
        f" = {rate:.2f} per 100k scores ({time.perf_counter() - t0:.0f}s) {dict(by_key)}"
    )


SCENARIOS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "amount x2 (data drift)": (dict(amount_shift=(None, None)), ["psi:amount", "psi:log_amount"]),
    "unlearned fraud +2% (performance, label rate)": (
        dict(new_fraud=(None, None)),
        ["adwin:log_loss", "binomial_z:fraud_rate"],
    ),
    "unlearned fraud +1% (performance)": (
        dict(new_fraud=(None, None), new_fraud_rate=0.01),
        ["adwin:log_loss"],
    ),
    "broken model, uniform scores (prediction)": (dict(broken_model=(None, None)), ["psi:score"]),
    "challenger +0.3 (disagreement)": (
        dict(challenger_offset=(None, None)),
        ["mean_abs_diff:champion_vs_challenger"],
    ),
}


def delays(
    count: int, seeds: list[int], settings: EvaluationSettings, poll_every: int, simulator: bool
) -> None:
    at = count // 2
    for name, (kw, expected) in SCENARIOS.items():
        found: dict[str, list[int | None]] = {k: [] for k in expected}
        others: Counter[str] = Counter()
        for seed in seeds:
            kw2 = {k: ((at, None) if v == (None, None) else v) for k, v in kw.items()}
            alerts, _, _ = run(synthetic_scores(count, seed=seed, **kw2), settings, poll_every)
            first: dict[str, int] = {}
            for i, a in alerts:
                if a["status"] == "firing":
                    if i < at:
                        others[f"early {_key(a)}"] += 1
                    first.setdefault(_key(a), i)
            for k in expected:
                found[k].append(first[k] - at if k in first else None)
            others.update(k for k in first if k not in expected and first[k] >= at)
        print(
            f"  synthetic, {name}, drift at {at}: "
            + ", ".join(f"{k} after {v}" for k, v in found.items())
            + (f"; also {dict(others)}" if others else "")
        )
    if simulator:
        for seed in seeds:
            alerts, _, _ = run(simulator_scores(count, seed, drift_at=at), settings, poll_every)
            firing = [
                (i - at, _key(a), round(a["statistic"], 4))
                for i, a in alerts
                if a["status"] == "firing"
            ]
            early = [f for f in firing if f[0] < 0]
            first: dict[str, int] = {}
            for d, k, _ in firing:
                if d >= 0:
                    first.setdefault(k, d)
            print(
                f"  simulator seed {seed}, drift_at {at} (amounts x1.8, card-testing fraud):"
                f" first firing after {first}" + (f"; before the drift: {early}" if early else "")
            )


def kswin_contrast(count: int, seeds: list[int]) -> None:
    from river import drift

    for seed in seeds:
        d = drift.KSWIN(seed=seed)
        hits = 0
        for s in synthetic_scores(count, seed=seed):
            d.update(s["amount"])
            hits += d.drift_detected
        print(
            f"  River KSWIN (alpha=0.005, window 100) on stationary amounts, seed {seed}:"
            f" {hits} detections in {count}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--poll-every",
        type=int,
        default=100,
        help="scores per batch (alerts are polled once per batch)",
    )
    ap.add_argument(
        "--sources",
        nargs="+",
        default=["synthetic", "simulator"],
        choices=["synthetic", "simulator"],
    )
    ap.add_argument("--skip-delays", action="store_true")
    ap.add_argument("--skip-kswin", action="store_true")
    args = ap.parse_args()
    settings = EvaluationSettings()
    print("Part 1: false alarms on stationary streams (default EvaluationSettings)")
    for source in args.sources:
        false_alarms(source, args.count, args.seeds, settings, args.poll_every)
    if not args.skip_delays:
        print("Part 2: detection delay, in scores after the injected drift")
        delays(args.count, args.seeds, settings, args.poll_every, "simulator" in args.sources)
    if not args.skip_kswin:
        print("Part 3: for contrast")
        kswin_contrast(args.count, args.seeds[:1])


if __name__ == "__main__":
    main()
