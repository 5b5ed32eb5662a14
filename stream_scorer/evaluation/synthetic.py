"""Synthetic Score streams with drifts injected at known points, for tests and benchmarks.

Scores are drawn, not computed: genuine transactions score ~ Beta(1, 60), fraud ~ Beta(4, 2),
so the metrics and detectors can be exercised at any scale without a model. Drifts:

- ``amount_shift``: from event ``a`` to ``b`` (``b=None``: for good), amounts are multiplied by
  ``amount_factor`` (data drift of ``amount`` and ``log_amount``);
- ``new_fraud``: from ``a`` to ``b``, an extra ``new_fraud_rate`` of transactions are fraud the
  model scores like genuine ones (a pattern it has not learned: performance and label-rate drift);
- ``challenger_offset``: from ``a`` to ``b``, the challenger scores ``offset`` higher
  (disagreement);
- ``broken_model``: from ``a`` to ``b``, the champion scores uniformly at random (prediction drift).

>>> s = list(synthetic_scores(3, seed=1))
>>> sorted(s[0])[:4], s[0]["label"] in (True, False)
(['amount', 'band', 'card_id', 'challenger_score'], True)
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from stream_scorer.evaluation.alerts import rfc3339

Span = tuple[int, int | None]


def _within(i: int, span: Span | None) -> bool:
    return span is not None and i >= span[0] and (span[1] is None or i < span[1])


def synthetic_scores(
    n: int,
    seed: int = 0,
    fraud_rate: float = 0.015,
    amount_shift: Span | None = None,
    amount_factor: float = 2.0,
    new_fraud: Span | None = None,
    new_fraud_rate: float = 0.02,
    challenger_offset: Span | None = None,
    offset: float = 0.3,
    broken_model: Span | None = None,
    events_per_second: float = 5.0,
    start: datetime | None = None,
    inline_labels: bool = True,
) -> Iterator[dict[str, Any]]:
    """``n`` Score records (dicts valid against ``events.Score``) with the drifts asked for."""
    rng = random.Random(seed)
    t = (start or datetime(2026, 1, 1, tzinfo=UTC)).timestamp()
    for i in range(n):
        t += rng.expovariate(events_per_second)
        fraud = rng.random() < fraud_rate
        unlearned = not fraud and _within(i, new_fraud) and rng.random() < new_fraud_rate
        p = rng.betavariate(4.0, 2.0) if fraud else rng.betavariate(1.0, 60.0)
        if _within(i, broken_model):
            p = rng.random()
        amount = math.exp(rng.gauss(3.3, 0.8)) * (3.0 if fraud else 1.0)
        if _within(i, amount_shift):
            amount *= amount_factor
        challenger = min(max(p + rng.gauss(0.0, 0.02), 0.0), 1.0)
        if _within(i, challenger_offset):
            challenger = min(challenger + offset, 1.0)
        yield {
            "schema_version": 1,
            "transaction_id": f"syn-{seed}-{i:09d}",
            "card_id": f"card-{rng.randrange(5000):05d}",
            "event_time": rfc3339(t),
            "score": p,
            "band": "decline" if p >= 0.8 else ("review" if p >= 0.5 else "approve"),
            "model_version": "synthetic/0",
            "latency_ms": 1.0,
            "reason_codes": [],
            "challenger_score": challenger,
            "challenger_version": "synthetic-challenger/0",
            "label": (fraud or unlearned) if inline_labels else None,
            "features": {
                "log_amount": math.log1p(amount),
                "card_amount_z": rng.gauss(0.0, 1.0) + (2.0 if fraud else 0.0),
            },
            "amount": round(max(amount, 0.01), 2),
        }
