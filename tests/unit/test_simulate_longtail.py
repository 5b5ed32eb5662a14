"""The long-tail world: reproducible, valid events, each fraud kind with the shape it promises."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest

from stream_scorer.events import Transaction
from stream_scorer.simulate_longtail import (
    DAY_S,
    LABEL_DELAY_MIN_S,
    LongTailConfig,
    LongTailSimulator,
)

N = 300_000
slow = pytest.mark.slow  # the 300,000 events of the world fixture: ~10 s for all its tests together
KINDS = {"compromised_terminal", "stolen_card", "amount_over_line", "card_testing", "account_takeover"}


@pytest.fixture(scope="module")
def world() -> tuple[LongTailSimulator, list[dict[str, Any]], list[str | None]]:
    sim = LongTailSimulator(seed=7)
    events, kinds = [], []
    for event in sim.events(N):
        events.append(event)
        kinds.append(sim.last_scenario)
    return sim, events, kinds


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["event_time"]).timestamp()


def test_same_seed_same_world_and_labels_do_not_change_it() -> None:
    small = LongTailConfig(n_cards=300, n_terminals=1_200)
    a = LongTailSimulator(small, seed=3)
    b = LongTailSimulator(small, seed=3)
    first = []
    for event in a.events(5_000):
        first.append(event)
        a.label_for(event)  # asking for labels must not move the events' generator
    assert first == b.take(5_000)
    assert first != LongTailSimulator(small, seed=4).take(5_000)


def test_a_seed_gives_the_same_world_in_every_process() -> None:
    # nothing may hang on the per-process hash seed of str (the iteration order of a set of them)
    code = (
        "from stream_scorer.simulate_longtail import LongTailConfig, LongTailSimulator;"
        "print(LongTailSimulator(LongTailConfig(n_cards=300, n_terminals=1_200), seed=3).take(3_000))"
    )
    worlds = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": h},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for h in ("1", "2")
    }
    assert len(worlds) == 1


@slow
def test_every_event_is_a_valid_transaction_in_event_time_order(world: Any) -> None:
    _, events, _ = world
    # The final contract allows amount 0 (card testing); until then this may refuse them.
    validate = Transaction.model_validate
    for event in events:
        validate(event)
    times = [e["event_time"] for e in events]
    assert times == sorted(times)  # one format, so the text sorts as the time
    assert len({e["transaction_id"] for e in events}) == len(events)
    assert any(e["amount"] == 0.0 for e in events)
    assert "scenario" not in str(sorted(events[0]))


@slow
def test_each_fraud_kind_appears_and_the_fraud_rate_is_in_band(world: Any) -> None:
    sim, events, kinds = world
    counts = Counter(k for k in kinds if k is not None)
    assert set(counts) == KINDS
    assert all(counts[k] >= 50 for k in KINDS), counts
    assert counts == sim.scenario_counts
    assert all(e["is_fraud"] == (k is not None) for e, k in zip(events, kinds, strict=True))
    rate = sum(counts.values()) / len(events)
    assert 0.004 <= rate <= 0.012, rate


@slow
def test_compromised_terminals_take_only_fraud_in_their_window(world: Any) -> None:
    sim, events, kinds = world
    first: dict[str, float] = {}
    for e, k in zip(events, kinds, strict=True):
        if k == "compromised_terminal":
            first.setdefault(e["merchant_id"], _ts(e))
    assert first
    for e in events:
        start = first.get(e["merchant_id"])
        if start is not None and _ts(e) >= start:
            # every later transaction there within the window is fraud (of some kind)
            assert _ts(e) > start + sim.config.compromise_days * DAY_S or e["is_fraud"], e
    # and the recorded windows agree: nothing genuine at a compromised terminal inside one
    windows = defaultdict(list)
    for merchant, start, end in sim.compromises:
        windows[merchant].append((start, end))
    for e in events:
        for start, end in windows.get(e["merchant_id"], ()):
            if start <= _ts(e) < end:
                assert e["is_fraud"]
    amounts = [e["amount"] for e, k in zip(events, kinds, strict=True) if k == "compromised_terminal"]
    assert statistics.median(amounts) < 100  # they look normal


@slow
def test_amount_over_the_line_is_always_fraud(world: Any) -> None:
    sim, events, kinds = world
    line = sim.config.amount_line
    over = [e for e, k in zip(events, kinds, strict=True) if k == "amount_over_line"]
    assert over and all(e["amount"] > line for e in over)
    assert not any(e["amount"] > line for e in events if not e["is_fraud"])
    genuine = sorted(e["amount"] for e in events if not e["is_fraud"])
    assert 10 <= genuine[len(genuine) // 2] <= 150
    assert genuine[int(0.999 * len(genuine))] > 0.6 * line  # genuine amounts come close to the line


@slow
def test_stolen_cards_buy_big_at_terminals_new_to_the_card(world: Any) -> None:
    _, events, kinds = world
    seen: dict[str, set[str]] = defaultdict(set)
    spent: dict[str, list[float]] = defaultdict(list)
    stolen_amounts, typical = [], []
    for e, k in zip(events, kinds, strict=True):
        card = e["card_id"]
        if k == "stolen_card":
            assert e["merchant_id"] not in seen[card], e
            if len(spent[card]) >= 5:
                stolen_amounts.append(e["amount"])
                typical.append(statistics.median(spent[card]))
        elif k is None:
            spent[card].append(e["amount"])
        seen[card].add(e["merchant_id"])
    assert len(stolen_amounts) >= 50
    ratio = statistics.median(a / t for a, t in zip(stolen_amounts, typical, strict=True))
    assert 3.0 <= ratio <= 8.0, ratio


@slow
def test_card_testing_is_tiny_online_bursts_minutes_apart(world: Any) -> None:
    _, events, kinds = world
    by_card: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e, k in zip(events, kinds, strict=True):
        if k == "card_testing":
            assert e["channel"] == "ecom"
            by_card[e["card_id"]].append(e)
    tiny = [e for es in by_card.values() for e in es if e["amount"] <= 2.0]
    large = [e for es in by_card.values() for e in es if e["amount"] > 2.0]
    assert len(tiny) > 10 * len(large) > 0
    assert any(e["amount"] == 0.0 for e in tiny)
    assert all(e["amount"] > 220 for e in large)
    gaps = [
        _ts(b) - _ts(a) for es in by_card.values() for a, b in pairwise(es)
        if a["amount"] <= 2.0 and b["amount"] <= 2.0
    ]
    assert statistics.median(gaps) < 600  # minutes apart


@slow
def test_account_takeover_uses_a_new_device_and_a_new_country(world: Any) -> None:
    _, events, kinds = world
    devices: dict[str, set[str]] = defaultdict(set)
    countries: dict[str, set[str]] = defaultdict(set)
    episodes: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    n = 0
    for e, k in zip(events, kinds, strict=True):
        card = e["card_id"]
        if k == "account_takeover":
            n += 1
            key = (card, e["device_id"])
            # what the card had used before the episode began
            before = episodes.setdefault(key, (set(devices[card]), set(countries[card])))
            assert e["device_id"] not in before[0], e
            assert e["country"] not in before[1], e
            assert e["channel"] == "ecom"
        devices[card].add(e["device_id"])
        countries[card].add(e["country"])
    assert n >= 50 and len(episodes) >= 10


@slow
def test_genuine_purchases_keep_the_cards_habits(world: Any) -> None:
    sim, events, kinds = world
    home_of = {card.card_id: card.country for card in sim.cards}
    home: dict[str, Counter[str]] = defaultdict(Counter)
    devices: dict[str, set[str]] = defaultdict(set)
    for e, k in zip(events, kinds, strict=True):
        if k is None:
            home[e["card_id"]][e["country"]] += 1
            devices[e["card_id"]].add(e["device_id"])
    # mostly at home: abroad only on trips and at a few foreign online shops
    assert sum(c[home_of[card]] for card, c in home.items()) >= 0.97 * sum(c.total() for c in home.values())
    assert sum(len(c) == 1 for c in home.values()) >= 0.6 * len(home)
    assert sum(len(d) <= 2 for d in devices.values()) >= 0.99 * len(devices)  # one or two devices
    assert all(len(d) <= 4 for d in devices.values())  # and maybe a new phone (or two)
    days = N / (5_000 * 3.0)
    per_card_day = [sum(c.values()) / days for c in home.values()]
    assert 2.0 <= statistics.mean(per_card_day) <= 4.0


@slow
def test_some_genuine_purchases_are_abroad_on_trips_and_online(world: Any) -> None:
    sim, events, kinds = world
    home_of = {card.card_id: card.country for card in sim.cards}
    genuine = [e for e, k in zip(events, kinds, strict=True) if k is None]
    abroad = [e for e in genuine if e["country"] != home_of[e["card_id"]]]
    assert 0.005 <= len(abroad) / len(genuine) <= 0.04, len(abroad) / len(genuine)
    assert all(e["country"] == sim.merchant_country[int(e["merchant_id"][5:])] for e in abroad)
    # online: about 2% of the genuine online purchases are at a foreign shop
    online = [e for e in genuine if e["channel"] == "ecom"]
    online_abroad = sum(e["country"] != home_of[e["card_id"]] for e in online) / len(online)
    assert 0.01 <= online_abroad <= 0.03, online_abroad
    # in shops: trips, each in one country for 2-10 days, by a few dozen cards a day
    shops: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in abroad:
        if e["channel"] != "ecom":
            shops[e["card_id"]].append(e)
    assert len(shops) >= 100
    close = [(a, b) for es in shops.values() for a, b in pairwise(es) if _ts(b) - _ts(a) < DAY_S]
    assert close and sum(a["country"] == b["country"] for a, b in close) >= 0.95 * len(close)
    spans, sizes = [], []  # of the runs of shop purchases abroad in one country, less than a day apart
    for es in shops.values():
        start = 0
        for i in range(1, len(es) + 1):
            if i == len(es) or es[i]["country"] != es[i - 1]["country"] or _ts(es[i]) - _ts(es[i - 1]) >= DAY_S:
                spans.append(_ts(es[i - 1]) - _ts(es[start]))
                sizes.append(i - start)
                start = i
    assert sum(span <= 10 * DAY_S for span in spans) >= 0.95 * len(spans)
    assert statistics.median(sizes) >= 3 and max(spans) >= 5 * DAY_S  # trips, not single purchases
    # a card on a trip still buys online at home
    travellers = set(shops)
    assert any(
        e["channel"] == "ecom" and e["country"] == home_of[e["card_id"]] for e in genuine if e["card_id"] in travellers
    )


@slow
def test_some_genuine_cards_switch_to_a_new_device_and_keep_it(world: Any) -> None:
    _, events, kinds = world
    first = {card.card_id: set(card.devices) for card in LongTailSimulator(seed=7).cards}  # as built
    later: dict[str, list[str]] = defaultdict(list)  # each card's genuine devices from its first new one on
    for e, k in zip(events, kinds, strict=True):
        card = e["card_id"]
        if k is None and (later[card] or e["device_id"] not in first[card]):
            later[card].append(e["device_id"])
    switched = {card: devices for card, devices in later.items() if devices}
    days = N / (5_000 * 3.0)
    assert 3 <= len(switched) <= 5_000 * days / 6_000 * 3, len(switched)  # about 1 card in 200 a month
    new_uses = sum(d not in first[card] for card, ds in switched.items() for d in ds)
    genuine = sum(k is None for k in kinds)
    assert 0 < new_uses / genuine < 0.01
    for card, devices in switched.items():
        # from its latest new phone on, the card uses no more devices than it had: it replaced one
        newest = max((d for d in devices if d not in first[card]), key=devices.index)
        assert len(set(devices[devices.index(newest) :])) <= len(first[card])
    assert sum(len({d for d in ds if d not in first[c]}) == 1 for c, ds in switched.items()) >= 0.8 * len(switched)
    # and it keeps being used: most switched cards use the new one again and again
    assert statistics.median(sum(d not in first[c] for d in ds) for c, ds in switched.items()) >= 3


@slow
def test_most_merchants_are_seen_about_once_a_day(world: Any) -> None:
    _, events, _ = world
    span_days = (_ts(events[-1]) - _ts(events[0])) / DAY_S
    counts = Counter(e["merchant_id"] for e in events)
    assert len(counts) >= 15_000
    assert 0.5 <= statistics.median(counts.values()) / span_days <= 3.0


def test_labels_come_at_least_a_week_late() -> None:
    sim = LongTailSimulator(LongTailConfig(n_cards=100, n_terminals=400), seed=1)
    delays = [sim.label_delay() for _ in range(5_000)]
    assert min(delays) >= LABEL_DELAY_MIN_S
    assert statistics.mean(delays) >= 7 * DAY_S
    assert 9 * DAY_S <= statistics.mean(delays) <= 11 * DAY_S  # the default mean is 10 days
    event = sim.next_event()
    label = sim.label_for(event)
    assert label["transaction_id"] == event["transaction_id"] and label["is_fraud"] == event["is_fraud"]
    assert _ts({"event_time": label["label_time"]}) - _ts(event) >= LABEL_DELAY_MIN_S - 0.001
    with pytest.raises(ValueError, match="7 days"):
        sim.label_delay(3 * DAY_S)


def test_events_without_a_count_cover_the_configured_days() -> None:
    sim = LongTailSimulator(LongTailConfig(n_cards=200, n_terminals=800, days=5), seed=2)
    events = list(sim.events())
    assert 0.8 * 200 * 3 * 5 <= len(events) <= 1.2 * 200 * 3 * 5
    assert (_ts(events[-1]) - sim.config.start.timestamp()) <= 5 * DAY_S
