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

class Scaler:
    """A StandardScaler's statistics in arrays by feature position (see ``kernels.PyScaler``)."""

    def __init__(self, counts: Any, means: Any, vars: Any) -> None: ...
    @property
    def pending(self) -> int: ...
    def learn(self, x: dict[str, float]) -> list[float]: ...
    def transform(self, x: dict[str, float]) -> list[float | None]: ...
    def sync(self, counts: Any, means: Any, vars: Any) -> None: ...
    def std_of(self, name: str) -> float | None: ...

class Weights:
    """One model's weights by a Scaler's positions (see ``kernels.PyWeights``)."""

    def __init__(
        self, scaler: Scaler, weights: dict[str, float], w_pos: float, w_neg: float,
        clip: float, intercept_lr: float, lr: float, l2: float,
    ) -> None: ...
    @property
    def scaler(self) -> Scaler: ...
    @property
    def pending(self) -> int: ...
    def sync(self, weights: dict[str, float]) -> None: ...

def learn(
    scaler: Scaler, x: dict[str, float], y: bool,
    w1: Weights, intercept1: float, sample_weight1: float,
    w2: Weights | None, intercept2: float, sample_weight2: float,
) -> tuple[float, float]: ...
def score(
    scaler: Scaler, x: dict[str, float],
    w1: Weights, intercept1: float, want_reasons: bool,
    w2: Weights | None, intercept2: float,
) -> tuple[float, list[tuple[str, float]], float | None]: ...
