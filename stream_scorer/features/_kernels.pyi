"""Types of the C extension ``stream_scorer.features._kernels`` (see ``_kernels.c``)."""

from typing import Any

class CardUpdater:
    def __init__(
        self,
        grace_s: float,
        levels: tuple[tuple[float, int, int, int, str, str, str, str], ...],
        offsets: tuple[int, int, int, int, int, int],
        merchant_slots: int,
        constants: tuple[float, int, int, float, float, float, float],
        names: tuple[str, str, str, str, str, str],
    ) -> None: ...
    def update(
        self, buf: bytearray, amount: float, ts: float, mhash: int, x: dict[str, float]
    ) -> bool: ...

class MerchantUpdater:
    def __init__(
        self,
        grace_s: float,
        levels: tuple[tuple[float, int, int, int, str, str], ...],
    ) -> None: ...
    def update(self, m: Any, amount: float, ts: float, x: dict[str, float]) -> bool: ...

class RiskKernel:
    def __init__(
        self,
        bucket_s: float,
        slots: int,
        itemsize: int,
        spans: tuple[int, ...],
        names: tuple[tuple[str, str], ...],
        prior_weight: float,
        prior_frauds: float,
        prior_value: float,
    ) -> None: ...
    def read(self, buf: bytearray, off: int, ts: float, x: dict[str, float]) -> None: ...
    def fold(self, buf: bytearray, off: int, label_ts: float, is_fraud: bool) -> None: ...
