"""A merchant's state: transaction windows and a fraud-rate window over labels known in time.

Labels are windowed by the time they became known (``label_time``), and an event only counts
labels known strictly before it (``label_time < event_time``): a label is never known before its
own transaction, so no event ever sees its own label or a later one, even at equal timestamps.

A label is folded into the bucketed ring only once the merchant's clock has passed it by more
than the grace (``label_time < latest - grace``): every event still accepted is at least that late,
so it knows every folded label. Until then the label waits in ``pending`` and each event checks
it exactly. A *late* event (older than ``latest - grace``) reads its windows as of ``latest -
grace`` like every feature, but for labels only the ring buckets before its own event time's
bucket: whatever became known at or after its real time stays hidden.

Merchants are few and busy, so each window keeps a cache (not part of the durable state): the
count and sum of the window's buckets before the head bucket, computed once per head. An event in
the head bucket reads cache + head bucket; an older event, or a label folded into the ring, drops
the cache of the windows it writes into. A restored merchant recomputes it from the same buckets,
so it continues bit for bit.

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

_HEADER = struct.Struct("<ddI")
_c = native.load("stream_scorer.features._kernels")


class MerchantState:
    """One merchant's windows (count, amount sum per bucket) and its label ring and queue."""

    __slots__ = (
        "cache",
        "cache_heads",
        "counts",
        "frauds",
        "labels",
        "max_ts",
        "mhash",
        "pending",
        "seen_ts",
        "sums",
    )

    def __init__(self, n_buckets: int, n_risk: int, n_levels: int, mhash: int) -> None:
        self.max_ts = -math.inf
        self.seen_ts = -math.inf
        self.counts = array("d", bytes(8 * n_buckets))
        self.sums = array("d", bytes(8 * n_buckets))
        self.labels = array("d", bytes(8 * n_risk))
        self.frauds = array("d", bytes(8 * n_risk))
        self.pending: list[tuple[float, bool]] = []
        self.mhash = mhash  # merchant_hash() of its id, for the cards' merchant memory
        # Per window, then for the risk ring: the head bucket the cache is for (-1: none), and
        # the count and sum (labels and frauds) of the window's buckets before it.
        self.cache_heads = array("q", [-1] * (n_levels + 1))
        self.cache = array("d", bytes(16 * (n_levels + 1)))


class MerchantLayout:
    """The merchant windows for given settings, and the per-event and per-label updates."""

    def __init__(self, settings: FeatureSettings) -> None:
        self.grace_s = settings.grace_s
        self.levels: tuple[Level, ...] = make_levels(MERCHANT_WINDOWS, settings.grace_s)
        self.n_buckets = sum(lv.slots for lv in self.levels)
        (self.risk,) = make_levels(
            (("risk", settings.merchant_risk_window_s, settings.merchant_risk_bucket_s),),
            settings.grace_s,
        )
        self.prior_frauds = settings.merchant_risk_prior_rate * settings.merchant_risk_prior_weight
        self.prior_weight = settings.merchant_risk_prior_weight
        self._zeros = array("d", bytes(8 * max(self.n_buckets, self.risk.slots)))
        self.horizon_s = (
            max(max(lv.width_s for lv in self.levels), self.risk.width_s) + self.grace_s
        )
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
        self._risk_cache = len(self.levels)
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
        risk = (self.risk.bucket_s, self.risk.span, self.risk.slots)
        return _c.MerchantUpdater(
            self.grace_s,
            levels,
            risk,
            (self.prior_frauds, self.prior_weight),
            ("merchant_risk_rate", "merchant_risk_log_labels"),
        )

    def describe(self) -> str:
        """A string that changes whenever the layout does (it is part of the state fingerprint)."""
        lv = ",".join(
            f"{x.name}:{x.width_s:g}/{x.bucket_s:g}x{x.slots}" for x in (*self.levels, self.risk)
        )
        return f"merchant2[{lv}]"

    def new(self, mhash: int) -> MerchantState:
        """The state of a merchant never seen (``mhash``: :func:`.card.merchant_hash` of its id)."""
        return MerchantState(self.n_buckets, self.risk.slots, len(self.levels), mhash)

    def py_update(self, m: MerchantState, amount: float, ts: float, x: dict[str, float]) -> bool:
        """Write the merchant's features of this event into ``x``, fold it in; True if late."""
        max_ts = m.max_ts
        raw_ts = ts
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

        # Labels: move the ring on, fold the labels the clock has now passed, then read.
        risk = self.risk
        bucket_s, slots = risk.bucket_s, risk.slots
        labels, frauds = m.labels, m.frauds
        head, new_head = int(max_ts // bucket_s), int(new_max // bucket_s)
        if new_head > head:
            self._clear(labels, frauds, 0, head, new_head, slots)
        m.max_ts = new_max
        if new_max > m.seen_ts:
            m.seen_ts = new_max
        n_labels = n_frauds = 0.0
        k = int(ts // bucket_s)
        lo = k - risk.span + 1
        if m.pending:
            settled = new_max - self.grace_s
            keep = []
            for label_ts, is_fraud in m.pending:
                if label_ts < settled:
                    self._fold_label(m, label_ts, is_fraud)
                else:
                    keep.append((label_ts, is_fraud))
                    if not late and label_ts < ts and label_ts // bucket_s >= lo:
                        n_labels += 1.0
                        n_frauds += is_fraud
            m.pending = keep
        if late:
            ol, of = _window(labels, frauds, 0, slots, slots, lo, int(raw_ts // bucket_s) - 1)
        elif k == new_head:
            j = self._risk_cache
            if heads[j] != k:
                heads[j] = k
                cache[2 * j], cache[2 * j + 1] = _window(labels, frauds, 0, slots, slots, lo, k - 1)
            i = k % slots
            ol = cache[2 * j] + labels[i]
            of = cache[2 * j + 1] + frauds[i]
        else:
            ol, of = _window(labels, frauds, 0, slots, slots, lo, k)
        n_labels += ol
        n_frauds += of
        x["merchant_risk_rate"] = (n_frauds + self.prior_frauds) / (n_labels + self.prior_weight)
        x["merchant_risk_log_labels"] = math.log1p(n_labels)
        return late

    def _clear(
        self, a: array[float], b: array[float], off: int, head: int, k: int, slots: int
    ) -> None:
        """Empty the slots of the ring at ``off`` in ``a``, ``b`` reused from ``head`` to ``k``."""
        zeros = self._zeros
        for lo, hi in clear_ranges(head, k, slots):
            a[off + lo : off + hi] = zeros[: hi - lo]
            b[off + lo : off + hi] = zeros[: hi - lo]

    def observe_label(self, m: MerchantState, is_fraud: bool, label_ts: float) -> None:
        """Record a label known from ``label_ts`` on: folded if settled, else queued."""
        if label_ts > m.seen_ts:
            m.seen_ts = label_ts
        if m.max_ts != -math.inf and label_ts < m.max_ts - self.grace_s:
            self._fold_label(m, label_ts, is_fraud)
        else:
            m.pending.append((label_ts, is_fraud))

    def _fold_label(self, m: MerchantState, label_ts: float, is_fraud: bool) -> None:
        # A bucket the ring no longer keeps is older than any window still to be read: drop it.
        risk = self.risk
        k = int(label_ts // risk.bucket_s)
        if k > int(m.max_ts // risk.bucket_s) - risk.slots:
            m.cache_heads[self._risk_cache] = -1
            i = k % risk.slots
            m.labels[i] += 1.0
            if is_fraud:
                m.frauds[i] += 1.0

    def dumps(self, m: MerchantState) -> bytes:
        """The merchant's state as bytes (arrays of float64, then the pending labels)."""
        pending = m.pending
        header = _HEADER.pack(m.max_ts, m.seen_ts, len(pending))
        if not pending:
            return b"".join((header, m.counts, m.sums, m.labels, m.frauds))  # buffers: no copies
        lts = array("d", [p[0] for p in pending])
        flags = bytes([1 if p[1] else 0 for p in pending])
        return b"".join((header, m.counts, m.sums, m.labels, m.frauds, lts, flags))

    def loads(self, data: bytes | memoryview, mhash: int) -> MerchantState:
        """The inverse of :meth:`dumps`; raises ``ValueError`` when the bytes do not fit."""
        max_ts, seen_ts, n_pending = _HEADER.unpack_from(data, 0)
        nb, nr = 8 * self.n_buckets, 8 * self.risk.slots
        at = _HEADER.size
        if len(data) != at + 2 * nb + 2 * nr + 9 * n_pending:
            raise ValueError("merchant state of the wrong size")
        m = MerchantState(0, 0, len(self.levels), mhash)
        m.max_ts, m.seen_ts = max_ts, seen_ts
        for name, size in (("counts", nb), ("sums", nb), ("labels", nr), ("frauds", nr)):
            a = array("d")
            a.frombytes(data[at : at + size])
            setattr(m, name, a)
            at += size
        lts = array("d")
        lts.frombytes(data[at : at + 8 * n_pending])
        flags = data[at + 8 * n_pending :]
        m.pending = [(t, bool(f)) for t, f in zip(lts, flags, strict=True)]
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
