"""Entity risk: the fraud share of an entity's labelled transactions, by the time labels became known.

A card, a merchant or a category value (an MCC, a country, a channel) keeps a ring of day buckets
counting the labels that became known in each day, and how many of them were fraud. An event reads
several windows of that ring (labels known in the last 1, 7, 30 days, say): the fraud rate of each
window, smoothed towards a prior rate by a prior weight, with the number of labels beside it. With
labels that arrive a delay ``D`` after their transaction, the window of width ``w`` holds the
transactions of ``[t - D - w, t - D)``: what a fraud team knows of the entity at ``t``.

**No label is seen before its time.** An event at ``t`` counts only labels known strictly before
``t``. The ring keeps, besides the buckets, the latest label time it folded (``last``). An event
reads whole buckets up to the one before its own; its own bucket only when that bucket is the
ring's head and ``t > last``, so that every label in it was known before ``t``. An event that
trails the latest label in its own bucket (out of order, or a label already folded that is dated
after it) leaves that bucket out: it may miss a label of the same day, it never sees a later one.

The state of one ring is a region of a ``bytearray`` (a card's buffer, a merchant's risk bytes):
``<d`` latest label time (0: no label yet), then the label counts and the fraud counts per bucket,
each a saturating unsigned integer of ``itemsize`` bytes (1 for cards, whose labels are few; 2
for merchants; 4 for category values, whose labels are many). A bucket that is full counts no
more labels that day, fraud or not, so its rate stays the rate of the labels it counted.

>>> r = RiskRing("merchant", windows_days=(1, 7), prior_rate=0.01, prior_weight=1.0)
>>> buf = bytearray(r.size)
>>> r.fold(buf, 0, label_ts=86_400.0 * 10 + 5, is_fraud=True)
>>> x = {}; r.read(buf, 0, 86_400.0 * 10 + 1, x); x["merchant_risk_1d_log_labels"]
0.0
>>> x = {}; r.read(buf, 0, 86_400.0 * 10 + 9, x); round(x["merchant_risk_1d_rate"], 3)
0.505
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Literal

from stream_scorer import native

_c = native.load("stream_scorer.features._kernels")

DAY_S = 86_400.0
_LAST = struct.Struct("<d")


class RiskRing:
    """Label-time windows of one kind of entity, read and written on regions of byte buffers."""

    def __init__(
        self,
        prefix: str,
        windows_days: tuple[int, ...],
        prior_rate: float,
        prior_weight: float,
        itemsize: int = 2,
        bucket_s: float = DAY_S,
    ) -> None:
        if not windows_days or min(windows_days) < 1:
            raise ValueError("risk windows are whole days, at least one")
        self.prefix = prefix
        self.windows = tuple(sorted(set(windows_days)))
        self.spans = self.windows
        self.slots = max(self.spans) + 1  # one more, so that a trailing event still reads its span
        self.bucket_s = bucket_s
        self.itemsize = itemsize
        self.cap = (1 << (8 * itemsize)) - 1
        codes: dict[int, Literal["B", "H", "I"]] = {1: "B", 2: "H", 4: "I"}
        self._code = codes[itemsize]
        self.size = _LAST.size + 2 * self.slots * itemsize
        self._whole = struct.Struct(f"<d{2 * self.slots}{self._code}")
        self.prior_frauds = prior_rate * prior_weight
        self.prior_weight = prior_weight
        self.prior_value = prior_rate if prior_weight > 0 else 0.0
        self.names = tuple(
            (f"{prefix}_risk_{w}d_rate", f"{prefix}_risk_{w}d_log_labels") for w in self.windows
        )
        self.read: Callable[[bytearray, int, float, dict[str, float]], None] = self.py_read
        """Write the entity's risk features at event time ``ts`` into ``x`` (reads only)."""
        self.fold: Callable[[bytearray, int, float, bool], None] = self.py_fold
        """Count a label known from ``label_ts`` on (a label older than the ring is dropped)."""
        if _c is not None:
            kernel = _c.RiskKernel(
                bucket_s, self.slots, itemsize, self.spans, self.names,
                float(prior_weight), float(self.prior_frauds), float(self.prior_value),
            )
            self.read, self.fold = kernel.read, kernel.fold

    def feature_names(self) -> tuple[str, ...]:
        """The features :meth:`read` writes, in order."""
        return tuple(n for pair in self.names for n in pair)

    def describe(self) -> str:
        """A string that changes whenever the layout does (part of the state fingerprint)."""
        days = ",".join(str(w) for w in self.windows)
        return f"risk[{self.prefix}:{days}d/{self.bucket_s:g}x{self.slots}x{self.itemsize}]"

    def empty(self, x: dict[str, float]) -> None:
        """The features of an entity with no label known (the prior rate, no labels)."""
        prior = self.prior_value
        for rate, labels in self.names:
            x[rate] = prior
            x[labels] = 0.0

    @staticmethod
    def last(buf: bytearray, off: int) -> float:
        """The latest label time folded (``-inf`` when none)."""
        (last,) = _LAST.unpack_from(buf, off)
        return last if last else -math.inf

    def py_read(self, buf: bytearray, off: int, ts: float, x: dict[str, float]) -> None:
        """Write the entity's risk features at event time ``ts`` into ``x`` (reads only); the
        reference of the C kernel that :attr:`read` is when it is built.

        Hot path: one ``unpack_from`` takes the latest label time and every count as a tuple
        (label counts at ``1 + slot``, fraud counts at ``1 + slots + slot``), and each window is
        one or two slice sums of it.
        """
        vals = self._whole.unpack_from(buf, off)
        last = vals[0]
        if last == 0.0:
            self.empty(x)
            return
        bucket_s, slots = self.bucket_s, self.slots
        head = int(last // bucket_s)
        k = int(ts // bucket_s)
        hi = k if (k > head or (k == head and ts > last)) else k - 1
        if hi > head:
            hi = head
        oldest = head - slots + 1
        pw, pf = self.prior_weight, self.prior_frauds
        for span, (rate_name, labels_name) in zip(self.spans, self.names, strict=True):
            lo = k - span + 1
            if lo < oldest:
                lo = oldest
            if hi < lo:
                n = f = 0
            else:
                s0, s1 = 1 + lo % slots, 2 + hi % slots
                if s0 < s1:
                    n = sum(vals[s0:s1])
                    f = sum(vals[s0 + slots : s1 + slots]) if n else 0
                else:
                    n = sum(vals[s0 : 1 + slots]) + sum(vals[1:s1])
                    f = sum(vals[s0 + slots :]) + sum(vals[1 + slots : s1 + slots]) if n else 0
            x[rate_name] = (f + pf) / (n + pw) if n or pw else 0.0
            x[labels_name] = math.log1p(n)

    def py_fold(self, buf: bytearray, off: int, label_ts: float, is_fraud: bool) -> None:
        """Count a label known from ``label_ts`` on (a label older than the ring is dropped); the
        reference of the C kernel that :attr:`fold` is when it is built."""
        (last,) = _LAST.unpack_from(buf, off)
        bucket_s, slots = self.bucket_s, self.slots
        k = int(label_ts // bucket_s)
        at = off + _LAST.size
        size = slots * self.itemsize
        raw = memoryview(buf)
        labels = raw[at : at + size].cast(self._code)
        frauds = raw[at + size : at + 2 * size].cast(self._code)
        if last == 0.0:
            _LAST.pack_into(buf, off, label_ts)
        else:
            head = int(last // bucket_s)
            if k > head:  # the ring moves on to k: empty the buckets it reuses
                for j in range(head + 1, min(k, head + slots) + 1):
                    labels[j % slots] = 0
                    frauds[j % slots] = 0
                _LAST.pack_into(buf, off, label_ts)
            elif k <= head - slots:
                return
            elif label_ts > last:
                _LAST.pack_into(buf, off, label_ts)
        i = k % slots
        cap = self.cap
        if labels[i] < cap:
            labels[i] += 1
            if is_fraud and frauds[i] < cap:
                frauds[i] += 1
