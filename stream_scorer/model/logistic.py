"""The champion: River's StandardScaler followed by LogisticRegression trained by SGD.

Scoring reads the pipeline's own scaler and weights once to get both the probability and each
feature's contribution to the logit (weight times scaled value), which are the reason codes. The
probability is the one River's ``predict_proba_one`` gives; a test holds the two equal.

The whole learned state is a handful of numbers (the scaler's counts, means and variances, the
weights, the intercept, the optimizer's step count, the class counts), so :meth:`OnlineLogit.state`
returns it as plain JSON-able data and :meth:`OnlineLogit.from_state` rebuilds an identical model:
checkpoints need no pickle for the champion.

Learning is River's ``pipeline.learn_one`` done by hand: the scaler's update and the scaled values
in one pass (:class:`~stream_scorer.model.scaling.Scaling`), then River's SGD step in plain loops
(:mod:`~stream_scorer.model.kernels`, in C when built), the same arithmetic in the same order on
River's own objects, several times faster than going through River's vector arithmetic. A
champion and a logistic challenger that started together share one scaling, learned once per
label (:meth:`OnlineLogit.share_scaling`).
"""

from __future__ import annotations

import math
import operator
from typing import Any

from river import compose, linear_model, optim, preprocessing, utils

from stream_scorer.model import kernels
from stream_scorer.model.scaling import Scaling
from stream_scorer.model.settings import ModelSettings

STATE_VERSION = 1


def band_of(score: float, review: float, decline: float) -> str:
    """The decision band of a score: approve below ``review``, decline from ``decline`` on."""
    if score >= decline:
        return "decline"
    if score >= review:
        return "review"
    return "approve"


def river_pipeline(settings: ModelSettings) -> compose.Pipeline:
    """River's StandardScaler then LogisticRegression by SGD, configured by ``settings``: the
    champion's own state holders, and the reference its tests and benchmarks measure it against."""
    return compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(
            optimizer=optim.SGD(settings.learning_rate),
            l2=settings.l2,
            intercept_lr=settings.intercept_lr,
            intercept_init=settings.intercept_init,
        ),
    )


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class OnlineLogit:
    """A scaled logistic regression that predicts, then learns, per event.

    With ``imbalance="weight"`` a fraud label weighs ``min(weight_cap, (1 - prior) / prior)``,
    the prior being the share of fraud among the labels learned so far (Laplace-smoothed).

    Learning updates River's own objects (the scaler's statistics, the regression's weights,
    intercept and step count) exactly as ``pipeline.learn_one`` would, in plain loops over ``x``
    rather than through River's vector arithmetic; a test holds the two equal. The weights live in
    a plain dict that the regression's ``VectorDict`` wraps without copying, so River reads them.
    After changing the River objects' state from outside, call :meth:`resync`.

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
        self.pipeline = river_pipeline(settings)
        self.logit: linear_model.LogisticRegression = self.pipeline["LogisticRegression"]
        self.scaling = Scaling(self.pipeline["StandardScaler"])
        self.n_learned = 0
        self.n_positive = 0
        self.generation = 0
        self._weighted = settings.imbalance == "weight"
        # What River's SGD step reads, fixed by the construction above: constant learning rates,
        # the log loss's class weights, the gradient clip, the L2 factor.
        loss = self.logit.loss
        self._lr = self.logit.optimizer.lr.learning_rate
        self._intercept_lr = self.logit.intercept_lr.learning_rate
        self._w_pos, self._w_neg = loss.weight_pos, loss.weight_neg
        self._clip = self.logit.clip_gradient
        self._l2 = self.logit.l2
        self._weights: dict[str, float] = {}
        self.resync()

    @property
    def scaler(self) -> preprocessing.StandardScaler:
        """River's scaler that holds this model's scaling statistics."""
        return self.scaling.scaler

    @property
    def generation(self) -> int:
        """How many checkpoints this model's line has had; part of :attr:`version`."""
        return self._generation

    @generation.setter
    def generation(self, value: int) -> None:
        self._generation = value
        self.version = f"{self.settings.name}/{value}"
        """Name and checkpoint generation, e.g. ``logreg-sgd/3`` (in every score: kept, not built)."""

    def resync(self) -> None:
        """Take up the state of the River objects again (after it was set from outside)."""
        self.scaling.resync()
        self._weights = self.logit._weights.to_dict()
        self.logit._weights = utils.VectorDict(self._weights)  # wraps, does not copy

    def score(self, x: dict[str, float]) -> tuple[float, list[tuple[str, float]]]:
        """The fraud probability of ``x`` and its top positive contributions to the logit.

        ``x`` is scaled as River's StandardScaler does, and each feature adds its contribution
        (weight times scaled value) to the logit; reading never changes the model.
        """
        return self.score_scaled(x, self.scaling.transform(x))

    def score_scaled(
        self, x: dict[str, float], scaled: list[float | None]
    ) -> tuple[float, list[tuple[str, float]]]:
        """:meth:`score`, with ``x`` already scaled by :meth:`Scaling.transform` of this model's
        scaling (``None``: no variance, skipped): models that share a scaling scale ``x`` once."""
        k = self.n_reasons
        z, positive = kernels.contributions(x, scaled, self._weights, self.logit.intercept, k > 0)
        if len(positive) > 1:
            positive.sort(key=_second, reverse=True)
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

        A model that shares its scaling (:meth:`share_scaling`) and learns alone takes its own
        copy of the scaling first, so that the other model's scaler is not moved.
        """
        if self.scaling.owners > 1:
            self._own_scaling()
        self.learn_scaled(x, self.scaling.learn(x), y, weight)

    def learn_scaled(
        self, x: dict[str, float], scaled: list[float], y: bool, weight: float = 1.0
    ) -> None:
        """The regression's part of :meth:`learn`: ``scaled`` is ``x`` as the scaling learned it.

        River's ``GLM.learn_one`` step by step, with its arithmetic in its order (a test holds the
        two equal): :func:`.kernels.py_sgd_learn` moves the intercept and the weights; then the
        optimizer counts one step. The class counts are updated after the weight is read, so a
        label never weighs itself.
        """
        w = weight * self.class_weight(y) if self._weighted else weight
        logit = self.logit
        logit.intercept = kernels.sgd_learn(
            x, scaled, self._weights, logit.intercept, y, self._w_pos, self._w_neg, w,
            self._clip, self._intercept_lr, self._lr, self._l2,
        )
        logit.optimizer.n_iterations += 1
        self.n_learned += 1
        if y:
            self.n_positive += 1

    # -- shared scaling -------------------------------------------------------------------------

    def share_scaling(self, other: OnlineLogit) -> bool:
        """Let ``other`` use this model's scaling if their scalers hold equal statistics.

        Then one :meth:`Scaling.learn` per event serves both (call :meth:`learn_scaled` on each);
        each model still saves the scaler in its own state. Returns whether they share now.
        """
        if other.scaling is self.scaling:
            return True
        if not self.scaling.same_state(other.scaling):
            return False
        other.scaling.owners -= 1
        other.scaling = self.scaling
        self.scaling.owners += 1
        other.pipeline = compose.Pipeline(self.scaling.scaler, other.logit)
        return True

    def _own_scaling(self) -> None:
        shared = self.scaling
        shared.owners -= 1
        self.scaling = shared.copy()
        self.pipeline = compose.Pipeline(self.scaling.scaler, self.logit)

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
            "weights": dict(self._weights),
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
        m.logit._weights = utils.VectorDict({k: float(v) for k, v in state["weights"].items()})
        m.logit.intercept = float(state["intercept"])
        m.logit.optimizer.n_iterations = int(state["optimizer_n_iterations"])
        m.resync()
        return m


_second = operator.itemgetter(1)
"""The contribution of a (feature, contribution) pair: the sort key of reason codes."""
