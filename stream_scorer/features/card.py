"""A first set of per-card features: amount habits, velocity, novelty and time of day.

Each feature is computed from the card's state *before* the event, then the event updates the
state, so a feature never sees its own event.
"""

from __future__ import annotations

import math

from stream_scorer.events import Transaction

_TWO_PI_OVER_DAY = 2.0 * math.pi / 86_400.0
_NO_PREVIOUS_S = 30 * 86_400.0
MAX_MERCHANTS_PER_CARD = 64

FEATURE_NAMES: tuple[str, ...] = (
    "log_amount",
    "card_log_count",
    "card_amount_ratio",
    "card_amount_z",
    "card_log_seconds_since_prev",
    "card_merchant_new",
    "hour_sin",
    "hour_cos",
)


class CardState:
    """What a card's history says, in a few numbers (Welford's running mean and variance)."""

    __slots__ = ("count", "last_ts", "m2", "mean", "merchants")

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.last_ts = 0.0
        self.merchants: dict[str, None] = {}


class CardFeatures:
    """Per-card features of a transaction stream.

    >>> from datetime import datetime, UTC
    >>> f = CardFeatures()
    >>> t = lambda a, m: Transaction(transaction_id="t", event_time=datetime(2026, 1, 1, tzinfo=UTC),
    ...     card_id="c", merchant_id=m, amount=a, currency="EUR")
    >>> f.update(t(10.0, "m1"))["card_merchant_new"], f.update(t(30.0, "m1"))["card_amount_ratio"]
    (1.0, 3.0)
    """

    names = FEATURE_NAMES

    def __init__(self) -> None:
        self.cards: dict[str, CardState] = {}

    def update(self, txn: Transaction, ts: float | None = None) -> dict[str, float]:
        """Features of ``txn`` from the card's state so far; then fold ``txn`` into that state."""
        if ts is None:
            ts = txn.event_time.timestamp()
        amount = txn.amount
        state = self.cards.get(txn.card_id)
        if state is None:
            state = self.cards[txn.card_id] = CardState()
        n = state.count
        if n:
            ratio = amount / state.mean
            std = math.sqrt(state.m2 / n) if n > 1 else 0.0
            z = (amount - state.mean) / std if std > 0 else 0.0
            since = max(ts - state.last_ts, 0.0)
        else:
            ratio, z, since = 1.0, 0.0, _NO_PREVIOUS_S
        merchant_new = 0.0 if txn.merchant_id in state.merchants else 1.0
        angle = (ts % 86_400.0) * _TWO_PI_OVER_DAY
        x = {
            "log_amount": math.log1p(amount),
            "card_log_count": math.log1p(n),
            "card_amount_ratio": min(ratio, 1e3),
            "card_amount_z": max(min(z, 50.0), -50.0),
            "card_log_seconds_since_prev": math.log1p(since),
            "card_merchant_new": merchant_new,
            "hour_sin": math.sin(angle),
            "hour_cos": math.cos(angle),
        }
        # Fold the event in (Welford), after the features were read.
        n += 1
        delta = amount - state.mean
        state.mean += delta / n
        state.m2 += delta * (amount - state.mean)
        state.count = n
        if ts > state.last_ts:
            state.last_ts = ts
        if merchant_new:
            if len(state.merchants) >= MAX_MERCHANTS_PER_CARD:
                del state.merchants[next(iter(state.merchants))]
            state.merchants[txn.merchant_id] = None
        return x
