"""Types of the C extension ``stream_scorer.model._kernels`` (see ``kernels.py``, its reference)."""

from typing import Any

def scale_learn(
    x: dict[str, float], counts: Any, means: Any, vars: Any, std: dict[str, float]
) -> list[float]: ...
def scale_transform(x: dict[str, float], means: Any, std: dict[str, float]) -> list[float | None]: ...
def contributions(
    x: dict[str, float],
    scaled: list[float | None],
    weights: dict[str, float],
    intercept: float,
    want_reasons: bool,
) -> tuple[float, list[tuple[str, float]]]: ...
def sgd_learn(
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
) -> float: ...
