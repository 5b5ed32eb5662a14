"""Bucketed event-time windows: which buckets a window reads, and how many a ring must keep.

A window of width ``W`` with buckets of ``b`` seconds, read at event time ``t``, covers the
``W / b`` buckets ending with the bucket of ``t`` (a "sawtooth" window: between ``W - b`` and ``W``
seconds of history, plus the part of ``t``'s own bucket already seen). A ring keeps enough older
buckets that an event trailing the entity's latest time by up to the grace still reads its whole
window: ``W / b + ceil(grace / b)`` slots (the bucket of ``latest - grace`` is at most
``ceil(grace / b)`` before the bucket of ``latest``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Level:
    """One window of a ring: its name, width, bucket, span (buckets read) and slots (kept)."""

    name: str
    width_s: float
    bucket_s: float
    span: int
    slots: int
    offset: int


def bucket_of(ts: float, bucket_s: float) -> int:
    """The index of the bucket that holds event time ``ts`` (floor division, also below zero)."""
    return int(ts // bucket_s)


def make_levels(specs: tuple[tuple[str, float, float], ...], grace_s: float) -> tuple[Level, ...]:
    """Lay out ``(name, width_s, bucket_s)`` windows one after the other in a flat array."""
    levels = []
    offset = 0
    for name, width_s, bucket_s in specs:
        span = round(width_s / bucket_s)
        if span * bucket_s != width_s:
            raise ValueError(
                f"window {name}: {width_s} s is not a whole number of {bucket_s} s buckets"
            )
        slots = span + math.ceil(grace_s / bucket_s)
        levels.append(Level(name, float(width_s), float(bucket_s), span, slots, offset))
        offset += slots
    return tuple(levels)


ZEROS = bytes(4096)
"""Zero bytes to blank ring slots with one slice assignment."""


def clear_ranges(head: int, new_head: int, slots: int) -> tuple[tuple[int, int], ...]:
    """The slot ranges ``[a, b)`` that a ring of ``slots`` reuses when its head moves on.

    >>> clear_ranges(10, 12, 5), clear_ranges(10, 13, 4), clear_ranges(0, 9, 4)
    (((1, 3),), ((3, 4), (0, 2)), ((0, 4),))
    """
    moved = new_head - head
    if moved >= slots:
        return ((0, slots),)
    a = (head + 1) % slots
    b = a + moved
    if b <= slots:
        return ((a, b),)
    return ((a, slots), (0, b - slots))
