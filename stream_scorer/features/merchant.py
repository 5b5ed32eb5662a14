"""A merchant's state: its transaction windows (count and mean amount per window).

The merchant's fraud rate is not kept here: :mod:`stream_scorer.features.risk` keeps it, for cards
and merchants alike. A label still *touches* its merchant (:meth:`MerchantLayout.touch`), so that a
merchant with recent labels is not evicted.

Merchants are few and busy, so each window keeps a cache (not part of the durable state): the
count and sum of the window's buckets before the head bucket, computed once per head. An event in
the head bucket reads cache + head bucket; an older event drops the cache of the windows it writes
into. A restored merchant recomputes it from the same buckets, so it continues bit for bit.

:meth:`MerchantLayout.py_update` is the reference; the C extension ``_kernels`` does the same on the
same arrays with the same floats (a test holds them equal) and is used when built.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Callable
from typing import Any

from stream_scorer import native
from stream_scorer.features.catalog import MERCHANT_WINDOWS
from stream_scorer.features.settings import FeatureSettings
from stream_scorer.features.windows import Level, clear_ranges, make_levels

_HEADER = struct.Struct("<dd")
_c = native.load("stream_scorer.features._kernels")


class MerchantState:
    """One merchant's windows (count, amount sum per bucket) and its clocks."""

    __slots__ = (
        "cache",
        "cache_heads",
        "counts",
        "max_ts",
        "mhash",
        "risk",
        "seen_ts",
        "sums",
    )

    def __init__(self, n_buckets: int, n_levels: int, mhash: int) -> None:
        self.max_ts = -math.inf  # the latest event time (windows' clock)
        self.seen_ts = -math.inf  # the latest time it was touched, by an event or a label
        self.counts = array("d", bytes(8 * n_buckets))
        self.sums = array("d", bytes(8 * n_buckets))
        self.mhash = mhash  # merchant_hash() of its id, for the cards' merchant memory
        # Per window: the head bucket the cache is for (-1: none), and the count and sum of the
        # window's buckets before it.
        self.cache_heads = array("q", [-1] * n_levels)
        self.cache = array("d", bytes(16 * n_levels))
        self.risk: bytearray | None = None
        """The merchant's label-time risk ring (the merchant stage and its table keep it here;
        the feature engine's own merchants keep theirs beside, in ``merchant_risk``)."""


class MerchantLayout:
    """The merchant windows for given settings, and the per-event update."""

    def __init__(self, settings: FeatureSettings) -> None:
        self.grace_s = settings.grace_s
        self.levels: tuple[Level, ...] = make_levels(MERCHANT_WINDOWS, settings.grace_s)
        self.n_buckets = sum(lv.slots for lv in self.levels)
        self._zeros = array("d", bytes(8 * self.n_buckets))
        self.horizon_s = max(lv.width_s for lv in self.levels) + self.grace_s
        self._level_params = tuple(
            (
                j,
                lv.bucket_s,
                lv.span,
                lv.slots,
                lv.offset,
                lv.offset + lv.slots,
                f"merchant_{lv.name}_log_count",
                f"merchant_{lv.name}_log_mean",
            )
            for j, lv in enumerate(self.levels)
        )
        self.update: Callable[[MerchantState, float, float, dict[str, float]], bool] = (
            self.native_updater().update if _c is not None else self.py_update
        )
        """Write the merchant's features of this event into ``x``, fold it in; True if late
        (:meth:`py_update`, in C when built)."""

    def native_updater(self) -> Any:
        """The C kernel (``_kernels.MerchantUpdater``) for this layout; ImportError if not built."""
        if _c is None:
            raise ImportError("stream_scorer.features._kernels is not built (or not in use)")
        levels = tuple(
            (bucket_s, span, slots, off, count_name, mean_name)
            for _, bucket_s, span, slots, off, _end, count_name, mean_name in self._level_params
        )
        return _c.MerchantUpdater(self.grace_s, levels)

    def describe(self) -> str:
        """A string that changes whenever the layout does (it is part of the state fingerprint)."""
        lv = ",".join(f"{x.name}:{x.width_s:g}/{x.bucket_s:g}x{x.slots}" for x in self.levels)
        return f"merchant3[{lv}]"

    def new(self, mhash: int) -> MerchantState:
        """The state of a merchant never seen (``mhash``: :func:`.card.merchant_hash` of its id)."""
        return MerchantState(self.n_buckets, len(self.levels), mhash)

    def touch(self, m: MerchantState, ts: float) -> None:
        """Mark ``m`` as touched at ``ts`` (a label for it, known then): it is kept in memory until
        ``ts + horizon_s``. The windows and ``max_ts`` do not change."""
        if ts > m.seen_ts:
            m.seen_ts = ts

    def read(self, m: MerchantState, ts: float, x: dict[str, float]) -> None:
        """Write the merchant's window features as of event time ``ts`` into ``x``; reads only.

        As :meth:`py_update` reads, for an event within grace of the merchant's clock. An older
        event reads the buckets up to its own that the rings still hold (an update would read
        as of ``latest - grace``): a table fed from many partitions can be hours ahead of one
        of them during a backfill, and must not show that partition the merchant's future.
        """
        max_ts = m.max_ts
        if max_ts == -math.inf:
            for *_, count_name, mean_name in self._level_params:
                x[count_name] = 0.0
                x[mean_name] = 0.0
            return
        counts, sums = m.counts, m.sums
        for _, bucket_s, span, slots, off, end, count_name, mean_name in self._level_params:
            k = int(ts // bucket_s)
            head = int(max_ts // bucket_s)
            c, s = _window(
                counts, sums, off, end, slots, max(k - span + 1, head - slots + 1), min(k, head)
            )
            x[count_name] = math.log1p(c)
            x[mean_name] = math.log1p(s / c) if c else 0.0

    def py_update(self, m: MerchantState, amount: float, ts: float, x: dict[str, float]) -> bool:
        """Write the merchant's features of this event into ``x``, fold it in; True if late."""
        max_ts = m.max_ts
        late = False
        if max_ts == -math.inf:
            new_max = max_ts = ts
        else:
            floor_ts = max_ts - self.grace_s
            if ts < floor_ts:
                ts, late = floor_ts, True
            new_max = ts if ts > max_ts else max_ts
        counts, sums, heads, cache = m.counts, m.sums, m.cache_heads, m.cache
        for j, bucket_s, span, slots, off, end, count_name, mean_name in self._level_params:
            k = int(ts // bucket_s)
            head = int(max_ts // bucket_s)
            s1 = off + k % slots
            if k > head:
                self._clear(counts, sums, off, head, k, slots)
            if k >= head:  # the head bucket: the cached buckets before it, then the head
                if heads[j] != k:
                    heads[j] = k
                    cache[2 * j], cache[2 * j + 1] = _window(
                        counts, sums, off, end, slots, k - span + 1, k - 1
                    )
                c = cache[2 * j] + counts[s1]
                s = cache[2 * j + 1] + sums[s1]
            else:  # an older bucket, within the ring: read it whole; the write spoils the cache
                lo = max(k - span + 1, head - slots + 1)
                c, s = _window(counts, sums, off, end, slots, lo, k)
                heads[j] = -1
            x[count_name] = math.log1p(c)
            x[mean_name] = math.log1p(s / c) if c else 0.0
            counts[s1] += 1.0
            sums[s1] += amount
        m.max_ts = new_max
        if new_max > m.seen_ts:
            m.seen_ts = new_max
        return late

    def _clear(
        self, a: array[float], b: array[float], off: int, head: int, k: int, slots: int
    ) -> None:
        """Empty the slots of the ring at ``off`` in ``a``, ``b`` reused from ``head`` to ``k``."""
        zeros = self._zeros
        for lo, hi in clear_ranges(head, k, slots):
            a[off + lo : off + hi] = zeros[: hi - lo]
            b[off + lo : off + hi] = zeros[: hi - lo]

    def dumps(self, m: MerchantState) -> bytes:
        """The merchant's state as bytes: ``max_ts``, ``seen_ts``, then counts and sums (float64)."""
        header = _HEADER.pack(m.max_ts, m.seen_ts)
        return b"".join((header, m.counts, m.sums))  # buffers: no copies

    def loads(self, data: bytes | memoryview, mhash: int) -> MerchantState:
        """The inverse of :meth:`dumps`; raises ``ValueError`` when the bytes do not fit."""
        nb = 8 * self.n_buckets
        at = _HEADER.size
        if len(data) != at + 2 * nb:
            raise ValueError("merchant state of the wrong size")
        max_ts, seen_ts = _HEADER.unpack_from(data, 0)
        m = MerchantState(0, len(self.levels), mhash)
        m.max_ts, m.seen_ts = max_ts, seen_ts
        for name in ("counts", "sums"):
            a = array("d")
            a.frombytes(data[at : at + nb])
            setattr(m, name, a)
            at += nb
        return m


def _window(
    a: array[float], b: array[float], off: int, end: int, slots: int, lo: int, hi: int
) -> tuple[float, float]:
    """Sums of ``a`` and ``b`` over the buckets ``lo .. hi`` of the ring in ``[off, end)``."""
    if hi < lo:
        return 0.0, 0.0
    s0, s1 = off + lo % slots, off + hi % slots
    if s0 <= s1:
        return sum(a[s0 : s1 + 1]), sum(b[s0 : s1 + 1])
    return sum(a[s0:end]) + sum(a[off : s1 + 1]), sum(b[s0:end]) + sum(b[off : s1 + 1])
