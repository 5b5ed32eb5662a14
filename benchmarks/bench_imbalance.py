"""Which class-imbalance handling gives the champion the best average precision?

Prequential evaluation on simulated transactions: each event is scored first, then its label is
learned (inline, no delay), exactly as the scorer does. Features come from the scorer's default
feature engine; they are computed once per seed and shared by every option, so each option sees the
same stream. Besides average precision (rank quality, the selection criterion) the table shows the
ROC AUC, and the precision and the share of events at the review threshold (0.5), because
re-weighting and sampling move the probabilities and hence the bands.

    .venv/bin/python benchmarks/bench_imbalance.py --count 100000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from river import compose, imblearn, linear_model, optim, preprocessing

from stream_scorer.backtest import average_precision, roc_auc
from stream_scorer.events import Transaction
from stream_scorer.model.logistic import OnlineLogit
from stream_scorer.model.settings import ModelSettings, TreeSettings
from stream_scorer.model.tree import OnlineTree
from stream_scorer.pipeline import default_feature_engine
from stream_scorer.simulate import SimConfig, Simulator

LR = ModelSettings().learning_rate
REVIEW = 0.5


class RiverPipeline:
    """A River pipeline (scaler | wrapped logistic regression) with the bench's two verbs."""

    def __init__(self, make_last: Callable[[], Any]) -> None:
        self.pipe = compose.Pipeline(preprocessing.StandardScaler(), make_last())

    def predict_proba(self, x: dict[str, float]) -> float:
        return float(self.pipe.predict_proba_one(x).get(True, 0.0))

    def learn(self, x: dict[str, float], y: bool) -> None:
        self.pipe.learn_one(x, y)


def _logreg() -> linear_model.LogisticRegression:
    s = ModelSettings()
    return linear_model.LogisticRegression(
        optim.SGD(s.learning_rate),
        l2=s.l2,
        intercept_lr=s.intercept_lr,
        intercept_init=s.intercept_init,
    )


OPTIONS: dict[str, Callable[[], Any]] = {
    "none": lambda: OnlineLogit(ModelSettings(imbalance="none")),
    "weight cap=5": lambda: OnlineLogit(ModelSettings(imbalance="weight", weight_cap=5)),
    "weight cap=10": lambda: OnlineLogit(ModelSettings(imbalance="weight", weight_cap=10)),
    "weight cap=30": lambda: OnlineLogit(ModelSettings(imbalance="weight", weight_cap=30)),
    "weight cap=100": lambda: OnlineLogit(ModelSettings(imbalance="weight", weight_cap=100)),
    "undersample 80/20": lambda: RiverPipeline(
        lambda: imblearn.RandomUnderSampler(_logreg(), {False: 0.8, True: 0.2}, seed=1)
    ),
    "undersample 50/50": lambda: RiverPipeline(
        lambda: imblearn.RandomUnderSampler(_logreg(), {False: 0.5, True: 0.5}, seed=1)
    ),
    "hard sampling size=100 p=0.1": lambda: RiverPipeline(
        lambda: imblearn.HardSamplingClassifier(_logreg(), size=100, p=0.1, seed=1)
    ),
}
REFERENCES: dict[str, Callable[[], Any]] = {
    "(challenger) logreg lr=0.05": lambda: OnlineLogit(ModelSettings(learning_rate=0.05)),
    "(challenger) hoeffding adaptive tree": lambda: OnlineTree(TreeSettings()),
}


def stream(count: int, seed: int) -> tuple[list[dict[str, float]], np.ndarray]:
    """Features and labels of ``count`` simulated events, labels told to the engine at once.

    The engine sees each label right after its event (as the scorer does with no label delay),
    which does not depend on the model, so every option gets the same features.
    """
    engine = default_feature_engine()
    observe = getattr(engine, "observe_label", None)
    xs, ys = [], []
    for event in Simulator(SimConfig(), seed=seed).events(count):
        txn = Transaction.model_validate(event)
        y = bool(event["is_fraud"])
        xs.append(engine.update(txn))
        ys.append(y)
        if observe is not None:
            ts = txn.event_time.timestamp()
            observe(txn.merchant_id, y, ts, ts)
    return xs, np.array(ys)


def prequential(model: Any, xs: list[dict[str, float]], ys: np.ndarray) -> np.ndarray:
    out = np.empty(len(xs))
    predict, learn = model.predict_proba, model.learn
    for i, (x, y) in enumerate(zip(xs, ys.tolist(), strict=True)):
        out[i] = predict(x)
        learn(x, y)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-references", action="store_true", help="skip the challenger candidates")
    args = ap.parse_args()
    options = dict(OPTIONS) if args.no_references else {**OPTIONS, **REFERENCES}
    results: dict[str, list[tuple[float, float, float, float, float]]] = {k: [] for k in options}
    for seed in args.seeds:
        xs, ys = stream(args.count, seed)
        print(f"seed {seed}: {len(xs)} events, fraud rate {ys.mean():.4f}", flush=True)
        for name, make in options.items():
            t = time.perf_counter()
            p = prequential(make(), xs, ys)
            dt = time.perf_counter() - t
            flagged = p >= REVIEW
            prec = float(ys[flagged].mean()) if flagged.any() else float("nan")
            results[name].append(
                (average_precision(ys, p), roc_auc(ys, p), prec, float(flagged.mean()), dt)
            )
    print()
    print(
        f"{'option':<38} {'AP mean':>8} {'AP per seed':<24} {'AUC':>6} "
        f"{'P@0.5':>6} {'flag%':>6} {'s/run':>6}"
    )
    for name, rows in results.items():
        a = np.array(rows)
        per_seed = " ".join(f"{v:.3f}" for v in a[:, 0])
        print(
            f"{name:<38} {a[:, 0].mean():8.4f} {per_seed:<24} {a[:, 1].mean():6.3f} "
            f"{np.nanmean(a[:, 2]):6.3f} {100 * a[:, 3].mean():6.2f} {a[:, 4].mean():6.1f}"
        )


if __name__ == "__main__":
    main()
