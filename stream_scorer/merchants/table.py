"""A card worker's copy of every merchant: the global table, and what it sends the stage.

The feature engine of each partition a worker owns reads merchant features from the worker's one
:class:`MerchantTable` (:meth:`MerchantTable.read`), and tells it of each transaction and label
(:meth:`MerchantTable.send_event`, :meth:`MerchantTable.send_label`): those wait in
:attr:`MerchantTable.outbox` until the worker produces them, in its open transaction.

The table is fed by :meth:`MerchantTable.apply` from ``<group>.merchant-features``. It is as
stale as the merchant stage is behind: a transaction reaches the merchant's features once the
card worker's transaction commits and the stage's next one does. Each publication carries the
time of the oldest record it is the first to hold, so the reader measures that delay
(:mod:`.table_reader`). A merchant the table has not heard of reads as a new one (no
transactions, no labels), exactly as the backtest reads a merchant's first transaction.

With ``settle=True`` the table is its own stage, with no delay: each record is folded in as it is
sent, by the stage's code. That is the live path with zero staleness, which the feature engine's
own merchants (the backtest's) must equal; a test holds them equal.
"""

from __future__ import annotations

import logging
import math
import sys

from stream_scorer.exceptions import StateError
from stream_scorer.features.card import merchant_hash
from stream_scorer.features.merchant import MerchantState
from stream_scorer.features.settings import FeatureSettings
from stream_scorer.merchants import records
from stream_scorer.merchants.book import MerchantBook
from stream_scorer.merchants.sketches import MergedSketches, SketchSet

logger = logging.getLogger(__name__)

Outgoing = tuple[int, bytes, bytes]
"""A record for ``<group>.by-merchant``: (partition, key, value)."""


class MerchantTable:
    """Every merchant's state as published by the merchant stage; read by the feature engines."""

    def __init__(self, settings: FeatureSettings, partitions: int = 1, settle: bool = False) -> None:
        self.book = MerchantBook(settings)
        self.partitions = partitions
        """Partitions of ``<group>.by-merchant`` (set by the worker once it knows the topic)."""
        self.merchants: dict[str, MerchantState] = {}
        self.sketches = MergedSketches(settings)
        """The quantile sketches of the binned features, summed over the stage's partitions."""
        self._own_sketches = SketchSet(settings) if settle else None
        """With ``settle``: the sketches this table counts itself, as the stage would."""
        self._bins = self._own_sketches.bins if self._own_sketches is not None else self.sketches.bins
        """The sketches bin indicators are read against."""
        self.outbox: list[Outgoing] = []
        self.watermark = -math.inf
        """The latest time any merchant in the table was touched (its clock for eviction)."""
        self.applied = 0
        self.tombstones = 0
        self.refused = 0
        self.evicted = 0
        self._next_sweep = -math.inf
        self._evict_interval_s = settings.evict_interval_s

    # -- the feature engine's side --------------------------------------------------------------

    @property
    def settle(self) -> bool:
        """The table is its own stage (no Kafka, no staleness)."""
        return self._own_sketches is not None

    def find(self, merchant_id: str) -> tuple[MerchantState | None, int]:
        """The merchant's state (None: not heard of) and its hash, for the card's merchant memory."""
        m = self.merchants.get(merchant_id)
        return m, (m.mhash if m is not None else merchant_hash(merchant_id))

    def read(self, merchant_id: str, ts: float, x: dict[str, float]) -> int:
        """Write the merchant's features at ``ts`` into ``x``; return its hash (card memory)."""
        m, mhash = self.find(merchant_id)
        self.book.read(m, ts, x)
        return mhash

    def read_bins(self, values: tuple[float, ...], x: dict[str, float]) -> None:
        """The bin indicators of a transaction's binned feature ``values``, against the edges of
        the sketches of the whole stream."""
        for b, v in zip(self._bins, values, strict=True):
            b.read(v, x)

    def send_event(
        self, merchant_id: str, ts: float, amount: float, values: tuple[float, ...] = ()
    ) -> None:
        """A transaction of ``merchant_id`` was scored, with its binned features' ``values``:
        the merchant stage must fold it."""
        if self._own_sketches is not None:  # settle
            self.book.fold_event(self._settle(merchant_id), ts, amount)
            self._own_sketches.fold(values)
            self._touch(ts)
            return
        key = merchant_id.encode()
        self.outbox.append(
            (records.partition_of(key, self.partitions), key, records.encode_event(ts, amount, values))
        )

    def send_label(self, merchant_id: str, known_ts: float, is_fraud: bool) -> None:
        """A label of a transaction of ``merchant_id``, known from ``known_ts`` on."""
        if self.settle:
            self.book.fold_label(self._settle(merchant_id), known_ts, is_fraud)
            self._touch(known_ts)
            return
        key = merchant_id.encode()
        self.outbox.append(
            (records.partition_of(key, self.partitions), key, records.encode_label(known_ts, is_fraud))
        )

    def _settle(self, merchant_id: str) -> MerchantState:
        m = self.merchants.get(merchant_id)
        if m is None:
            m = self.merchants[merchant_id] = self.book.new(merchant_id)
        return m

    def _touch(self, ts: float) -> None:
        if ts > self.watermark:
            self.watermark = ts

    # -- the topic's side -----------------------------------------------------------------------

    def apply(self, key: bytes | None, value: bytes | None, partition: int = 0) -> int:
        """One record of ``<group>.merchant-features`` (``None``: the merchant was evicted), from
        ``partition`` (a partition's quantile sketches replace its previous ones).

        Returns the wall-clock milliseconds of the oldest card-stage record this publication is
        the first to hold (0: none, a tombstone, or refused), from which the reader measures
        staleness. A value this table cannot read (other feature settings) is counted in
        :attr:`refused` and skipped; the merchant keeps its previous state.
        """
        if not key:
            self.refused += 1
            return 0
        if key == records.SKETCHES_KEY:
            self.sketches.apply(partition, value)
            return 0
        try:
            merchant_id = key.decode()
        except UnicodeDecodeError:
            self.refused += 1
            return 0
        if value is None:
            if self.merchants.pop(merchant_id, None) is not None:
                self.tombstones += 1
            return 0
        try:
            m, source_ms = self.book.loads(merchant_id, value)
        except StateError as exc:
            self.refused += 1
            if self.refused == 1:
                logger.error("merchant table: %s (the merchant stage runs other feature settings?)", exc)
            return 0
        self.merchants[merchant_id] = m
        self.applied += 1
        latest = self.book.latest(m)
        if latest > self.watermark:
            self.watermark = latest
        return source_ms

    def evict(self) -> int:
        """Drop the merchants idle past every window (the stage's rule, so that a tombstone that
        comes late finds nothing); at most once per ``evict_interval_s`` of the table's clock."""
        wm = self.watermark
        if wm < self._next_sweep:
            return 0
        self._next_sweep = wm + self._evict_interval_s
        idle = [k for k, m in self.merchants.items() if self.book.idle(m, wm)]
        for k in idle:
            del self.merchants[k]
        self.evicted += len(idle)
        return len(idle)

    def bytes_per_merchant(self) -> float:
        """Memory of one merchant in the table: its id, state object, arrays and risk ring."""
        if not self.merchants:
            m = self.book.new("m")
            ident = "m" * 12
        else:
            ident, m = next(iter(self.merchants.items()))
        parts = (m, m.counts, m.sums, m.cache_heads, m.cache, m.risk, ident)
        dict_slot = 3 * 8 * 1.5  # hash, key and value pointers, at the dict's usual load
        return float(sum(sys.getsizeof(p) for p in parts) + dict_slot)
