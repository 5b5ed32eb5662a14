"""Hypothesis strategies for feature tests: out-of-order transaction streams with labels."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from stream_scorer.features.settings import FeatureSettings

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

GRACES = (0.0, 90.0, 300.0, 3_600.0)

settings_st = st.builds(
    FeatureSettings,
    grace_s=st.sampled_from(GRACES),
    merchant_risk_window_s=st.sampled_from([86_400.0, 7 * 86_400.0, 30 * 86_400.0]),
    merchant_risk_bucket_s=st.sampled_from([3_600.0, 86_400.0]),
    evict_interval_s=st.just(1e-3),
)


@st.composite
def streams(draw: st.DrawFn, max_items: int = 60) -> list[tuple[Any, ...]]:
    """A stream of transactions and labels: a clock moving by small and large steps, events that
    trail it by a little (within any grace) or a lot (late), and labels known before or after."""
    n_cards = draw(st.integers(1, 3))
    n_merchants = draw(st.integers(1, 5))
    clock = T0 + draw(st.integers(0, 86_400 * 4)) / 4
    items: list[tuple[Any, ...]] = []
    txn_times: list[tuple[str, float]] = []
    for _ in range(draw(st.integers(1, max_items))):
        if txn_times and draw(st.integers(0, 4)) == 0:
            merchant, event_ts = draw(st.sampled_from(txn_times))
            how = draw(st.integers(0, 2))
            if how == 0:  # some time after its transaction
                delay = draw(st.sampled_from([0, 1, 30, 600, 3_600, 86_400, 20 * 86_400]))
                label_ts = event_ts + delay + draw(st.integers(0, 400)) / 4
            elif how == 1:  # exactly at the time of a transaction, to tie with later events
                label_ts = draw(st.sampled_from(txn_times))[1]
            else:  # exactly one grace (of those the settings draw) before the clock
                label_ts = clock - draw(st.sampled_from(GRACES))
            items.append(("label", merchant, draw(st.booleans()), event_ts, label_ts))
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
        amount = draw(st.sampled_from([0.01, 1.0, 9.99, 25.0, 120.0, 980.5, 15_000.0, 3e6]))
        items.append(("txn", card, merchant, amount, ts))
        txn_times.append((merchant, ts))
    return items


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
