"""The feature engine: per-card and per-merchant state, the features of each event, durable state.

For each transaction, :meth:`FeatureEngine.update` reads the features from the state as it
stood *before* the event, then folds the event in. Windows follow ``event_time``:

* an event up to ``grace_s`` behind its entity's latest event time updates and reads its
  windows exactly (bucket resolution: see :mod:`stream_scorer.features.windows`);
* an older event is *late*: it is counted in :attr:`FeatureEngine.late_events`, and read and
  folded in as if it happened at ``latest - grace_s`` (the oldest time still kept exactly). So
  nothing is lost from long windows, and nothing is written into buckets already recycled.

Card and merchant clocks are separate; an event is late if it is late for either. The fraud
rates of cards, merchants and category values count only labels known strictly before the event
(see :mod:`stream_scorer.features.risk`), read at the event's own time, late or not.

Durable state: :meth:`FeatureEngine.dump_key` / :meth:`FeatureEngine.load_key` give one key's
bytes for a compacted changelog (keys ``c:<card>``, ``m:<merchant>``, ``k:<attribute>=<value>``
and ``g:bins``; ``None`` is a tombstone),
:meth:`FeatureEngine.snapshot` / :meth:`FeatureEngine.restore` the whole state. Both carry a
layout fingerprint of the settings, and a snapshot a CRC-32, so foreign bytes are refused.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import orjson

from stream_scorer.events import Transaction
from stream_scorer.exceptions import StateError
from stream_scorer.features.bins import QuantileBins
from stream_scorer.features.card import CardLayout, merchant_hash
from stream_scorer.features.catalog import CARD_WINDOWS, DAY_S, FEATURE_NAMES, feature_catalog
from stream_scorer.features.merchant import MerchantLayout, MerchantState
from stream_scorer.features.novelty import CardMemory
from stream_scorer.features.risk import RiskRing
from stream_scorer.features.settings import FeatureSettings

if TYPE_CHECKING:
    from stream_scorer.merchants.table import MerchantTable

SNAPSHOT_MAGIC = b"SSFE"
SNAPSHOT_VERSION = 3
"""Bumped with every change of the bytes of a card or merchant (2: rings without a spare slot,
merchant memory with one-byte "hour before" ages; 3: risk rings of cards, merchants and category
values, card memory of devices and countries, quantile sketches); an engine reads only its own."""
_SNAP_HEADER = struct.Struct("<4sHIQIII")  # magic, version, layout, late, cards, merchants, values
_CRC = struct.Struct("<I")  # CRC-32 of the header and the body, after the header
_KEY_LEN = struct.Struct("<H")
_VALUE_LEN = struct.Struct("<I")
_VALUE_HEADER = struct.Struct("<cBI")  # kind (b"C"/b"M"), format version, layout fingerprint
_VALUE_VERSION = SNAPSHOT_VERSION

LabelParts = tuple[str, str, str | None, str | None, str | None]
"""Merchant, card, MCC, country and channel of a transaction: where its label goes."""

_DAY_ANGLE = 2.0 * math.pi / 86_400.0
_WEEK_ANGLE = 2.0 * math.pi / (7 * 86_400.0)
_MONDAY_OFFSET_S = 3 * 86_400.0  # 1970-01-01 was a Thursday
_MAX_TS = 2**32 * 3_600.0 / 2  # hours since 1970 must fit the uint32 merchant memory
_NO_SIGNALS: dict[str, float | None] = {}
BINS_KEY = "g:bins"
"""The changelog key of the partition's quantile sketches."""
MAX_CATEGORY_VALUES = 100_000
"""Category values (MCCs, countries, channels) a partition keeps risk rings for, at most."""


class FeatureEngine:
    """Online features of a transaction stream, with state that can be snapshotted and restored.

    >>> from datetime import datetime, UTC
    >>> eng = FeatureEngine()
    >>> t = lambda a, m: Transaction(transaction_id="t", card_id="c", merchant_id=m,
    ...     event_time=datetime(2026, 1, 1, tzinfo=UTC), amount=a, currency="EUR")
    >>> eng.update(t(10.0, "m1"))["card_merchant_new"]
    1.0
    >>> eng.update(t(30.0, "m1"))["card_amount_ratio"]
    3.0
    """

    names: tuple[str, ...] = FEATURE_NAMES
    """The features in output order (with default settings; an engine's own are on the instance)."""

    def __init__(
        self, settings: FeatureSettings | None = None, table: MerchantTable | None = None
    ) -> None:
        self.settings = s = settings or FeatureSettings()
        self.table = table
        """Where merchant features come from: ``None``, this engine's own merchants (one
        partition's view: the backtest, score-file); else the merchant stage's global table,
        which this engine tells of each transaction and label (the live worker)."""
        self.names = tuple(feature_catalog(s))
        self._memory = CardMemory(s.card_memory_slots)
        windows = tuple(s.risk_windows_days)
        prior = (s.risk_prior_rate, s.risk_prior_weight)
        self._card_risk = RiskRing("card", windows, *prior, itemsize=1)
        self._merchant_risk = RiskRing("merchant", windows, *prior, itemsize=2)
        self._category_risk: dict[str, RiskRing] = {
            a: RiskRing(a, windows, *prior, itemsize=4) for a in s.category_risk
        }
        self._card = CardLayout(
            s.grace_s, s.card_merchant_slots, extra=self._memory.size + self._card_risk.size
        )
        self._memory_at = self._card.core_size
        self._risk_at = self._memory_at + self._memory.size
        self._merchant = MerchantLayout(s)
        self._bins = tuple(
            QuantileBins(f, tuple(s.bin_levels), refresh_every=s.bin_refresh_every,
                         min_count=s.bin_min_count)
            for f in s.bins
        )
        self._bin_names = {n: b for b in self._bins for n in b.names}
        self._signals = tuple((n, f"signal_{n}", f"signal_{n}_missing") for n in s.signals)
        parts = [
            self._card.describe(), self._memory.describe(), self._card_risk.describe(),
            self._merchant.describe(), self._merchant_risk.describe(),
            *(r.describe() for r in self._category_risk.values()),
            *(b.describe() for b in self._bins),
        ]
        self.fingerprint = zlib.crc32("|".join(parts).encode())
        self._card_value_header = _VALUE_HEADER.pack(b"C", _VALUE_VERSION, self.fingerprint)
        self._merchant_value_header = _VALUE_HEADER.pack(b"M", _VALUE_VERSION, self.fingerprint)
        self._category_value_header = _VALUE_HEADER.pack(b"K", _VALUE_VERSION, self.fingerprint)
        self._bins_value_header = _VALUE_HEADER.pack(b"G", _VALUE_VERSION, self.fingerprint)
        risk_horizon_s = max(windows) * DAY_S + s.grace_s
        self.card_horizon_s = max(w for _, w, _ in CARD_WINDOWS) + s.grace_s
        self.card_risk_horizon_s = risk_horizon_s
        self.merchant_horizon_s = max(self._merchant.horizon_s, risk_horizon_s)
        self.cards: dict[str, bytearray] = {}
        self.merchants: dict[str, MerchantState] = {}
        self.merchant_risk: dict[str, bytearray] = {}
        self.categories: dict[str, bytearray] = {}
        """Risk rings of category values, keyed ``<attribute>=<value>`` (``mcc=5411``)."""
        self.late_events = 0
        self._dirty_cards: set[str] = set()
        self._dirty_merchants: set[str] = set()
        self._dirty_categories: set[str] = set()
        self._bins_dirty = False
        self._sweep: list[str] = []
        self._sweep_cards = 0
        self._sweep_pos = 0
        self._next_sweep_ts = -math.inf

    # -- the hot path ---------------------------------------------------------------------------

    def update(self, txn: Transaction, ts: float | None = None) -> dict[str, float]:
        """Features of ``txn`` from the state so far; then fold ``txn`` into that state."""
        if ts is None:
            ts = txn.event_ts
        return self.update_raw(
            txn.card_id,
            txn.merchant_id,
            txn.amount,
            ts,
            (txn.device_id, txn.country, txn.channel, txn.mcc),
            txn.signals,
        )

    def update_raw(
        self,
        card_id: str,
        merchant_id: str,
        amount: float,
        ts: float,
        attributes: tuple[str | None, ...] = (None, None, None, None),
        signals: dict[str, float | None] | None = None,
    ) -> dict[str, float]:
        """:meth:`update` from plain values (event time in epoch seconds): replays, benchmarks.

        ``attributes`` are the event's device, country, channel and MCC (None: absent).
        """
        if not (amount >= 0.0 and 0.0 < ts < _MAX_TS):  # also refuses NaN; Transaction ensures it
            raise ValueError(
                f"amount must be >= 0 and event time in (0, {_MAX_TS:g}): {amount}, {ts}"
            )
        x = {"log_amount": math.log1p(amount)}
        table = self.table
        buf = self.cards.get(card_id)
        if buf is None:
            buf = self.cards[card_id] = self._card.new()
        if table is None:
            m = self.merchants.get(merchant_id)
            if m is None:
                m = self._new_merchant(merchant_id)
            late = self._card.update(buf, amount, ts, m.mhash, x)
            self._memory.update(buf, self._memory_at, attributes, x)
            self._card_risk.read(buf, self._risk_at, ts, x)
            if self._merchant.update(m, amount, ts, x) or late:
                self.late_events += 1
            self._merchant_risk.read(self.merchant_risk[merchant_id], 0, ts, x)
            self._dirty_merchants.add(merchant_id)
        else:
            # The same features in the same order, the merchant's read from the global table.
            m, mhash = table.find(merchant_id)
            if self._card.update(buf, amount, ts, mhash, x):
                self.late_events += 1
            self._memory.update(buf, self._memory_at, attributes, x)
            self._card_risk.read(buf, self._risk_at, ts, x)
            table.book.read(m, ts, x)
        if self._category_risk:
            self._read_categories(attributes, ts, x)
        if self._signals:
            self._read_signals(signals, x)
        day = ts * _DAY_ANGLE
        week = (ts + _MONDAY_OFFSET_S) * _WEEK_ANGLE
        x["hour_sin"] = math.sin(day)
        x["hour_cos"] = math.cos(day)
        x["dow_sin"] = math.sin(week)
        x["dow_cos"] = math.cos(week)
        if table is not None:
            # The bins' edges too come from the whole stream: the stage counts the values.
            values = tuple(x[b.feature] for b in self._bins)
            if values:
                table.read_bins(values, x)
            table.send_event(merchant_id, ts, amount, values)
        elif self._bins:
            for b in self._bins:
                v = x[b.feature]
                b.read(v, x)
                b.update(v)
            self._bins_dirty = True
        self._dirty_cards.add(card_id)
        return x

    def _new_merchant(self, merchant_id: str) -> MerchantState:
        m = self.merchants[merchant_id] = self._merchant.new(merchant_hash(merchant_id))
        self.merchant_risk[merchant_id] = bytearray(self._merchant_risk.size)
        return m

    def _read_categories(
        self, attributes: tuple[str | None, ...], ts: float, x: dict[str, float]
    ) -> None:
        _, country, channel, mcc = attributes
        values = {"mcc": mcc, "country": country, "channel": channel}
        categories = self.categories
        for attr, ring in self._category_risk.items():
            value = values[attr]
            buf = categories.get(f"{attr}={value}") if value is not None else None
            if buf is None:
                ring.empty(x)
            else:
                ring.read(buf, 0, ts, x)

    def _read_signals(self, signals: dict[str, float | None] | None, x: dict[str, float]) -> None:
        get = signals.get if signals else _NO_SIGNALS.get
        for name, feature, missing in self._signals:
            v = get(name)
            if v is None or not math.isfinite(v):
                x[feature] = 0.0
                x[missing] = 1.0
            else:
                x[feature] = v
                x[missing] = 0.0

    def label_key(self, txn: Transaction) -> str:
        """What a label of ``txn`` needs to reach every entity it teaches: the merchant, the card
        and the category values, in one string (kept with the transaction until its label)."""
        return orjson.dumps(self.label_parts(txn)).decode()

    def label_parts(self, txn: Transaction) -> LabelParts:
        """:meth:`label_key`'s values as a tuple, for a label learned at once: nothing is kept,
        so no string needs to be written and parsed back."""
        return (txn.merchant_id, txn.card_id, txn.mcc, txn.country, txn.channel)

    def observe_label(
        self, key: str | LabelParts, is_fraud: bool, event_ts: float, label_ts: float
    ) -> None:
        """A label for a transaction at ``event_ts``, known from ``label_ts`` on.

        ``key`` is :meth:`label_key` of the transaction, or its :meth:`label_parts` (or, from
        older state, its merchant id alone). A label cannot be known before its transaction
        happened: ``label_ts`` is taken as at least ``event_ts``. Only events after that time see
        it (see :mod:`.risk`).
        """
        known = max(label_ts, event_ts)
        parts: Sequence[str | None]
        if isinstance(key, tuple):
            parts = key
        elif not key.startswith("["):
            parts = [key]
        else:  # a merchant id of older state may start with "[" too
            parts = [key]
            try:
                parsed = orjson.loads(key)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list) and len(parsed) == 5:
                parts = parsed
        merchant_id = str(parts[0])
        if self.table is not None:
            self.table.send_label(merchant_id, known, is_fraud)
        else:
            m = self.merchants.get(merchant_id)
            if m is None:
                m = self._new_merchant(merchant_id)
            self._merchant.touch(m, known)
            self._merchant_risk.fold(self.merchant_risk[merchant_id], 0, known, is_fraud)
            self._dirty_merchants.add(merchant_id)
        if len(parts) != 5:
            return
        _, card_id, mcc, country, channel = parts
        buf = self.cards.get(str(card_id))
        if buf is not None:  # a card evicted since holds no history its risk could join
            self._card_risk.fold(buf, self._risk_at, known, is_fraud)
            self._dirty_cards.add(str(card_id))
        values = {"mcc": mcc, "country": country, "channel": channel}
        for attr, ring in self._category_risk.items():
            value = values[attr]
            if not value:
                continue
            ckey = f"{attr}={value}"
            cbuf = self.categories.get(ckey)
            if cbuf is None:
                if len(self.categories) >= MAX_CATEGORY_VALUES:
                    continue
                cbuf = self.categories[ckey] = bytearray(ring.size)
            ring.fold(cbuf, 0, known, is_fraud)
            self._dirty_categories.add(ckey)

    def reason_text(self, feature: str) -> str:
        """A feature's name as a reason code: a bin indicator names its feature and edge in words
        (``log_amount >= 5.4 (top 1%)``); any other feature is its own name."""
        b = self._bin_names.get(feature)
        if b is None:
            return feature
        return b.edge_text(feature) or feature

    # -- bounded memory ---------------------------------------------------------------------------

    def evict(self, watermark_ts: float) -> int:
        """Drop entities idle longer than their longest window + grace; return how many.

        A card is idle when both its latest event and its latest label are older than their
        windows (so a card keeps what its labels taught it while they can still be read).
        Cheap enough to call every batch: a sweep over all entities starts at most once per
        ``evict_interval_s`` of watermark, and each call examines at most ``evict_keys_per_call``
        of them. Evicted keys become dirty, so the changelog gets their tombstones. Category
        values are few and never evicted.

        ``watermark_ts`` should never go back (e.g. the partition's latest event time). Sweep
        timing is not part of the durable state: a restored engine sweeps at its first call.
        """
        s = self.settings
        if self._sweep_pos >= len(self._sweep):
            if watermark_ts < self._next_sweep_ts:
                return 0
            self._sweep = [*self.cards, *self.merchants]
            self._sweep_cards = len(self.cards)
            self._sweep_pos = 0
            self._next_sweep_ts = watermark_ts + s.evict_interval_s
        start, stop = (
            self._sweep_pos,
            min(self._sweep_pos + s.evict_keys_per_call, len(self._sweep)),
        )
        self._sweep_pos = stop
        card_cut = watermark_ts - self.card_horizon_s
        card_risk_cut = watermark_ts - self.card_risk_horizon_s
        merchant_cut = watermark_ts - self.merchant_horizon_s
        cards, merchants, latest = self.cards, self.merchants, CardLayout.latest
        last_label, risk_at = self._card_risk.last, self._risk_at
        evicted = 0
        for i in range(start, stop):
            key = self._sweep[i]
            if i < self._sweep_cards:
                buf = cards.get(key)
                if (
                    buf is not None
                    and latest(buf) < card_cut
                    and last_label(buf, risk_at) < card_risk_cut
                ):
                    del cards[key]
                    self._dirty_cards.add(key)
                    evicted += 1
            else:
                m = merchants.get(key)
                if m is not None and m.seen_ts < merchant_cut:
                    del merchants[key]
                    del self.merchant_risk[key]
                    self._dirty_merchants.add(key)
                    evicted += 1
        if stop >= len(self._sweep):
            self._sweep = []
            self._sweep_pos = 0
        return evicted

    def n_entities(self) -> int:
        """Cards plus merchants held in memory."""
        return len(self.cards) + len(self.merchants)

    # -- durable state: a changelog per key, snapshots of the whole -------------------------------

    def dirty_keys(self) -> set[str]:
        """Keys changed or evicted since :meth:`clear_dirty`: ``c:<card>``, ``m:<merchant>``,
        ``k:<attribute>=<value>``, and ``g:bins`` for the quantile sketches."""
        keys = {f"c:{k}" for k in self._dirty_cards} | {f"m:{k}" for k in self._dirty_merchants}
        keys |= {f"k:{k}" for k in self._dirty_categories}
        if self._bins_dirty:
            keys.add(BINS_KEY)
        return keys

    def clear_dirty(self) -> None:
        """Forget the dirty keys (after their values reached the changelog)."""
        self._dirty_cards.clear()
        self._dirty_merchants.clear()
        self._dirty_categories.clear()
        self._bins_dirty = False

    def drain_changes(self) -> list[tuple[str, bytes | None]]:
        """``(key, dump_key(key))`` of every dirty key, then clear them: what a commit writes to
        the changelog, without building and splitting the keys' strings twice."""
        cards, merchants, dumps = self.cards, self.merchants, self._merchant.dumps
        risk = self.merchant_risk
        ch, mh, kh = self._card_value_header, self._merchant_value_header, self._category_value_header
        out: list[tuple[str, bytes | None]] = []
        append = out.append
        for ident in self._dirty_cards:
            buf = cards.get(ident)
            append(("c:" + ident, None if buf is None else ch + buf))
        for ident in self._dirty_merchants:
            m = merchants.get(ident)
            append(("m:" + ident, None if m is None else mh + dumps(m) + risk[ident]))
        for ident in self._dirty_categories:
            append(("k:" + ident, kh + self.categories[ident]))
        if self._bins_dirty:
            append((BINS_KEY, self._dump_bins()))
        self.clear_dirty()
        return out

    def dump_key(self, key: str) -> bytes | None:
        """The state of one key as bytes, or None if it is not held (evicted: a tombstone)."""
        kind, ident = _split(key)
        if kind == "c":
            buf = self.cards.get(ident)
            return None if buf is None else self._card_value_header + buf
        if kind == "m":
            m = self.merchants.get(ident)
            if m is None:
                return None
            return self._merchant_value_header + self._merchant.dumps(m) + self.merchant_risk[ident]
        if kind == "k":
            cbuf = self.categories.get(ident)
            return None if cbuf is None else self._category_value_header + cbuf
        return self._dump_bins()

    def _dump_bins(self) -> bytes:
        parts: list[bytes] = [self._bins_value_header]
        for b in self._bins:
            data = b.dumps()
            parts.append(_VALUE_LEN.pack(len(data)))
            parts.append(data)
        return b"".join(parts)

    def load_key(self, key: str, value: bytes | None) -> None:
        """Set one key's state from :meth:`dump_key`'s bytes (None removes it); not marked dirty."""
        kind, ident = _split(key)
        if value is None:
            if kind == "c":
                self.cards.pop(ident, None)
            elif kind == "m":
                self.merchants.pop(ident, None)
                self.merchant_risk.pop(ident, None)
            elif kind == "k":
                self.categories.pop(ident, None)
            return
        try:
            tag, version, fingerprint = _VALUE_HEADER.unpack_from(value, 0)
        except struct.error as exc:
            raise StateError(f"state value of {key!r} is truncated") from exc
        if tag != kind.upper().encode():
            raise StateError(f"state value of {key!r} is not a {kind!r} value")
        if version != _VALUE_VERSION:
            raise StateError(
                f"state value of {key!r} has format version {version}; this engine reads only "
                f"version {_VALUE_VERSION}: rebuild the state (new changelog topic or replay)"
            )
        if fingerprint != self.fingerprint:
            raise StateError(f"state value of {key!r} was written with other feature settings")
        body = value[_VALUE_HEADER.size :]
        self._load_body(kind, ident, body)

    def _load_body(self, kind: str, ident: str, body: bytes | memoryview) -> None:
        if kind == "c":
            if len(body) != self._card.size:
                raise StateError(
                    f"card state of {ident!r} has {len(body)} bytes, not {self._card.size}"
                )
            self.cards[ident] = bytearray(body)
        elif kind == "m":
            n_risk = self._merchant_risk.size
            try:
                if len(body) < n_risk:
                    raise ValueError("shorter than its risk ring")
                self.merchants[ident] = self._merchant.loads(body[:-n_risk], merchant_hash(ident))
            except (ValueError, struct.error) as exc:
                raise StateError(f"merchant state of {ident!r} is corrupt: {exc}") from exc
            self.merchant_risk[ident] = bytearray(body[-n_risk:])
        elif kind == "k":
            attr = ident.partition("=")[0]
            ring = self._category_risk.get(attr)
            if ring is None or len(body) != ring.size:
                raise StateError(f"category state of {ident!r} does not fit these settings")
            self.categories[ident] = bytearray(body)
        else:
            self._load_bins(body)

    def _load_bins(self, body: bytes | memoryview) -> None:
        at = 0
        try:
            for b in self._bins:
                (n,) = _VALUE_LEN.unpack_from(body, at)
                at += _VALUE_LEN.size
                b.loads(body[at : at + n])
                at += n
        except (ValueError, struct.error) as exc:
            raise StateError(f"quantile sketches are corrupt: {exc}") from exc
        if at != len(body):
            raise StateError("quantile sketches have trailing bytes")

    def snapshot(self) -> bytes:
        """All state as bytes: a versioned header with a CRC-32 of the rest, then every card,
        merchant and category value as ``(u16 key length, key, u32 value length, value)``, then
        the quantile sketches (no pickle)."""
        parts: list[bytes | bytearray] = []
        append = parts.append
        dump, risk = self._merchant.dumps, self.merchant_risk
        entries: Iterable[tuple[str, bytes | bytearray]] = itertools.chain(
            self.cards.items(),
            ((ident, dump(m) + risk[ident]) for ident, m in self.merchants.items()),
            self.categories.items(),
            ((BINS_KEY, self._dump_bins()[_VALUE_HEADER.size :]),),
        )
        for ident, value in entries:
            k = ident.encode()
            append(_KEY_LEN.pack(len(k)))
            append(k)
            append(_VALUE_LEN.pack(len(value)))
            append(value)
        body = b"".join(parts)
        header = _SNAP_HEADER.pack(
            SNAPSHOT_MAGIC,
            SNAPSHOT_VERSION,
            self.fingerprint,
            self.late_events,
            len(self.cards),
            len(self.merchants),
            len(self.categories),
        )
        return header + _CRC.pack(zlib.crc32(body, zlib.crc32(header))) + body

    @classmethod
    def restore(
        cls, data: bytes, settings: FeatureSettings | None = None, table: MerchantTable | None = None
    ) -> FeatureEngine:
        """An engine with the state of :meth:`snapshot`'s bytes; StateError if they do not fit."""
        eng = cls(settings, table)
        view = memoryview(data)
        try:
            magic, version, fingerprint, late, n_cards, n_merchants, n_categories = (
                _SNAP_HEADER.unpack_from(view)
            )
            (crc,) = _CRC.unpack_from(view, _SNAP_HEADER.size)
        except struct.error as exc:
            raise StateError("feature snapshot is truncated") from exc
        if magic != SNAPSHOT_MAGIC:
            raise StateError("not a feature-engine snapshot")
        if version != SNAPSHOT_VERSION:
            raise StateError(
                f"feature snapshot has format version {version}; this engine reads only "
                f"version {SNAPSHOT_VERSION}"
            )
        if fingerprint != eng.fingerprint:
            raise StateError("feature snapshot was written with other feature settings")
        at = _SNAP_HEADER.size + _CRC.size
        if zlib.crc32(view[at:], zlib.crc32(view[: _SNAP_HEADER.size])) != crc:
            raise StateError("feature snapshot does not match its CRC-32: truncated or damaged")
        try:
            for kind, count in (("c", n_cards), ("m", n_merchants), ("k", n_categories), ("g", 1)):
                for _ in range(count):
                    (klen,) = _KEY_LEN.unpack_from(view, at)
                    at += 2
                    ident = bytes(view[at : at + klen]).decode()
                    at += klen
                    (vlen,) = _VALUE_LEN.unpack_from(view, at)
                    at += 4
                    if at + vlen > len(view):
                        raise StateError("feature snapshot is truncated")
                    eng._load_body(kind, ident, view[at : at + vlen])
                    at += vlen
        except (struct.error, UnicodeDecodeError) as exc:
            raise StateError(f"feature snapshot is corrupt: {exc}") from exc
        if at != len(view):
            raise StateError("feature snapshot has trailing bytes")
        eng.late_events = late
        return eng


def _split(key: str) -> tuple[str, str]:
    if key == BINS_KEY:
        return "g", "bins"
    kind, sep, ident = key.partition(":")
    if not sep or kind not in ("c", "m", "k") or not ident:
        raise StateError(
            f"not a feature-state key: {key!r} "
            "(expected 'c:<card>', 'm:<merchant>', 'k:<attribute>=<value>' or 'g:bins')"
        )
    return kind, ident
