"""The feature catalog: every feature's stable name and a one-line description, in output order.

The README's feature table is generated from :data:`FEATURES`, and the engine's ``names`` are its
keys, so a renamed or added feature shows up in both or the check fails.
"""

from __future__ import annotations

from stream_scorer.features.novelty import ATTRIBUTES
from stream_scorer.features.settings import FeatureSettings

MINUTE_S = 60.0
HOUR_S = 3_600.0
DAY_S = 86_400.0

CARD_WINDOWS: tuple[tuple[str, float, float], ...] = (
    ("10m", 10 * MINUTE_S, MINUTE_S),
    ("1h", HOUR_S, 5 * MINUTE_S),
    ("24h", DAY_S, HOUR_S),
    ("7d", 7 * DAY_S, 12 * HOUR_S),
)
"""Card windows as ``(name, width_s, bucket_s)``: 1-min buckets for 10 min, coarser beyond."""

MERCHANT_WINDOWS: tuple[tuple[str, float, float], ...] = CARD_WINDOWS[1:]
"""Merchant windows, with the same buckets as the card's."""

MERCHANT_MEMORY_BUCKET_S = HOUR_S
"""Resolution of a card's merchant memory (distinct merchants in 24 h, new merchant in 7 d)."""
DISTINCT_MERCHANTS_HOURS = 24
NEW_MERCHANT_HOURS = 7 * 24

NO_PREVIOUS_S = 30 * DAY_S
"""Seconds since the previous transaction reported for a card without one (and the clip)."""
RATIO_CLIP = 100.0
Z_CLIP = 10.0
STD_FLOOR = 0.05
MEAN_FLOOR = 0.01
"""The amount ratio and z-score divide by a mean of at least 0.01: a card of zero amounts so far
(authorizations, card testing) has no habit to divide by."""
"""The z-score divides by at least 5% of the mean, so that steady cards do not explode it."""


def feature_catalog(settings: FeatureSettings | None = None) -> dict[str, str]:
    """Feature name -> one-line description, in the engine's output order, for ``settings``."""
    s = settings or FeatureSettings()
    f: dict[str, str] = {"log_amount": "log1p(amount)"}
    for name, _, bucket in CARD_WINDOWS:
        span = f"card's transactions in the last {name} (event time, {bucket / 60:g}-min buckets)"
        f[f"card_{name}_log_count"] = f"log1p(count of the {span})"
        f[f"card_{name}_log_sum"] = f"log1p(amount sum of the {span})"
        f[f"card_{name}_log_mean"] = f"log1p(mean amount of the {span}); 0 when none"
        f[f"card_{name}_log_max"] = f"log1p(max amount of the {span}); 0 when none"
    f["card_log_count"] = "log1p(transactions of the card since it was first seen or last evicted)"
    f["card_log_seconds_since_prev"] = (
        "log1p(seconds since the card's latest earlier event time), clipped to [0, 30 d]; "
        "30 d for a new card, 0 for out-of-order events"
    )
    f["card_amount_ratio"] = (
        "amount / the card's long-run mean amount (at least 0.01), clipped to [0, 100]; "
        "1 for a new card"
    )
    f["card_amount_z"] = (
        "(amount - long-run mean) / max(std, 5% of mean), clipped to [-10, 10]; 0 for a new card"
    )
    f["card_24h_log_distinct_merchants"] = (
        "log1p(distinct merchants of the card in the last 24 h, 1-h buckets)"
    )
    f["card_merchant_new"] = (
        "1 if the card has no transaction at this merchant in the last 7 d, else 0"
    )
    for attr in ATTRIBUTES:
        f[f"card_{attr}_new"] = (
            f"1 if the event's {attr} is not among the last {s.card_memory_slots} distinct ones the "
            f"card remembers, first in first out (0 when absent, or when the card has shown no "
            f"{attr} yet)"
        )
    f["card_cross_border"] = "1 if the event's country is not the first country the card was seen in"
    f.update(_risk("card", "the card", s))
    for name, _, bucket in MERCHANT_WINDOWS:
        span = f"merchant's transactions in the last {name} ({bucket / 60:g}-min buckets)"
        f[f"merchant_{name}_log_count"] = f"log1p(count of the {span})"
        f[f"merchant_{name}_log_mean"] = f"log1p(mean amount of the {span}); 0 when none"
    f.update(_risk("merchant", "the merchant", s))
    for attr in s.category_risk:
        f.update(_risk(attr, f"the event's {attr} value (per partition)", s))
    for name in s.signals:
        f[f"signal_{name}"] = f"producer signal {name!r}, as sent (0 when missing)"
        f[f"signal_{name}_missing"] = f"1 if producer signal {name!r} was absent or null"
    f["hour_sin"] = "sin of the time of day (UTC)"
    f["hour_cos"] = "cos of the time of day (UTC)"
    f["dow_sin"] = "sin of the day of the week (UTC, Monday = 0)"
    f["dow_cos"] = "cos of the day of the week (UTC, Monday = 0)"
    for feature in s.bins:
        for q in sorted(s.bin_levels):
            f[f"{feature}_ge_q{level_tag(q)}"] = (
                f"1 if {feature} is at or above its {100 * q:.4g}th percentile so far "
                "(streaming sketch of the whole stream with the merchant stage, else per partition)"
            )
    return f


def _risk(prefix: str, whose: str, s: FeatureSettings) -> dict[str, str]:
    out = {}
    for w in sorted(set(s.risk_windows_days)):
        out[f"{prefix}_risk_{w}d_rate"] = (
            f"fraud share of the labels of {whose} that became known in the last {w} d, before "
            f"the event; smoothed by {s.risk_prior_weight:g} labels at {s.risk_prior_rate:g}"
        )
        out[f"{prefix}_risk_{w}d_log_labels"] = f"log1p(labels behind {prefix}_risk_{w}d_rate)"
    return out


def base_feature_names(settings: FeatureSettings) -> tuple[str, ...]:
    """The features that can be binned: all but the bin indicators themselves."""
    bins = settings.model_copy(update={"bins": ()})
    return tuple(feature_catalog(bins))


def level_tag(q: float) -> str:
    """A quantile level in a feature name: ``0.99 -> "99"``, ``0.995 -> "99_5"``."""
    return f"{100 * q:.4g}".replace(".", "_")


FEATURES: dict[str, str] = feature_catalog()
"""Feature name -> one-line description, in the engine's output order, with default settings."""

FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)


def markdown_table() -> str:
    """The README's feature table, generated from :data:`FEATURES`.

    >>> print(markdown_table().splitlines()[2])
    | `log_amount` | log1p(amount) |
    """
    rows = ["| Feature | Description |", "|---|---|"]
    rows += [f"| `{name}` | {description} |" for name, description in FEATURES.items()]
    return "\n".join(rows)
