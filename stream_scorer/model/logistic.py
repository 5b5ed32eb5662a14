"""The champion: River's StandardScaler followed by LogisticRegression trained by SGD.

Scoring reads the pipeline's own scaler and weights once to get both the probability and each
feature's contribution to the logit (weight times scaled value), which are the reason codes. The
probability is the one River's ``predict_proba_one`` gives; a test holds the two equal.

The whole learned state is a handful of numbers (the scaler's counts, means and variances, the
weights, the intercept, the optimizer's step count, the class counts), so :meth:`OnlineLogit.state`
returns it as plain JSON-able data and :meth:`OnlineLogit.from_state` rebuilds an identical model:
checkpoints need no pickle for the champion.
"""

from __future__ import annotations

import math
from typing import Any

from river import compose, linear_model, optim, preprocessing, utils

from stream_scorer.model.settings import ModelSettings

STATE_VERSION = 1


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

    With ``imbalance="weight"`` a fraud label weighs ``min(weight_cap, (1 - prior) / prior)``,
    the prior being the share of fraud among the labels learned so far (Laplace-smoothed).

    >>> m = OnlineLogit(ModelSettings(intercept_init=0.0))
    >>> p, reasons = m.score({"a": 1.0})
    >>> p
    0.5
    >>> m.learn({"a": 1.0}, True); m.n_learned
    1
    """

    kind = "logreg"

    def __init__(self, settings: ModelSettings, n_reasons: int = 3) -> None:
        self.settings = settings
        self.n_reasons = n_reasons
        self.scaler = preprocessing.StandardScaler()
        self.logit = linear_model.LogisticRegression(
            optimizer=optim.SGD(settings.learning_rate),
            l2=settings.l2,
            intercept_lr=settings.intercept_lr,
            intercept_init=settings.intercept_init,
        )
        self.pipeline = compose.Pipeline(self.scaler, self.logit)
        self.n_learned = 0
        self.n_positive = 0
        self.generation = 0
        self._weighted = settings.imbalance == "weight"

    @property
    def version(self) -> str:
        """Name and checkpoint generation, e.g. ``logreg-sgd/3``."""
        return f"{self.settings.name}/{self.generation}"

    def score(self, x: dict[str, float]) -> tuple[float, list[tuple[str, float]]]:
        """The fraud probability of ``x`` and its top positive contributions to the logit.

        One pass over ``x`` scales each value as River's StandardScaler does, and adds its
        contribution (weight times scaled value) to the logit; reading never changes the model.
        """
        means, vars_ = self.scaler.means, self.scaler.vars
        weights = self.logit._weights
        z = self.logit.intercept
        k = self.n_reasons
        positive: list[tuple[str, float]] = []
        for name, value in x.items():
            var = vars_.get(name, 0.0)
            if not var:
                continue  # River scales a feature without variance to 0
            c = weights.get(name, 0.0) * ((value - means[name]) / var**0.5)
            z += c
            if k and c > 0.0:
                positive.append((name, c))
        if len(positive) > 1:
            positive.sort(key=_second, reverse=True)  # stable: ties keep feature order
        return _sigmoid(z), positive[:k]

    def predict_proba(self, x: dict[str, float]) -> float:
        """The fraud probability of ``x`` alone (no reason codes)."""
        return self.score(x)[0]

    def class_weight(self, y: bool) -> float:
        """The weight of a label ``y`` now: 1, unless ``imbalance="weight"`` and ``y`` is fraud."""
        if not (self._weighted and y):
            return 1.0
        prior = (self.n_positive + 1.0) / (self.n_learned + 2.0)
        return min(self.settings.weight_cap, (1.0 - prior) / prior)

    def learn(self, x: dict[str, float], y: bool, weight: float = 1.0) -> None:
        """Update the scaler and the weights with the label of ``x``.

        The class counts are updated after the weight is read, so a label never weighs itself.
        """
        w = weight * self.class_weight(y)
        self.scaler.learn_one(x)
        self.logit.learn_one(self.scaler.transform_one(x), y, w=w)
        self.n_learned += 1
        if y:
            self.n_positive += 1

    # -- state ----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The learned state as plain data (JSON-able); :meth:`from_state` reverses it."""
        s = self.scaler
        lr = self.logit
        return {
            "kind": self.kind,
            "state_version": STATE_VERSION,
            "settings": self.settings.model_dump(mode="json"),
            "n_reasons": self.n_reasons,
            "generation": self.generation,
            "n_learned": self.n_learned,
            "n_positive": self.n_positive,
            "scaler": {
                "counts": dict(s.counts),
                "means": dict(s.means),
                "vars": dict(s.vars),
            },
            "weights": dict(lr._weights),
            "intercept": lr.intercept,
            "optimizer_n_iterations": lr.optimizer.n_iterations,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OnlineLogit:
        """Rebuild a model from :meth:`state`; raises ``ValueError``/``KeyError`` on bad data."""
        if state.get("kind") != cls.kind or state.get("state_version") != STATE_VERSION:
            raise ValueError(
                f"not a {cls.kind} state of version {STATE_VERSION}: "
                f"kind={state.get('kind')!r} state_version={state.get('state_version')!r}"
            )
        m = cls(ModelSettings.model_validate(state["settings"]), n_reasons=int(state["n_reasons"]))
        m.generation = int(state["generation"])
        m.n_learned = int(state["n_learned"])
        m.n_positive = int(state["n_positive"])
        sc = state["scaler"]
        m.scaler.counts.update({k: int(v) for k, v in sc["counts"].items()})
        m.scaler.means.update({k: float(v) for k, v in sc["means"].items()})
        m.scaler.vars.update({k: float(v) for k, v in sc["vars"].items()})
        m.logit._weights = utils.VectorDict(
            {k: float(v) for k, v in state["weights"].items()}, m.logit.initializer
        )
        m.logit.intercept = float(state["intercept"])
        m.logit.optimizer.n_iterations = int(state["optimizer_n_iterations"])
        return m


def _second(item: tuple[str, float]) -> float:
    return item[1]
