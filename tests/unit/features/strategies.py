"""Hypothesis strategies for feature tests: out-of-order transaction streams with labels."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from stream_scorer.features.settings import FeatureSettings

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

GRACES = (0.0, 90.0, 300.0, 3_600.0)
SIGNALS = ("s1", "s2")
"""The producer signals the streams carry (settings may name some of them, or others)."""

settings_st = st.builds(
    FeatureSettings,
    grace_s=st.sampled_from(GRACES),
    risk_windows_days=st.sampled_from([(1,), (1, 7), (1, 7, 30), (2, 3), (30,)]),
    risk_prior_rate=st.sampled_from([0.0, 0.005, 0.5]),
    risk_prior_weight=st.sampled_from([0.0, 1.0, 20.0]),
    category_risk=st.sampled_from([(), ("mcc",), ("mcc", "country", "channel"), ("channel",)]),
    card_memory_slots=st.sampled_from([1, 2, 4]),
    signals=st.sampled_from([(), ("s1",), ("s2", "s1", "absent")]),
    bins=st.sampled_from(
        [(), ("log_amount",), ("log_amount", "card_amount_ratio", "card_24h_log_count")]
    ),
    bin_levels=st.sampled_from([(0.5,), (0.05, 0.5, 0.9), (0.25, 0.75, 0.99)]),
    bin_refresh_every=st.sampled_from([1, 3, 10]),
    bin_min_count=st.sampled_from([1, 5, 20]),
    evict_interval_s=st.just(1e-3),
)

_DEVICES = (None, "d0", "d1", "d2")
_COUNTRIES = (None, "FR", "DE", "US")
_CHANNELS = (None, "pos", "online")
_MCCS = (None, "5411", "5812", "7995", "")
_SIGNAL_VALUES = (0.0, -1.5, 2.0, 1e6, None, float("nan"), float("inf"))


def label_key(merchant: str, card: str, attributes: tuple[str | None, ...]) -> str:
    """The engine's label key of a transaction, written here independently: a JSON array of the
    merchant, the card, and the MCC, country and channel."""
    _device, country, channel, mcc = attributes
    return json.dumps([merchant, card, mcc, country, channel])


@st.composite
def streams(draw: st.DrawFn, max_items: int = 60) -> list[tuple[Any, ...]]:
    """A stream of transactions and labels: a clock moving by small and large steps, events that
    trail it by a little (within any grace) or a lot (late), and labels known before or after.

    Items: ``("txn", card, merchant, amount, ts, (device, country, channel, mcc), signals)`` and
    ``("label", key, is_fraud, event_ts, label_ts)``, ``key`` the transaction's label key (or,
    as from older state, its merchant id alone).
    """
    n_cards = draw(st.integers(1, 3))
    n_merchants = draw(st.integers(1, 5))
    clock = T0 + draw(st.integers(0, 86_400 * 4)) / 4
    items: list[tuple[Any, ...]] = []
    txns: list[tuple[str, float]] = []  # (label key, event time)
    for _ in range(draw(st.integers(1, max_items))):
        if txns and draw(st.integers(0, 4)) == 0:
            key, event_ts = draw(st.sampled_from(txns))
            how = draw(st.integers(0, 2))
            if how == 0:  # some time after its transaction
                delay = draw(st.sampled_from([0, 1, 30, 600, 3_600, 86_400, 20 * 86_400]))
                label_ts = event_ts + delay + draw(st.integers(0, 400)) / 4
            elif how == 1:  # exactly at the time of a transaction, to tie with later events
                label_ts = draw(st.sampled_from(txns))[1]
            else:  # exactly one grace (of those the settings draw) before the clock
                label_ts = clock - draw(st.sampled_from(GRACES))
            if draw(st.integers(0, 5)) == 0:  # the older form: the merchant alone
                key = json.loads(key)[0]
            items.append(("label", key, draw(st.booleans()), event_ts, label_ts))
            continue
        step = draw(st.sampled_from([0, 1, 15, 60, 600, 3_600, 6 * 3_600, 86_400, 3 * 86_400]))
        clock += step * draw(st.integers(0, 8)) / 4
        if draw(st.booleans()):
            lag = (
                draw(st.sampled_from([0, 0, 0, 10, 100, 400, 4_000, 90_000]))
                * draw(st.integers(0, 4))
                / 4
            )
        else:  # right at, just inside or just beyond a grace
            lag = draw(st.sampled_from(GRACES)) + draw(st.sampled_from([-0.25, 0.0, 0.25]))
        ts = clock - lag
        card = f"c{draw(st.integers(0, n_cards - 1))}"
        merchant = f"m{draw(st.integers(0, n_merchants - 1))}"
        amount = draw(st.sampled_from([0.0, 0.01, 1.0, 9.99, 25.0, 120.0, 980.5, 15_000.0, 3e6]))
        attributes = (
            draw(st.sampled_from(_DEVICES)),
            draw(st.sampled_from(_COUNTRIES)),
            draw(st.sampled_from(_CHANNELS)),
            draw(st.sampled_from(_MCCS)),
        )
        signals = {
            name: draw(st.sampled_from(_SIGNAL_VALUES))
            for name in SIGNALS
            if draw(st.integers(0, 3))
        }
        items.append(("txn", card, merchant, amount, ts, attributes, signals or None))
        txns.append((label_key(merchant, card, attributes), ts))
    return items


def label_merchant(key: str) -> str:
    """The merchant of a label key."""
    return str(json.loads(key)[0]) if key.startswith("[") else key


def run(engine: Any, stream: list[tuple[Any, ...]]) -> list[dict[str, float]]:
    """Drive ``engine`` through ``stream`` (including ``("evict", watermark)`` items)."""
    out = []
    for item in stream:
        if item[0] == "txn":
            out.append(engine.update_raw(*item[1:]))
        elif item[0] == "label":
            engine.observe_label(*item[1:])
        else:
            engine.evict(item[1])
    return out
