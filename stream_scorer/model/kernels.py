"""The model's per-event loops: in C when the extension ``_kernels`` is built, else in Python.

Each loop walks a feature dict ``x`` once, reading and writing River's own dicts (the scaler's
``counts``, ``means``, ``vars``, the kept ``std``, the weights). The C versions do the same
arithmetic in the same order as the Python ones here, so the floats and the dicts come out the
same (``tests/unit/model/test_kernels.py`` holds them equal); the Python ones are the reference,
and the fallback where no C compiler built the extension. ``NATIVE`` says which is in use;
``STREAM_SCORER_PURE_PYTHON=1`` in the environment chooses Python (see :mod:`stream_scorer.native`).

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


_c = native.load("stream_scorer.model._kernels")
NATIVE: bool = _c is not None
"""Whether the C loops are in use."""

scale_learn: Callable[..., list[float]] = _c.scale_learn if _c else py_scale_learn
scale_transform: Callable[..., list[float | None]] = (
    _c.scale_transform if _c else py_scale_transform
)
contributions: Callable[..., tuple[float, Reasons]] = (
    _c.contributions if _c else py_contributions
)
sgd_learn: Callable[..., float] = _c.sgd_learn if _c else py_sgd_learn
