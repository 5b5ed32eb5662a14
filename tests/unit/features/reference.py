"""A brute-force reference of every feature, computed from the raw list of events seen so far.

It follows the documented semantics with no state, no buckets in memory and no cleverness: for each
event it scans everything before it. Slow on purpose; the engine must agree with it.

A stream is a list of items, in processing order (see :mod:`.strategies`):

* ``("txn", card, merchant, amount, ts[, (device, country, channel, mcc)[, signals]])``
* ``("label", key, is_fraud, event_ts, label_ts)``, ``key`` a JSON array ``[merchant, card, mcc,
  country, channel]`` or a merchant id alone.

What the engine keeps in rings and sketches, the reference keeps as plain lists of everything:

* risk: every label of an entity with the time it became known; a window of ``w`` days read at
  ``t`` counts the labels known in the days ``day(t) - w + 1 .. day(t)``, but never one known at
  or after ``t``: the event's own day only when every label of the entity known so far was known
  before ``t``, else up to the day before. Days older than the longest window (+1) before the
  latest label's day are gone (the ring has moved on).
* novelty: per card and attribute, the distinct values it remembers, first in first out.
* bins: every value of a binned feature; at each refresh, the edge of level ``q`` is the lower
  bound of the log-bucket that holds the value of rank ``floor(q n)``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from stream_scorer.features.catalog import (
    CARD_WINDOWS,
    MEAN_FLOOR,
    MERCHANT_WINDOWS,
    NO_PREVIOUS_S,
    RATIO_CLIP,
    STD_FLOOR,
    Z_CLIP,
    level_tag,
)
from stream_scorer.features.settings import FeatureSettings

DAY_S = 86_400.0
ATTRIBUTES = ("device", "country", "channel", "mcc")
SKETCH_RESOLUTION = 0.005


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
    # (known from, is_fraud) per entity: "c:<card>", "m:<merchant>", "<attribute>=<value>"
    labels: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    remembered: dict[tuple[str, str], list[str]] = defaultdict(list)  # (card, attribute) -> values
    home: dict[str, str] = {}
    binned: dict[str, list[float]] = {f: [] for f in settings.bins}
    edges: dict[str, list[float]] = {f: [math.inf] * len(settings.bin_levels) for f in settings.bins}
    refreshed_at: dict[str, int] = dict.fromkeys(settings.bins, 0)
    out = []
    late_events = 0
    for item in stream:
        if item[0] == "label":
            _, key, is_fraud, event_ts, label_ts = item
            known = max(event_ts, label_ts)
            parts = json.loads(key) if key.startswith("[") else [key]
            labels[f"m:{parts[0]}"].append((known, is_fraud))
            if len(parts) == 5:
                _, lcard, mcc, country, channel = parts
                if card_events[lcard]:  # a card never seen has no risk to learn
                    labels[f"c:{lcard}"].append((known, is_fraud))
                for attr, value in (("mcc", mcc), ("country", country), ("channel", channel)):
                    if value and attr in settings.category_risk:
                        labels[f"{attr}={value}"].append((known, is_fraud))
            continue
        _, card, merchant, amount, ts, *rest = item
        attributes = rest[0] if rest else (None, None, None, None)
        signals = rest[1] if len(rest) > 1 else None
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
            ref = max(mean, MEAN_FLOOR)  # a card of zero amounts so far has no habit to divide by
            x["card_amount_ratio"] = min(amount / ref, RATIO_CLIP)
            z = (amount - mean) / max(std, STD_FLOOR * ref)
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

        # What the card has used before: new against a habit of the same attribute only.
        for attr, value in zip(ATTRIBUTES, attributes, strict=True):
            if value is None:
                x[f"card_{attr}_new"] = 0.0
                continue
            values = remembered[card, attr]
            x[f"card_{attr}_new"] = 1.0 if values and value not in values else 0.0
            if value not in values:
                values.append(value)
                del values[: -settings.card_memory_slots]
        country = attributes[1]
        if country is None:
            x["card_cross_border"] = 0.0
        else:
            x["card_cross_border"] = 0.0 if home.setdefault(card, country) == country else 1.0
        risk(x, "card", labels[f"c:{card}"], ts, settings)

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
        risk(x, "merchant", labels[f"m:{merchant}"], ts, settings)
        values_of = dict(zip(ATTRIBUTES, attributes, strict=True))
        for attr in settings.category_risk:
            value = values_of[attr]
            risk(x, attr, labels[f"{attr}={value}"] if value else [], ts, settings)

        for name in settings.signals:
            v = (signals or {}).get(name)
            ok = v is not None and math.isfinite(v)
            x[f"signal_{name}"] = v if ok else 0.0
            x[f"signal_{name}_missing"] = 0.0 if ok else 1.0

        # Time of day and of week, from the real event time.
        when = datetime.fromtimestamp(ts, UTC)
        day = (ts % 86_400.0) / 86_400.0
        week = (when.weekday() + day) / 7.0
        x["hour_sin"] = math.sin(2 * math.pi * day)
        x["hour_cos"] = math.cos(2 * math.pi * day)
        x["dow_sin"] = math.sin(2 * math.pi * week)
        x["dow_cos"] = math.cos(2 * math.pi * week)

        # Quantile indicators against the edges as they stood, then the value joins the sketch.
        levels = sorted(settings.bin_levels)
        for feature in settings.bins:
            v = x[feature]
            for q, edge in zip(levels, edges[feature], strict=True):
                x[f"{feature}_ge_q{level_tag(q)}"] = 1.0 if v >= edge else 0.0
            seen = binned[feature]
            seen.append(v)
            n = len(seen)
            if n >= settings.bin_min_count and n - refreshed_at[feature] >= settings.bin_refresh_every:
                refreshed_at[feature] = n
                ranked = sorted(seen)
                edges[feature] = [sketch_floor(ranked[math.floor(q * n)]) for q in levels]
        late_events += card_late or merchant_late
        out.append(x)
    return out, late_events


def risk(
    x: dict[str, float],
    prefix: str,
    known: list[tuple[float, bool]],
    ts: float,
    settings: FeatureSettings,
) -> None:
    """The fraud rates of one entity at ``ts`` from all its labels ``(known from, is_fraud)``."""
    pw, prior = settings.risk_prior_weight, settings.risk_prior_rate
    windows = sorted(set(settings.risk_windows_days))
    if known:
        last = max(t for t, _ in known)
        latest_day = bucket(last, DAY_S)
        day = bucket(ts, DAY_S)
        own_day = all(t < ts for t, _ in known)
        newest = day if own_day else day - 1
        oldest_kept = latest_day - max(windows)  # the ring keeps max(windows) + 1 days
    for w in windows:
        used = []
        if known:
            lo = max(day - w + 1, oldest_kept)
            used = [(t, f) for t, f in known if lo <= bucket(t, DAY_S) <= newest]
            assert all(t < ts for t, _ in used), "the reference itself saw a label too early"
        n, frauds = len(used), sum(f for _, f in used)
        x[f"{prefix}_risk_{w}d_rate"] = (frauds + prior * pw) / (n + pw) if n or pw else 0.0
        x[f"{prefix}_risk_{w}d_log_labels"] = math.log1p(n)


def _g(v: float) -> float:
    return math.log1p(v) if v >= 0.0 else -math.log1p(-v)


def sketch_floor(v: float) -> float:
    """The lower bound of the sketch's log-bucket of ``v`` (width 0.005 in sign(v) log1p|v|)."""
    u = math.floor(_g(v) / SKETCH_RESOLUTION) * SKETCH_RESOLUTION
    return math.expm1(u) if u >= 0.0 else -math.expm1(-u)
