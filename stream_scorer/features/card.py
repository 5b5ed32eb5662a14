"""A card's state in one ``bytearray``: windows, long-run amount statistics and merchant memory.

The in-memory form is the serialized form, so a changelog value is a copy of the buffer and the
memory a card costs is what you measure (820 bytes with the default settings).
Layout, little-endian:

====================  ==========================================================================
``<dddd`` header      latest event time, count, running mean and M2 of amounts (Welford)
``uint16[B]``         per-bucket transaction counts of every window ring (saturating at 65535)
``float32[2B]``       per-bucket amount sums, then per-bucket max amounts
``uint32[2K]``        merchant memory: CRC-32 of the merchant id (``0`` = free slot), latest hour
                      seen; slots fill from the first, so the used ones are a prefix
``uint8[K]``          per merchant slot, how many hours before the latest the one seen before it
                      was (``0`` = none, or more than 255 hours: too old to matter to any feature)
====================  ==========================================================================

Features are read from the state as it stood before the event, then the event is folded in.
:meth:`CardLayout.py_update` is the reference; the C extension ``_kernels`` does the same on the same
bytes with the same floats (a test holds them equal) and is used when built, unless
``STREAM_SCORER_PURE_PYTHON=1``.
"""

from __future__ import annotations

import math
import struct
import zlib
from array import array
from collections.abc import Callable
from typing import Any

from stream_scorer import native
from stream_scorer.features.catalog import (
    CARD_WINDOWS,
    DISTINCT_MERCHANTS_HOURS,
    MEAN_FLOOR,
    MERCHANT_MEMORY_BUCKET_S,
    NEW_MERCHANT_HOURS,
    NO_PREVIOUS_S,
    RATIO_CLIP,
    STD_FLOOR,
    Z_CLIP,
)
from stream_scorer.features.windows import Level, make_levels

HEADER = struct.Struct("<dddd")
_U32 = struct.Struct("<I")
_MAX_COUNT = 65_535
_MAX_AGE = 255
"""The oldest "hour seen before" kept: the next event is at most an hour before the latest (grace
<= 1 h), so a previous hour older than 255 h is outside every window (24 h, 7 d) for good."""


_c = native.load("stream_scorer.features._kernels")
NATIVE: bool = _c is not None
"""Whether cards are updated by the C kernel."""


def merchant_hash(merchant_id: str) -> int:
    """A stable 32-bit id of a merchant (never 0, which marks a free slot); not Python's hash()."""
    return zlib.crc32(merchant_id.encode()) or 1


class CardLayout:
    """Where each part of a card's buffer lives for given settings, and the per-event update."""

    def __init__(self, grace_s: float, merchant_slots: int, extra: int = 0) -> None:
        self.grace_s = grace_s
        self.levels: tuple[Level, ...] = make_levels(CARD_WINDOWS, grace_s)
        self.n_buckets = nb = sum(lv.slots for lv in self.levels)
        self.merchant_slots = k = merchant_slots
        self.counts_at = HEADER.size
        self.values_at = self.counts_at + 2 * nb + (2 * nb) % 4
        self.merchants_at = self.values_at + 8 * nb
        self.ages_at = self.merchants_at + 8 * k
        self.core_size = self.ages_at + k
        self.size = self.core_size + extra
        """The buffer's bytes: this layout's own, then ``extra`` bytes that others keep (the card's
        memory of devices and countries, its risk ring)."""
        self._memory = struct.Struct(f"<{2 * k}I")
        width = max(lv.slots for lv in self.levels)
        self._zero_counts = memoryview(array("H", bytes(2 * width)))
        self._zero_values = memoryview(array("f", bytes(4 * width)))
        self._level_params = tuple(
            (
                lv.bucket_s,
                lv.span,
                lv.slots,
                lv.offset,
                lv.offset + lv.slots,
                f"card_{lv.name}_log_count",
                f"card_{lv.name}_log_sum",
                f"card_{lv.name}_log_mean",
                f"card_{lv.name}_log_max",
            )
            for lv in self.levels
        )

        self.update: Callable[[bytearray, float, float, int, dict[str, float]], bool] = (
            self.native_updater().update if _c is not None else self.py_update
        )
        """Write the card's features of this event into ``x``, fold the event in; True if late
        (:meth:`py_update`, in C when built)."""

    def native_updater(self) -> Any:
        """The C kernel (``_kernels.CardUpdater``) for this layout; ImportError if not built."""
        if _c is None:
            raise ImportError("stream_scorer.features._kernels is not built (or not in use)")
        levels = tuple(
            (bucket_s, span, slots, off, *names)
            for bucket_s, span, slots, off, _end, *names in self._level_params
        )
        offsets = (
            self.n_buckets, self.counts_at, self.values_at, self.merchants_at, self.ages_at, self.size
        )
        constants = (
            MERCHANT_MEMORY_BUCKET_S,
            DISTINCT_MERCHANTS_HOURS,
            NEW_MERCHANT_HOURS,
            NO_PREVIOUS_S,
            RATIO_CLIP,
            Z_CLIP,
            STD_FLOOR,
        )
        names = (
            "card_log_count",
            "card_log_seconds_since_prev",
            "card_amount_ratio",
            "card_amount_z",
            "card_24h_log_distinct_merchants",
            "card_merchant_new",
        )
        return _c.CardUpdater(self.grace_s, levels, offsets, self.merchant_slots, constants, names)

    def describe(self) -> str:
        """A string that changes whenever the layout does (it is part of the state fingerprint)."""
        lv = ",".join(f"{x.name}:{x.width_s:g}/{x.bucket_s:g}x{x.slots}" for x in self.levels)
        return f"card2[{lv}|k={self.merchant_slots}|size={self.size}]"

    def new(self) -> bytearray:
        """The buffer of a card never seen (count 0)."""
        return bytearray(self.size)

    @staticmethod
    def latest(buf: bytearray) -> float:
        """The card's latest event time (``-inf`` for a card never seen)."""
        latest, count, _, _ = HEADER.unpack_from(buf, 0)
        return latest if count else -math.inf

    def py_update(
        self, buf: bytearray, amount: float, ts: float, mhash: int, x: dict[str, float]
    ) -> bool:
        """Write the card's features of this event into ``x``, fold the event in; True if late."""
        max_ts, n, mean, m2 = HEADER.unpack_from(buf, 0)
        late = False
        if n:
            floor_ts = max_ts - self.grace_s
            if ts < floor_ts:
                ts, late = floor_ts, True
        else:
            max_ts = ts
        raw = memoryview(buf)
        nb = self.n_buckets
        counts = raw[self.counts_at : self.values_at].cast("H")
        values = raw[self.values_at : self.merchants_at].cast("f")
        zc, zv = self._zero_counts, self._zero_values

        for bucket_s, span, slots, off, end, n_count, n_sum, n_mean, n_max in self._level_params:
            k = int(ts // bucket_s)
            head = int(max_ts // bucket_s)
            s1 = off + k % slots
            # The window is buckets k - span + 1 .. k; those after the head are empty.
            lo = k - span + 1
            hi = k
            if k > head:  # the ring moves on to k: empty the buckets it reuses
                moved = k - head
                if moved >= slots:
                    counts[off:end] = zc[:slots]
                    values[off:end] = zv[:slots]
                    values[nb + off : nb + end] = zv[:slots]
                else:
                    a = off + (head + 1) % slots
                    b = a + moved
                    if b <= end:
                        counts[a:b] = zc[:moved]
                        values[a:b] = zv[:moved]
                        values[nb + a : nb + b] = zv[:moved]
                    else:
                        counts[a:end] = zc[: end - a]
                        values[a:end] = zv[: end - a]
                        values[nb + a : nb + end] = zv[: end - a]
                        b -= slots
                        counts[off:b] = zc[: b - off]
                        values[off:b] = zv[: b - off]
                        values[nb + off : nb + b] = zv[: b - off]
                hi = head
            elif k < head and lo <= head - slots:  # never read a slot the ring has reused
                lo = head - slots + 1
            c = 0
            if n and hi >= lo:
                s0, s2 = off + lo % slots, off + hi % slots
                if s0 <= s2:
                    c = sum(counts[s0 : s2 + 1])
                    if c:
                        s = sum(values[s0 : s2 + 1])
                        mx = max(values[nb + s0 : nb + s2 + 1])
                else:
                    c = sum(counts[s0:end]) + sum(counts[off : s2 + 1])
                    if c:
                        s = sum(values[s0:end]) + sum(values[off : s2 + 1])
                        mx = max(
                            max(values[nb + s0 : nb + end]), max(values[nb + off : nb + s2 + 1])
                        )
            if c:
                x[n_count] = math.log1p(c)
                x[n_sum] = math.log1p(s)
                x[n_mean] = math.log1p(s / c)
                x[n_max] = math.log1p(mx)
            else:
                x[n_count] = x[n_sum] = x[n_mean] = x[n_max] = 0.0
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
            ref = mean if mean > MEAN_FLOOR else MEAN_FLOOR  # a card of zero amounts so far
            ratio = amount / ref
            std = math.sqrt(m2 / n)
            floor_std = STD_FLOOR * ref
            z = (amount - mean) / (std if std > floor_std else floor_std)
            x["card_log_count"] = math.log1p(n)
            x["card_log_seconds_since_prev"] = math.log1p(since)
            x["card_amount_ratio"] = RATIO_CLIP if ratio > RATIO_CLIP else ratio
            x["card_amount_z"] = -Z_CLIP if z < -Z_CLIP else (Z_CLIP if z > Z_CLIP else z)
        else:
            x["card_log_count"] = 0.0
            x["card_log_seconds_since_prev"] = math.log1p(NO_PREVIOUS_S)
            x["card_amount_ratio"] = 1.0
            x["card_amount_z"] = 0.0
        n += 1
        delta = amount - mean
        mean += delta / n
        m2 += delta * (amount - mean)
        HEADER.pack_into(buf, 0, ts if ts > max_ts else max_ts, n, mean, m2)

        self._remember(buf, int(ts // MERCHANT_MEMORY_BUCKET_S), mhash, x)
        return late

    def _remember(self, buf: bytearray, hours: int, mhash: int, x: dict[str, float]) -> None:
        """Merchant memory: distinct merchants in 24 h, whether this one is new in 7 d; then note
        this merchant at ``hours``, in a free slot or in place of the least recently seen one."""
        kslots = self.merchant_slots
        mem = self._memory.unpack_from(buf, self.merchants_at)
        ages_at = self.ages_at
        used = mem.index(0) if mem[kslots - 1] == 0 else kslots  # the used slots are a prefix
        hashes = mem[:used]
        lasts = mem[kslots : kslots + used]
        distinct_after = hours - DISTINCT_MERCHANTS_HOURS
        pos = hashes.index(mhash) if mhash in hashes else -1
        if not used or max(lasts) <= hours:  # every merchant last seen at or before this hour
            distinct = 0
            for last in lasts:
                if last > distinct_after:
                    distinct += 1
            seen_here = lasts[pos] if pos >= 0 else 0
        else:
            # A later hour can only be the next one (grace <= 1 h); then the hour seen before
            # it is the latest at or before this event's.
            distinct = seen_here = 0
            for i, last in enumerate(lasts):
                if last <= hours:
                    seen = last
                else:
                    age = buf[ages_at + i]
                    seen = last - age if age else 0
                if seen > distinct_after:
                    distinct += 1
                if i == pos:
                    seen_here = seen
        x["card_24h_log_distinct_merchants"] = math.log1p(distinct)
        if pos >= 0:
            x["card_merchant_new"] = 0.0 if seen_here > hours - NEW_MERCHANT_HOURS else 1.0
            last = lasts[pos]
            if hours > last:
                age = hours - last
                buf[ages_at + pos] = age if age <= _MAX_AGE else 0
                _U32.pack_into(buf, self.merchants_at + 4 * (kslots + pos), hours)
            elif hours < last:
                age = buf[ages_at + pos]
                if hours > (last - age if age else 0):
                    age = last - hours
                    buf[ages_at + pos] = age if age <= _MAX_AGE else 0
        else:
            x["card_merchant_new"] = 1.0
            i = used if used < kslots else lasts.index(min(lasts))
            _U32.pack_into(buf, self.merchants_at + 4 * i, mhash)
            _U32.pack_into(buf, self.merchants_at + 4 * (kslots + i), hours)
            buf[ages_at + i] = 0
