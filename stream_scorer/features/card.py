"""A card's state in one ``bytearray``: windows, long-run amount statistics and merchant memory.

The in-memory form is the serialized form, so a changelog value is a copy of the buffer and the
memory a card costs is what you measure (876 bytes with the default settings).
Layout, little-endian:

====================  ==========================================================================
``<dddd`` header      latest event time, count, running mean and M2 of amounts (Welford)
``uint16[B]``         per-bucket transaction counts of every window ring (saturating at 65535)
``float32[2B]``       per-bucket amount sums, then per-bucket max amounts
``uint32[3K]``        merchant memory: CRC-32 of the merchant id, latest hour seen, the hour
                      seen before that (``0`` = none)
====================  ==========================================================================

Features are read from the state as it stood before the event, then the event is folded in.
"""

from __future__ import annotations

import math
import struct
import zlib

from stream_scorer.features.catalog import (
    CARD_WINDOWS,
    DISTINCT_MERCHANTS_HOURS,
    MERCHANT_MEMORY_BUCKET_S,
    NEW_MERCHANT_HOURS,
    NO_PREVIOUS_S,
    RATIO_CLIP,
    STD_FLOOR,
    Z_CLIP,
)
from stream_scorer.features.windows import ZEROS, Level, clear_ranges, make_levels

HEADER = struct.Struct("<dddd")
_MAX_COUNT = 65_535


def merchant_hash(merchant_id: str) -> int:
    """A stable 32-bit id of a merchant (never 0, which marks a free slot); not Python's hash()."""
    return zlib.crc32(merchant_id.encode()) or 1


class CardLayout:
    """Where each part of a card's buffer lives for given settings, and the per-event update."""

    def __init__(self, grace_s: float, merchant_slots: int) -> None:
        self.grace_s = grace_s
        self.levels: tuple[Level, ...] = make_levels(CARD_WINDOWS, grace_s)
        self.n_buckets = nb = sum(lv.slots for lv in self.levels)
        self.merchant_slots = k = merchant_slots
        self.counts_at = HEADER.size
        self.values_at = self.counts_at + 2 * nb + (2 * nb) % 4
        self.merchants_at = self.values_at + 8 * nb
        self.size = self.merchants_at + 12 * k
        self._names = tuple(
            (
                f"card_{lv.name}_log_count",
                f"card_{lv.name}_log_sum",
                f"card_{lv.name}_log_mean",
                f"card_{lv.name}_log_max",
            )
            for lv in self.levels
        )
        self._level_params = tuple(
            (lv.bucket_s, lv.span, lv.slots, lv.offset, names)
            for lv, names in zip(self.levels, self._names, strict=True)
        )

    def describe(self) -> str:
        """A string that changes whenever the layout does (it is part of the state fingerprint)."""
        lv = ",".join(f"{x.name}:{x.width_s:g}/{x.bucket_s:g}x{x.slots}" for x in self.levels)
        return f"card1[{lv}|k={self.merchant_slots}|size={self.size}]"

    def new(self) -> bytearray:
        """The buffer of a card never seen (count 0)."""
        return bytearray(self.size)

    @staticmethod
    def latest(buf: bytearray) -> float:
        """The card's latest event time (``-inf`` for a card never seen)."""
        latest, count, _, _ = HEADER.unpack_from(buf, 0)
        return latest if count else -math.inf

    def update(
        self, buf: bytearray, amount: float, ts: float, mhash: int, x: dict[str, float]
    ) -> bool:
        """Write the card's features of this event into ``x``, fold the event in; True if late."""
        max_ts, n, mean, m2 = HEADER.unpack_from(buf, 0)
        late = False
        if n:
            floor_ts = max_ts - self.grace_s
            if ts < floor_ts:
                ts, late = floor_ts, True
            new_max = ts if ts > max_ts else max_ts
        else:
            new_max = max_ts = ts
        raw = memoryview(buf)
        nb = self.n_buckets
        counts = raw[self.counts_at : self.counts_at + 2 * nb].cast("H")
        values = raw[self.values_at : self.merchants_at].cast("f")
        ca, va, xa = self.counts_at, self.values_at, self.values_at + 4 * nb

        for bucket_s, span, slots, off, names in self._level_params:
            k = int(ts // bucket_s)
            s1 = off + k % slots
            c = -1
            if not n:
                c = 0  # a new card: all zeros
            else:
                head, new_head = int(max_ts // bucket_s), int(new_max // bucket_s)
                if new_head > head:  # the ring moves on: empty the buckets it reuses
                    if new_head - head >= slots:
                        c = 0  # idle longer than the ring: the whole window is empty
                    for a, b in clear_ranges(head, new_head, slots):
                        a += off
                        b += off
                        raw[ca + 2 * a : ca + 2 * b] = ZEROS[: 2 * (b - a)]
                        raw[va + 4 * a : va + 4 * b] = ZEROS[: 4 * (b - a)]
                        raw[xa + 4 * a : xa + 4 * b] = ZEROS[: 4 * (b - a)]
            if c:
                s0 = off + (k - span + 1) % slots
                if s0 <= s1:
                    c = sum(counts[s0 : s1 + 1])
                    if c:
                        s = sum(values[s0 : s1 + 1])
                        mx = max(values[nb + s0 : nb + s1 + 1])
                else:
                    end = off + slots
                    c = sum(counts[s0:end]) + sum(counts[off : s1 + 1])
                    if c:
                        s = sum(values[s0:end]) + sum(values[off : s1 + 1])
                        mx = max(
                            max(values[nb + s0 : nb + end]), max(values[nb + off : nb + s1 + 1])
                        )
            if c:
                x[names[0]] = math.log1p(c)
                x[names[1]] = math.log1p(s)
                x[names[2]] = math.log1p(s / c)
                x[names[3]] = math.log1p(mx)
            else:
                x[names[0]] = x[names[1]] = x[names[2]] = x[names[3]] = 0.0
            # Fold the event into its bucket, after the window was read.
            if counts[s1] < _MAX_COUNT:
                counts[s1] += 1
            values[s1] += amount
            if amount > values[nb + s1]:
                values[nb + s1] = amount

        # Long-run amount habits (Welford), read then updated.
        if n:
            since = ts - max_ts
            since = 0.0 if since < 0.0 else (NO_PREVIOUS_S if since > NO_PREVIOUS_S else since)
            ratio = amount / mean
            std = math.sqrt(m2 / n)
            floor_std = STD_FLOOR * mean
            z = (amount - mean) / (std if std > floor_std else floor_std)
            x["card_log_count"] = math.log1p(n)
            x["card_log_seconds_since_prev"] = math.log1p(since)
            x["card_amount_ratio"] = RATIO_CLIP if ratio > RATIO_CLIP else ratio
            x["card_amount_z"] = max(-Z_CLIP, min(Z_CLIP, z))
        else:
            x["card_log_count"] = 0.0
            x["card_log_seconds_since_prev"] = math.log1p(NO_PREVIOUS_S)
            x["card_amount_ratio"] = 1.0
            x["card_amount_z"] = 0.0
        n += 1
        delta = amount - mean
        mean += delta / n
        m2 += delta * (amount - mean)
        HEADER.pack_into(buf, 0, new_max, n, mean, m2)

        # Merchant memory: distinct merchants in 24 h, and whether this one is new in 7 d.
        kslots = self.merchant_slots
        mem_view = raw[self.merchants_at : self.size].cast("I")
        mem = mem_view.tolist()
        hours = int(ts // MERCHANT_MEMORY_BUCKET_S)
        distinct_after = hours - DISTINCT_MERCHANTS_HOURS
        distinct = 0
        pos = free = -1
        oldest, oldest_last = 0, 1 << 32
        for i in range(kslots):
            h = mem[i]
            if not h:
                if free < 0:
                    free = i
                continue
            last = mem[kslots + i]
            # The latest hour at or before this event's: a later one can only be the next hour
            # (grace <= 1 h), and then the hour seen before it is the answer.
            seen = last if last <= hours else mem[2 * kslots + i]
            if seen > distinct_after:
                distinct += 1
            if h == mhash:
                pos, seen_here = i, seen
            if last < oldest_last:
                oldest, oldest_last = i, last
        x["card_24h_log_distinct_merchants"] = math.log1p(distinct)
        if pos >= 0:
            x["card_merchant_new"] = 0.0 if seen_here > hours - NEW_MERCHANT_HOURS else 1.0
            last = mem[kslots + pos]
            if hours > last:
                mem_view[2 * kslots + pos] = last
                mem_view[kslots + pos] = hours
            elif hours < last and hours > mem[2 * kslots + pos]:
                mem_view[2 * kslots + pos] = hours
        else:
            x["card_merchant_new"] = 1.0
            i = free if free >= 0 else oldest
            mem_view[i] = mhash
            mem_view[kslots + i] = hours
            mem_view[2 * kslots + i] = 0
        return late
