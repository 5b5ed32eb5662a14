"""What a card has used before: its devices, countries, channels and MCCs, and what is new to it.

Account takeovers and stolen card numbers show up as a device, a country, a channel or a kind of
merchant the card has not used. A card remembers the last few distinct values of each attribute
(32-bit CRC-32 hashes, ``0`` = free slot) in a region of its buffer, and an event reads, before it
is folded in, whether its value is new to the card. The first country a card is seen in is kept
apart as its home: a purchase from another country is cross-border.

An attribute the event does not carry reads 0 (not new) and changes nothing: absent is not new.
A value is new only against a habit of the same attribute: the first device (country, ...) a card
shows is not new, whether it comes on the card's first event or later (a producer that starts
sending ``device_id`` does not make every card's device new). So a card's first event is new in
nothing. The memory is first in, first out: a value comes back as new once ``slots`` other
distinct values came after it.

Layout of the region: for each attribute its slots of ``uint32`` (the home country first, kept),
then one ``uint8`` per attribute: where the next new value goes (a ring over the slots).

>>> m = CardMemory(slots=2)
>>> buf = bytearray(m.size)
>>> x = {}; m.update(buf, 0, ("d1", "FR", "pos", "5411"), x); x["card_device_new"], x["card_cross_border"]
(0.0, 0.0)
>>> x = {}; m.update(buf, 0, ("d2", "DE", "pos", "5411"), x); x["card_device_new"], x["card_cross_border"]
(1.0, 1.0)
"""

from __future__ import annotations

import zlib

ATTRIBUTES = ("device", "country", "channel", "mcc")
"""The transaction fields a card remembers, in the order :meth:`CardMemory.update` takes them."""


def value_hash(value: str) -> int:
    """A stable 32-bit id of a value (never 0, which marks a free slot)."""
    return zlib.crc32(value.encode()) or 1


class CardMemory:
    """Novelty of a card's device, country, channel and MCC, on a region of the card's buffer."""

    def __init__(self, slots: int = 4) -> None:
        if slots < 1 or slots > 255:
            raise ValueError("slots must be in 1..255")
        self.slots = slots
        n = len(ATTRIBUTES)
        self.home_at = 4 * slots * n  # offset of the home country (after the attribute slots)
        self.ptr_at = self.home_at + 4
        self.size = self.ptr_at + n
        self.names = (*(f"card_{a}_new" for a in ATTRIBUTES), "card_cross_border")

    def describe(self) -> str:
        """A string that changes whenever the layout does (part of the state fingerprint)."""
        return f"novelty[{','.join(ATTRIBUTES)}x{self.slots}+home]"

    def update(
        self, buf: bytearray, off: int, values: tuple[str | None, ...], x: dict[str, float]
    ) -> None:
        """Write whether each of ``values`` (in :data:`ATTRIBUTES` order) is new to the card, and
        whether the purchase is cross-border, into ``x``; then remember the values."""
        slots = self.slots
        words = memoryview(buf)[off : off + self.ptr_at].cast("I")
        home_word = self.home_at // 4
        for i, (name, value) in enumerate(zip(self.names, values, strict=False)):
            if value is None:
                x[name] = 0.0
                continue
            h = value_hash(value)
            base = i * slots
            seen = words[base : base + slots]
            if h in seen:
                x[name] = 0.0
                continue
            x[name] = 1.0 if seen[0] else 0.0  # slot 0 is filled first: any habit at all
            p = off + self.ptr_at + i
            slot = buf[p]
            words[base + slot] = h
            buf[p] = (slot + 1) % slots
        country = values[1]
        if country is None:
            x["card_cross_border"] = 0.0
            return
        h = value_hash(country)
        home = words[home_word]
        if home == 0:
            words[home_word] = h
            x["card_cross_border"] = 0.0
        else:
            x["card_cross_border"] = 0.0 if h == home else 1.0
