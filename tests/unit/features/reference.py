"""A brute-force reference of every feature, computed from the raw list of events seen so far.

It follows the documented semantics with no state, no buckets in memory and no cleverness: for each
event it scans everything before it. Slow on purpose; the engine must agree with it.

A stream is a list of items, in processing order:

* ``("txn", card, merchant, amount, ts)``
* ``("label", merchant, is_fraud, event_ts, label_ts)``
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from stream_scorer.features.catalog import (
    CARD_WINDOWS,
    MERCHANT_WINDOWS,
    NO_PREVIOUS_S,
    RATIO_CLIP,
    STD_FLOOR,
    Z_CLIP,
)
from stream_scorer.features.settings import FeatureSettings


def bucket(ts: float, width: float) -> int:
    return math.floor(ts / width)


def in_window(te: float, t: float, width: float, bucket_s: float) -> bool:
    """Whether ``te`` is in the ``width`` window read at ``t`` (whole buckets, up to t's own)."""
    k = bucket(t, bucket_s)
    return k - round(width / bucket_s) < bucket(te, bucket_s) <= k


def reference_features(
    stream: list[tuple[Any, ...]], settings: FeatureSettings
) -> tuple[list[dict[str, float]], int]:
    """The features of every transaction of ``stream``, and how many were late."""
    grace = settings.grace_s
    card_events: dict[str, list[tuple[float, float, str]]] = defaultdict(list)  # (t_eff, amount, m)
    merchant_events: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (t_eff, amount)
    labels: dict[str, list[tuple[float, bool]]] = defaultdict(list)  # (known from, is_fraud)
    out = []
    late_events = 0
    for item in stream:
        if item[0] == "label":
            _, merchant, is_fraud, event_ts, label_ts = item
            labels[merchant].append((max(event_ts, label_ts), is_fraud))
            continue
        _, card, merchant, amount, ts = item
        x: dict[str, float] = {"log_amount": math.log1p(amount)}

        # Card: the effective time (late events move up to latest - grace).
        past = card_events[card]
        latest = max((e[0] for e in past), default=None)
        t = ts if latest is None else max(ts, latest - grace)
        card_late = latest is not None and ts < latest - grace
        for name, width, bucket_s in CARD_WINDOWS:
            amounts = [a for te, a, _ in past if in_window(te, t, width, bucket_s)]
            x[f"card_{name}_log_count"] = math.log1p(len(amounts))
            x[f"card_{name}_log_sum"] = math.log1p(sum(amounts))
            x[f"card_{name}_log_mean"] = math.log1p(sum(amounts) / len(amounts)) if amounts else 0.0
            x[f"card_{name}_log_max"] = math.log1p(max(amounts)) if amounts else 0.0
        x["card_log_count"] = math.log1p(len(past))
        if past:
            amounts = [a for _, a, _ in past]
            mean = sum(amounts) / len(amounts)
            std = math.sqrt(sum((a - mean) ** 2 for a in amounts) / len(amounts))
            since = min(max(t - latest, 0.0), NO_PREVIOUS_S)
            x["card_log_seconds_since_prev"] = math.log1p(since)
            x["card_amount_ratio"] = min(amount / mean, RATIO_CLIP)
            z = (amount - mean) / max(std, STD_FLOOR * mean)
            x["card_amount_z"] = min(max(z, -Z_CLIP), Z_CLIP)
        else:
            x["card_log_seconds_since_prev"] = math.log1p(NO_PREVIOUS_S)
            x["card_amount_ratio"] = 1.0
            x["card_amount_z"] = 0.0
        recent = {m for te, _, m in past if in_window(te, t, 86_400.0, 3_600.0)}
        x["card_24h_log_distinct_merchants"] = math.log1p(len(recent))
        known = any(m == merchant and in_window(te, t, 7 * 86_400.0, 3_600.0) for te, _, m in past)
        x["card_merchant_new"] = 0.0 if known else 1.0
        past.append((t, amount, merchant))

        # Merchant: its own clock.
        mpast = merchant_events[merchant]
        mlatest = max((e[0] for e in mpast), default=None)
        tm = ts if mlatest is None else max(ts, mlatest - grace)
        merchant_late = mlatest is not None and ts < mlatest - grace
        for name, width, bucket_s in MERCHANT_WINDOWS:
            amounts = [a for te, a in mpast if in_window(te, tm, width, bucket_s)]
            x[f"merchant_{name}_log_count"] = math.log1p(len(amounts))
            x[f"merchant_{name}_log_mean"] = (
                math.log1p(sum(amounts) / len(amounts)) if amounts else 0.0
            )
        mpast.append((tm, amount))
        # Labels known strictly before the event; for a late event, only those known before the
        # bucket of its real time (the window itself is read at the effective time).
        rw, rb = settings.merchant_risk_window_s, settings.merchant_risk_bucket_s
        if merchant_late:
            used = [
                f
                for lt, f in labels[merchant]
                if in_window(lt, tm, rw, rb) and bucket(lt, rb) < bucket(ts, rb)
            ]
        else:
            used = [f for lt, f in labels[merchant] if in_window(lt, tm, rw, rb) and lt < ts]
        prior_w = settings.merchant_risk_prior_weight
        x["merchant_risk_rate"] = (sum(used) + settings.merchant_risk_prior_rate * prior_w) / (
            len(used) + prior_w
        )
        x["merchant_risk_log_labels"] = math.log1p(len(used))

        # Time of day and of week, from the real event time.
        when = datetime.fromtimestamp(ts, UTC)
        day = (ts % 86_400.0) / 86_400.0
        week = (when.weekday() + day) / 7.0
        x["hour_sin"] = math.sin(2 * math.pi * day)
        x["hour_cos"] = math.cos(2 * math.pi * day)
        x["dow_sin"] = math.sin(2 * math.pi * week)
        x["dow_cos"] = math.cos(2 * math.pi * week)
        late_events += card_late or merchant_late
        out.append(x)
    return out, late_events
