"""The champion: River's StandardScaler followed by LogisticRegression trained by SGD.

Scoring reads the pipeline's own scaler and weights once to get both the probability and each
feature's contribution to the logit (weight times scaled value), which are the reason codes. The
probability is the one River's ``predict_proba_one`` gives; a test holds the two equal.
"""

from __future__ import annotations

import heapq
import math

from river import compose, linear_model, optim, preprocessing

from stream_scorer.config import ModelSettings


def band_of(score: float, review: float, decline: float) -> str:
    """The decision band of a score: approve below ``review``, decline from ``decline`` on."""
    if score >= decline:
        return "decline"
    if score >= review:
        return "review"
    return "approve"


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class OnlineLogit:
    """A scaled logistic regression that predicts, then learns, per event.

    >>> m = OnlineLogit(ModelSettings())
    >>> p, reasons = m.score({"a": 1.0})
    >>> p
    0.5
    >>> m.learn({"a": 1.0}, True); m.n_learned
    1
    """

    def __init__(self, settings: ModelSettings, n_reasons: int = 3) -> None:
        self.settings = settings
        self.n_reasons = n_reasons
        self.scaler = preprocessing.StandardScaler()
        self.logit = linear_model.LogisticRegression(
            optimizer=optim.SGD(settings.learning_rate),
            l2=settings.l2,
            intercept_lr=settings.intercept_lr,
        )
        self.pipeline = compose.Pipeline(self.scaler, self.logit)
        self.n_learned = 0
        self.generation = 0

    @property
    def version(self) -> str:
        """Name and checkpoint generation, e.g. ``logreg-sgd/3``."""
        return f"{self.settings.name}/{self.generation}"

    def score(self, x: dict[str, float]) -> tuple[float, list[tuple[str, float]]]:
        """The fraud probability of ``x`` and its top positive contributions to the logit."""
        scaled = self.scaler.transform_one(x)
        weights = self.logit._weights
        contributions = {name: weights.get(name, 0.0) * value for name, value in scaled.items()}
        z = self.logit.intercept + sum(contributions.values())
        reasons = heapq.nlargest(self.n_reasons, contributions.items(), key=_second)
        return _sigmoid(z), [(n, c) for n, c in reasons if c > 0.0]

    def learn(self, x: dict[str, float], y: bool, weight: float = 1.0) -> None:
        """Update the scaler and the weights with the label of ``x``."""
        self.scaler.learn_one(x)
        self.logit.learn_one(self.scaler.transform_one(x), y, w=weight)
        self.n_learned += 1


def _second(item: tuple[str, float]) -> float:
    return item[1]
