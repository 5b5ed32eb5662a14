"""A small, stable feature engine for the scoring-layer tests.

The scorer takes any engine with ``names`` and ``update``; tests use this one so that they do not
move when the real feature engine changes. It records the labels and evictions it is told about.
"""

from __future__ import annotations

import math
from typing import Any

from stream_scorer.events import Transaction

NAMES = (
    "log_amount",
    "card_log_count",
    "card_amount_ratio",
    "card_log_seconds_since_prev",
    "card_merchant_new",
)


class ToyFeatures:
    """Per-card amount habit, velocity and merchant novelty, from state before the event."""

    names = NAMES

    def __init__(self) -> None:
        self.cards: dict[str, list[Any]] = {}  # card -> [count, mean, last_ts, merchants]
        self.labels: list[tuple[str, bool, float, float]] = []
        self.evictions: list[float] = []

    def update(self, txn: Transaction) -> dict[str, float]:
        ts = txn.event_time.timestamp()
        c = self.cards.setdefault(txn.card_id, [0, 0.0, ts - 86_400.0, set()])
        n, mean, last, merchants = c
        x = {
            "log_amount": math.log1p(txn.amount),
            "card_log_count": math.log1p(n),
            "card_amount_ratio": min(txn.amount / mean, 1e3) if n else 1.0,
            "card_log_seconds_since_prev": math.log1p(max(ts - last, 0.0)),
            "card_merchant_new": 0.0 if txn.merchant_id in merchants else 1.0,
        }
        c[0] = n + 1
        c[1] = mean + (txn.amount - mean) / (n + 1)
        c[2] = max(last, ts)
        merchants.add(txn.merchant_id)
        return x

    def observe_label(
        self, merchant_id: str, is_fraud: bool, event_ts: float, label_ts: float
    ) -> None:
        self.labels.append((merchant_id, is_fraud, event_ts, label_ts))

    def evict(self, watermark_ts: float) -> None:
        self.evictions.append(watermark_ts)
