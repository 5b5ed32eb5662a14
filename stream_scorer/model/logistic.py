"""The champion: River's StandardScaler followed by LogisticRegression trained by SGD.

Scoring reads the pipeline's own scaler and weights once to get both the probability and each
feature's contribution to the logit (weight times scaled value), which are the reason codes. The
probability is the one River's ``predict_proba_one`` gives; a test holds the two equal.

The whole learned state is a handful of numbers (the scaler's counts, means and variances, the
weights, the intercept, the optimizer's step count, the class counts), so :meth:`OnlineLogit.state`
returns it as plain JSON-able data and :meth:`OnlineLogit.from_state` rebuilds an identical model:
checkpoints need no pickle for the champion.

Learning is River's ``pipeline.learn_one`` done by hand: the scaler's update and the scaled values
in one pass, then River's SGD step in plain loops (:mod:`~stream_scorer.model.kernels`, in C when
built), the same arithmetic in the same order, several times faster than going through River's
vector arithmetic. The scaler's statistics and the weights are learned in the kernels' own state
(C arrays by feature position); River's objects are brought up to date when read (:meth:`sync`:
through :attr:`OnlineLogit.pipeline`, ``logit``, ``scaler``, :meth:`OnlineLogit.state`, a copy). A
champion and a logistic challenger that started together share one scaling: one pass scores both,
one learns the scaling once and takes both SGD steps (:meth:`OnlineLogit.share_scaling`).
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

    Learning updates the state River's objects hold (the scaler's statistics, the regression's
    weights, intercept and step count) exactly as ``pipeline.learn_one`` would, in plain loops
    over ``x`` rather than through River's vector arithmetic; a test holds the two equal. The
    statistics and weights are learned in the kernels' state and written into River's objects
    when they are read through :attr:`pipeline`, :attr:`logit` or :attr:`scaler` (the weights'
    dict is the one the regression's ``VectorDict`` wraps). After changing the River objects'
    state from outside, call :meth:`resync`.

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
        self._pipeline = river_pipeline(settings)
        self._logit: linear_model.LogisticRegression = self._pipeline["LogisticRegression"]
        self.scaling = Scaling(self._pipeline["StandardScaler"])
        self.n_learned = 0
        self.n_positive = 0
        self.generation = 0
        self._weighted = settings.imbalance == "weight"
        # What River's SGD step reads, fixed by the construction above: constant learning rates,
        # the log loss's class weights, the gradient clip, the L2 factor.
        logit = self._logit
        loss = logit.loss
        self._step_constants = (
            loss.weight_pos, loss.weight_neg, logit.clip_gradient,
            logit.intercept_lr.learning_rate, logit.optimizer.lr.learning_rate, logit.l2,
        )
        self._weights: dict[str, float] = {}
        self._ws: Any = None
        self.resync()

    @property
    def scaler(self) -> preprocessing.StandardScaler:
        """River's scaler that holds this model's scaling statistics (brought up to date)."""
        return self.scaling.scaler

    @property
    def logit(self) -> linear_model.LogisticRegression:
        """River's regression that holds this model's weights (brought up to date)."""
        self._sync_weights()
        return self._logit

    @property
    def pipeline(self) -> compose.Pipeline:
        """River's scaler then regression, brought up to date (``predict_proba_one`` works)."""
        self.sync()
        return self._pipeline

    def sync(self) -> None:
        """Write what was learned since the last sync into River's objects (done when they are
        read through :attr:`pipeline`, :attr:`logit`, :attr:`scaler` or :meth:`state`)."""
        self.scaling.sync()
        self._sync_weights()

    def _sync_weights(self) -> None:
        ws = self._ws
        if ws is not None and ws.pending:
            ws.sync(self._weights)

    def _bind(self) -> Any:
        """The weights state, by the positions of the scaling's current state."""
        self._sync_weights()
        self._ws = kernels.Weights(self.scaling.state, self._weights, *self._step_constants)
        return self._ws

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
        """Take up the state of the River objects again (after it was set from outside); what
        was learned since the last sync is written into them first, so nothing is lost."""
        self._sync_weights()
        self.scaling.resync()
        self._weights = self._logit._weights.to_dict()
        self._logit._weights = utils.VectorDict(self._weights)  # wraps, does not copy
        self._bind()

    def _weights_of(self, scaling: Scaling) -> Any:
        ws = self._ws
        # A shared scaling resynced by the other model has a new state: take it up.
        return ws if ws.scaler is scaling.state else self._bind()

    def score(self, x: dict[str, float]) -> tuple[float, list[tuple[str, float]]]:
        """The fraud probability of ``x`` and its top positive contributions to the logit.

        ``x`` is scaled as River's StandardScaler does, and each feature adds its contribution
        (weight times scaled value) to the logit; reading never changes the model.
        """
        scaling = self.scaling
        k = self.n_reasons
        z, positive, _ = kernels.score(
            scaling.state, x, self._weights_of(scaling), self._logit.intercept, k > 0, None, 0.0
        )
        if len(positive) > 1:
            positive.sort(key=_second, reverse=True)
        return _sigmoid(z), positive[:k]

    def score_with(
        self, other: OnlineLogit, x: dict[str, float]
    ) -> tuple[float, list[tuple[str, float]], float]:
        """:meth:`score` of this model and the probability of ``other``, which shares its scaling
        (:meth:`share_scaling`): ``x`` is scaled once for both, in one pass."""
        scaling = self.scaling
        if other.scaling is not scaling:
            raise ValueError("score_with needs a model that shares this model's scaling")
        k = self.n_reasons
        z, positive, z2 = kernels.score(
            scaling.state, x, self._weights_of(scaling), self._logit.intercept, k > 0,
            other._weights_of(scaling), other._logit.intercept,
        )
        if len(positive) > 1:
            positive.sort(key=_second, reverse=True)
        return _sigmoid(z), positive[:k], _sigmoid(z2)  # type: ignore[arg-type]  # w2 given

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

        River's ``GLM.learn_one`` step by step, with its arithmetic in its order (a test holds the
        two equal): the scaler learns ``x``, then :func:`.kernels.py_sgd_learn`'s step moves the
        intercept and the weights; then the optimizer counts one step. The class counts are
        updated after the weight is read, so a label never weighs itself.
        """
        if self.scaling.owners > 1:
            self._own_scaling()
        scaling = self.scaling
        w = weight * self.class_weight(y) if self._weighted else weight
        logit = self._logit
        logit.intercept = kernels.learn(
            scaling.state, x, y, self._weights_of(scaling), logit.intercept, w, None, 0.0, 0.0
        )[0]
        self._count(y)

    def learn_with(self, other: OnlineLogit, x: dict[str, float], y: bool) -> None:
        """:meth:`learn` for this model and ``other``, which shares its scaling
        (:meth:`share_scaling`): the scaling learns ``x`` once, then each model takes its step."""
        scaling = self.scaling
        if other.scaling is not scaling:
            raise ValueError("learn_with needs a model that shares this model's scaling")
        w1 = self.class_weight(y) if self._weighted else 1.0
        w2 = other.class_weight(y) if other._weighted else 1.0
        a, b = self._logit, other._logit
        a.intercept, b.intercept = kernels.learn(
            scaling.state, x, y, self._weights_of(scaling), a.intercept, w1,
            other._weights_of(scaling), b.intercept, w2,
        )
        self._count(y)
        other._count(y)

    def _count(self, y: bool) -> None:
        self._logit.optimizer.n_iterations += 1
        self.n_learned += 1
        if y:
            self.n_positive += 1

    # -- shared scaling -------------------------------------------------------------------------

    def share_scaling(self, other: OnlineLogit) -> bool:
        """Let ``other`` use this model's scaling if their scalers hold equal statistics.

        Then one scaling pass per event serves both (:meth:`score_with`, :meth:`learn_with`);
        each model still saves the scaler in its own state. Returns whether they share now.
        """
        if other.scaling is self.scaling:
            return True
        if not self.scaling.same_state(other.scaling):
            return False
        other._sync_weights()  # by the positions of its old scaling
        other.scaling.owners -= 1
        other.scaling = self.scaling
        self.scaling.owners += 1
        other._pipeline = compose.Pipeline(self.scaling.scaler, other._logit)
        other._bind()
        return True

    def _own_scaling(self) -> None:
        shared = self.scaling
        self._sync_weights()
        shared.owners -= 1
        self.scaling = shared.copy()
        self._pipeline = compose.Pipeline(self.scaling.scaler, self._logit)
        self._bind()

    # -- state ----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The learned state as plain data (JSON-able); :meth:`from_state` reverses it."""
        self.sync()
        s = self.scaling.scaler
        lr = self._logit
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


    def __getstate__(self) -> dict[str, Any]:
        self.sync()
        d = dict(self.__dict__)
        d["_ws"] = None  # rebuilt from River's objects: C state neither copies nor pickles
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        self._bind()


_second = operator.itemgetter(1)
"""The contribution of a (feature, contribution) pair: the sort key of reason codes."""
