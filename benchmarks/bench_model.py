"""How much does the model work cost per event: predict then learn, champion and challenger?

Four measurements on simulated transactions and their features (the real feature engine), each
the best of ``--repeats`` runs over ``--events`` events with fresh models, in microseconds per
event:

1. ``river``: River's own pipeline (StandardScaler + LogisticRegression), ``predict_proba_one``
   then ``learn_one``: the reference the champion must stay equal to;
2. ``online_logit``: the champion alone, ``score`` (probability and reason codes) then ``learn``;
3. ``scorer_model``: :meth:`Scorer.score` with champion and challenger and an inline label, on
   features replayed from a list: the model and the score record, without the feature engine;
4. ``scorer_full``: the same with the real feature engine computing the features.

    .venv/bin/python benchmarks/bench_model.py
    .venv/bin/python benchmarks/bench_model.py --events 5000 --repeats 1  # quick
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from stream_scorer.events import Transaction
from stream_scorer.features.engine import FeatureEngine
from stream_scorer.model.logistic import OnlineLogit, river_pipeline
from stream_scorer.model.settings import ModelSettings, ScorerSettings
from stream_scorer.pipeline import Scorer
from stream_scorer.simulate import SimConfig, Simulator


class Replay:
    """A feature engine that hands back features computed beforehand, in order."""

    names = FeatureEngine.names

    def __init__(self, rows: list[dict[str, float]]) -> None:
        self._next = iter(rows).__next__

    def update(self, txn: Transaction) -> dict[str, float]:
        return self._next()


def inputs(n: int, seed: int) -> tuple[list[Transaction], list[dict[str, float]], list[bool]]:
    """``n`` simulated transactions, the features the engine gives each, and their labels."""
    sim = Simulator(SimConfig(n_cards=20_000, n_merchants=2_000), seed=seed)
    txns = [Transaction.model_validate(e) for e in sim.events(n)]
    eng = FeatureEngine()
    return txns, [eng.update(t) for t in txns], [bool(t.is_fraud) for t in txns]


def best_us(run: Callable[[], float], n: int, repeats: int) -> float:
    """The fastest of ``repeats`` runs, in microseconds per event."""
    return min(run() for _ in range(repeats)) / n * 1e6


def bench(n: int, repeats: int, seed: int) -> dict[str, float]:
    txns, xs, ys = inputs(n, seed)
    rows = list(zip(xs, ys, strict=True))
    ms = ModelSettings()

    def predict_then_learn(predict: Callable[[dict[str, float]], Any], learn: Callable[..., Any]) -> float:
        t0 = time.perf_counter()
        for x, y in rows:
            predict(x)
            learn(x, y)
        return time.perf_counter() - t0

    def each_score(score: Callable[[Transaction], Any]) -> float:
        t0 = time.perf_counter()
        for t in txns:
            score(t)
        return time.perf_counter() - t0

    def river() -> float:
        p = river_pipeline(ms)
        return predict_then_learn(p.predict_proba_one, p.learn_one)

    def online_logit() -> float:
        m = OnlineLogit(ms)
        return predict_then_learn(m.score, m.learn)

    def scorer_model() -> float:
        return each_score(Scorer(ScorerSettings(), lambda: Replay(xs)).score)

    def scorer_full() -> float:
        return each_score(Scorer(ScorerSettings(), FeatureEngine).score)

    return {
        "river": best_us(river, n, repeats),
        "online_logit": best_us(online_logit, n, repeats),
        "scorer_model": best_us(scorer_model, n, repeats),
        "scorer_full": best_us(scorer_full, n, repeats),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=8)
    a = ap.parse_args()
    out = bench(a.events, a.repeats, a.seed)
    print(f"{a.events} events, {len(FeatureEngine.names)} features, best of {a.repeats}")
    labels = {
        "river": "River pipeline predict_proba_one + learn_one",
        "online_logit": "OnlineLogit score + learn (champion alone)",
        "scorer_model": "Scorer.score, champion + challenger, replayed features",
        "scorer_full": "Scorer.score, champion + challenger, feature engine",
    }
    for k, v in out.items():
        print(f"  {labels[k]:<58} {v:7.1f} us/event")


if __name__ == "__main__":
    main()
