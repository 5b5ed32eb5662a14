"""The model's per-event loops: in C when the extension ``_kernels`` is built, else in Python.

The dict loops (``py_scale_learn`` and the others) walk a feature dict ``x`` once, reading and
writing dicts of the shape of River's (the scaler's ``counts``, ``means``, ``vars``, the kept
``std``, the weights): they are the arithmetic's reference. The models run on :data:`Scaler` and
:data:`Weights`, state of their own that :func:`learn` and :func:`score` update and read in one
pass for one or two models sharing a scaler: in C, arrays by feature position (the names of the
last ``x`` are remembered in order, so the engine's fixed order costs no hashing); in Python,
:class:`PyScaler` and :class:`PyWeights`, the dict loops on dicts of their own. Both write River's
dicts on ``sync``, in the order an update per event would have inserted the keys.

The C versions do the same arithmetic in the same order as the Python ones here, so the floats
and the dicts come out the same (``tests/unit/model/test_kernels.py`` holds them equal); the
Python ones are the reference, and the fallback where no C compiler built the extension.
``NATIVE`` says which is in use; ``STREAM_SCORER_PURE_PYTHON=1`` in the environment chooses
Python (see :mod:`stream_scorer.native`).

The scaled values are lists in the order of ``x``; ``None`` marks a feature without variance
where scoring skips it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from stream_scorer import native

Reasons = list[tuple[str, float]]


def py_scale_learn(
    x: dict[str, float], counts: Any, means: Any, vars_: Any, std: dict[str, float]
) -> list[float]:
    """``StandardScaler.learn_one`` then ``transform_one``, keeping ``std`` (see Scaling.learn)."""
    out: list[float] = []
    append = out.append
    for i, xi in x.items():
        n = counts.get(i, 0) + 1
        counts[i] = n
        old = means.get(i, 0.0)
        d = xi - old
        m = means[i] = old + d / n
        e = xi - m
        v = vars_.get(i, 0.0)
        v = vars_[i] = v + (d * e - v) / n
        if v:
            s = std[i] = v**0.5
            append(e / s)
        else:
            std[i] = 0.0
            append(0.0)
    return out


def py_scale_transform(
    x: dict[str, float], means: Any, std: dict[str, float]
) -> list[float | None]:
    """``x`` scaled by the statistics; ``None`` where a feature has no variance. Reads only."""
    out: list[float | None] = []
    append = out.append
    get = means.get
    for i, xi in x.items():
        s = std.get(i)
        append((xi - get(i, 0.0)) / s if s else None)
    return out


def py_contributions(
    x: dict[str, float],
    scaled: list[float | None],
    weights: dict[str, float],
    intercept: float,
    want_reasons: bool,
) -> tuple[float, Reasons]:
    """The logit (``intercept`` plus weight times scaled value) and, if wanted, the positive
    contributions as (feature, contribution) in the order of ``x``."""
    get = weights.get
    z = intercept
    positive: Reasons = []
    for name, v in zip(x, scaled, strict=True):
        if v is None:
            continue
        c = get(name, 0.0) * v
        z += c
        if want_reasons and c > 0.0:
            positive.append((name, c))
    return z, positive


def py_sgd_learn(
    x: dict[str, float],
    scaled: list[float],
    weights: dict[str, float],
    intercept: float,
    y: bool,
    w_pos: float,
    w_neg: float,
    sample_weight: float,
    clip: float,
    intercept_lr: float,
    lr: float,
    l2: float,
) -> float:
    """River's ``GLM.learn_one`` step for the log loss on the scaled ``x``; returns the new
    intercept and moves ``weights`` in place.

    With River's arithmetic in its order: 1. the logit, the weights' dot product with the scaled
    ``x`` (unseen features weigh 0) plus the intercept; 2. the log loss's gradient (River's
    ``optim.losses.Log.gradient``, its expressions as written, ``* -y_true`` included, so that the
    floats are the same ones), times the sample weight, clipped to ``[-clip, clip]``; 3. the
    intercept moves by its learning rate times that gradient; 4. each weight of a feature in ``x``
    moves by ``lr`` times its gradient (scaled value times the loss gradient, plus ``l2`` times
    the weight).
    """
    get = weights.get
    z = 0.0
    for name, v in zip(x, scaled, strict=True):
        z += get(name, 0.0) * v
    z += intercept
    if y:  # y_true = 1
        if z > 18.0:
            g = w_pos * math.exp(-z) * -1
        elif z < -18.0:
            g = w_pos * -1
        else:
            g = w_pos * -1 / (math.exp(z) + 1.0)
    else:  # y_true = -1
        z = z * -1
        if z > 18.0:
            g = w_neg * math.exp(-z) * 1
        elif z < -18.0:
            g = w_neg * 1
        else:
            g = w_neg * 1 / (math.exp(z) + 1.0)
    g *= sample_weight
    g = float(max(min(g, clip), -clip))
    intercept -= intercept_lr * g
    if l2:
        for name, v in zip(x, scaled, strict=True):
            wi = get(name, 0.0)
            weights[name] = wi - (v * g + wi * l2) * lr
    else:
        for name, v in zip(x, scaled, strict=True):
            weights[name] = get(name, 0.0) - v * g * lr
    return intercept


class PyScaler:
    """The Python twin of ``_kernels.Scaler``: a StandardScaler's statistics kept apart from
    River's dicts (which :meth:`sync` brings up to date), learned by :func:`py_scale_learn`.

    The C one keeps them in arrays by feature position; both mark what was learned since the last
    sync, in the order first learned, which is the order an eager update inserts new keys in.
    """

    def __init__(self, counts: Any, means: Any, vars: Any) -> None:
        self.counts: dict[str, int] = dict(counts)
        self.means: dict[str, float] = dict(means)
        self.vars: dict[str, float] = dict(vars)
        self.std: dict[str, float] = {k: v**0.5 for k, v in self.vars.items()}
        self._known = {**dict.fromkeys(counts), **dict.fromkeys(means), **dict.fromkeys(vars)}
        self._dirty: dict[str, None] = {}

    @property
    def pending(self) -> int:
        """How many features were learned since the last :meth:`sync`."""
        return len(self._dirty)

    def learn(self, x: dict[str, float]) -> list[float]:
        """Learn ``x``; return it scaled (see :func:`py_scale_learn`)."""
        out = py_scale_learn(x, self.counts, self.means, self.vars, self.std)
        self._dirty.update(dict.fromkeys(x))
        self._known.update(self._dirty)
        return out

    def transform(self, x: dict[str, float]) -> list[float | None]:
        """``x`` scaled; ``None`` where a feature has no variance (see :func:`py_scale_transform`)."""
        return py_scale_transform(x, self.means, self.std)

    def sync(self, counts: Any, means: Any, vars: Any) -> None:
        """Write the statistics learned since the last sync into River's dicts."""
        for k in self._dirty:
            counts[k] = self.counts[k]
            means[k] = self.means[k]
            vars[k] = self.vars[k]
        self._dirty.clear()

    def std_of(self, name: str) -> float | None:
        """The kept standard deviation of ``name``; ``None`` for a name never seen."""
        return self.std.get(name, 0.0) if name in self._known else None


class PyWeights:
    """The Python twin of ``_kernels.Weights``: one model's weights, kept apart from River's dict
    (which :meth:`sync` brings up to date), and the constants of its SGD step."""

    def __init__(
        self,
        scaler: PyScaler,
        weights: dict[str, float],
        w_pos: float,
        w_neg: float,
        clip: float,
        intercept_lr: float,
        lr: float,
        l2: float,
    ) -> None:
        self.scaler = scaler
        self.w = {k: float(v) for k, v in weights.items()}
        self.w_pos, self.w_neg, self.clip = float(w_pos), float(w_neg), float(clip)
        self.intercept_lr, self.lr, self.l2 = float(intercept_lr), float(lr), float(l2)
        self._dirty: dict[str, None] = {}

    @property
    def pending(self) -> int:
        """How many weights moved since the last :meth:`sync`."""
        return len(self._dirty)

    def sync(self, weights: dict[str, float]) -> None:
        """Write the weights moved since the last sync into River's dict."""
        w = self.w
        for k in self._dirty:
            weights[k] = w[k]
        self._dirty.clear()

    def step(self, x: dict[str, float], scaled: list[float], y: bool, intercept: float,
             sample_weight: float) -> float:
        """:func:`py_sgd_learn` on these weights; returns the new intercept."""
        b = py_sgd_learn(x, scaled, self.w, intercept, y, self.w_pos, self.w_neg, sample_weight,
                         self.clip, self.intercept_lr, self.lr, self.l2)
        self._dirty.update(dict.fromkeys(x))
        return b


def _check(scaler: Any, w1: Any, w2: Any) -> None:
    if w1.scaler is not scaler or (w2 is not None and w2.scaler is not scaler):
        raise ValueError("the weights belong to another Scaler")
    if w1 is w2:
        raise ValueError("two models cannot share their weights")


def py_learn(
    scaler: PyScaler, x: dict[str, float], y: bool,
    w1: PyWeights, intercept1: float, sample_weight1: float,
    w2: PyWeights | None, intercept2: float, sample_weight2: float,
) -> tuple[float, float]:
    """The scaler learns ``x`` once; then each model (``w2`` may be ``None``) takes River's SGD
    step on ``x`` scaled. Returns the two new intercepts (the second as given without ``w2``)."""
    _check(scaler, w1, w2)
    scaled = scaler.learn(x)
    b1 = w1.step(x, scaled, y, intercept1, sample_weight1)
    b2 = w2.step(x, scaled, y, intercept2, sample_weight2) if w2 is not None else intercept2
    return b1, b2


def py_score(
    scaler: PyScaler, x: dict[str, float],
    w1: PyWeights, intercept1: float, want_reasons: bool,
    w2: PyWeights | None, intercept2: float,
) -> tuple[float, Reasons, float | None]:
    """``x`` scaled once; the logit of each model (``w2`` may be ``None``) and the first one's
    positive contributions (see :func:`py_contributions`)."""
    _check(scaler, w1, w2)
    scaled = scaler.transform(x)
    z1, positive = py_contributions(x, scaled, w1.w, intercept1, want_reasons)
    z2 = py_contributions(x, scaled, w2.w, intercept2, False)[0] if w2 is not None else None
    return z1, positive, z2


_c = native.load("stream_scorer.model._kernels")
NATIVE: bool = _c is not None
"""Whether the C loops are in use."""

Scaler: Any = _c.Scaler if _c else PyScaler
"""A scaler's statistics by feature position (C) or in dicts (Python): ``Scaler(counts, means,
vars)`` takes River's dicts."""
Weights: Any = _c.Weights if _c else PyWeights
"""One model's weights by its :data:`Scaler`'s positions, and its SGD step's constants."""
learn: Callable[..., tuple[float, float]] = _c.learn if _c else py_learn
score: Callable[..., tuple[float, Reasons, float | None]] = _c.score if _c else py_score
