"""A card's memory of devices, countries, channels and MCCs: what is new, and what is cross-border."""

from __future__ import annotations

import pytest

from stream_scorer.features import FeatureEngine
from stream_scorer.features.novelty import ATTRIBUTES, CardMemory, value_hash
from stream_scorer.features.settings import FeatureSettings
from tests.unit.features.strategies import T0

NAMES = ("card_device_new", "card_country_new", "card_channel_new", "card_mcc_new")


def update(m: CardMemory, buf: bytearray, values: tuple[str | None, ...]) -> dict[str, float]:
    x: dict[str, float] = {}
    before = bytes(buf)
    m.update(buf, 0, values, x)
    if all(v is None for v in values):
        assert bytes(buf) == before, "an event without attributes changes nothing"
    assert set(x) == {*NAMES, "card_cross_border"}
    return x


def new(x: dict[str, float]) -> tuple[float, ...]:
    return tuple(x[n] for n in NAMES)


def test_layout() -> None:
    m = CardMemory(slots=4)
    assert m.size == 4 * 4 * len(ATTRIBUTES) + 4 + len(ATTRIBUTES)
    assert m.describe() != CardMemory(slots=3).describe()
    assert value_hash("") != 0 and value_hash("x") == value_hash("x")
    with pytest.raises(ValueError):
        CardMemory(slots=0)


def test_the_first_event_is_new_in_nothing_and_a_change_is_new() -> None:
    m = CardMemory(slots=2)
    buf = bytearray(m.size)
    assert new(update(m, buf, ("d1", "FR", "pos", "5411"))) == (0.0, 0.0, 0.0, 0.0)
    assert new(update(m, buf, ("d1", "FR", "pos", "5411"))) == (0.0, 0.0, 0.0, 0.0)
    assert new(update(m, buf, ("d2", "FR", "online", "5411"))) == (1.0, 0.0, 1.0, 0.0)
    assert new(update(m, buf, ("d1", "FR", "pos", "5411"))) == (0.0, 0.0, 0.0, 0.0)  # both kept


def test_absent_is_not_new_and_a_first_value_later_is_a_habit_not_news() -> None:
    m = CardMemory(slots=2)
    buf = bytearray(m.size)
    update(m, buf, (None, "FR", None, None))
    assert new(update(m, buf, (None, None, None, None))) == (0.0,) * 4
    x = update(m, buf, ("d1", "FR", "pos", "5411"))  # the first device, channel, MCC it shows
    assert new(x) == (0.0, 0.0, 0.0, 0.0)
    assert new(update(m, buf, ("d2", None, None, None))) == (1.0, 0.0, 0.0, 0.0)


def test_the_memory_is_first_in_first_out() -> None:
    m = CardMemory(slots=2)
    buf = bytearray(m.size)
    seq = ["a", "b", "a", "c", "a", "b"]
    got = [update(m, buf, (v, None, None, None))["card_device_new"] for v in seq]
    # a, b remembered; a again; c replaces a (the first in); a is new again, replacing b; b new
    assert got == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0]


def test_cross_border_is_against_the_first_country() -> None:
    m = CardMemory(slots=1)
    buf = bytearray(m.size)
    assert update(m, buf, (None, None, None, None))["card_cross_border"] == 0.0
    assert update(m, buf, (None, "FR", None, None))["card_cross_border"] == 0.0
    x = update(m, buf, (None, "DE", None, None))
    assert x["card_cross_border"] == 1.0 and x["card_country_new"] == 1.0
    x = update(m, buf, (None, "DE", None, None))  # DE is remembered, still abroad
    assert x["card_cross_border"] == 1.0 and x["card_country_new"] == 0.0
    assert update(m, buf, (None, "FR", None, None))["card_cross_border"] == 0.0
    assert update(m, buf, (None, None, None, None))["card_cross_border"] == 0.0


def test_cards_have_their_own_memory_in_the_engine() -> None:
    eng = FeatureEngine(FeatureSettings(card_memory_slots=2))
    eng.update_raw("c1", "m", 1.0, T0, ("d1", "FR", "pos", "5411"))
    x = eng.update_raw("c2", "m", 1.0, T0 + 1, ("d2", "DE", "online", "7995"))
    assert new(x) == (0.0,) * 4 and x["card_cross_border"] == 0.0
    x = eng.update_raw("c1", "m", 1.0, T0 + 2, ("d2", "DE", "online", "7995"))
    assert new(x) == (1.0,) * 4 and x["card_cross_border"] == 1.0
    restored = FeatureEngine.restore(eng.snapshot(), FeatureSettings(card_memory_slots=2))
    a = eng.update_raw("c1", "m", 1.0, T0 + 3, ("d3", "FR", "pos", "5411"))
    b = restored.update_raw("c1", "m", 1.0, T0 + 3, ("d3", "FR", "pos", "5411"))
    assert a == b and new(a) == (1.0, 0.0, 0.0, 0.0)
