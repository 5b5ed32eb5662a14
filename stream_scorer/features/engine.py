"""The feature engine: per-card and per-merchant state, the features of each event, durable state.

For each transaction, :meth:`FeatureEngine.update` reads the features from the state as it
stood *before* the event, then folds the event in. Windows follow ``event_time``:

* an event up to ``grace_s`` behind its entity's latest event time updates and reads its
  windows exactly (bucket resolution: see :mod:`stream_scorer.features.windows`);
* an older event is *late*: it is counted in :attr:`FeatureEngine.late_events`, and read and
  folded in as if it happened at ``latest - grace_s`` (the oldest time still kept exactly). So
  nothing is lost from long windows, and nothing is written into buckets already recycled.

Card and merchant clocks are separate; an event is late if it is late for either. Merchant risk
counts only labels known strictly before the event (see :mod:`stream_scorer.features.merchant`).

Durable state: :meth:`FeatureEngine.dump_key` / :meth:`FeatureEngine.load_key` give one entity's
bytes for a compacted changelog (keys ``c:<card>``, ``m:<merchant>``; ``None`` is a tombstone),
:meth:`FeatureEngine.snapshot` / :meth:`FeatureEngine.restore` the whole state. Both carry a
layout fingerprint of the settings, and a snapshot a CRC-32, so foreign bytes are refused.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Iterable

from stream_scorer.events import Transaction
from stream_scorer.exceptions import StateError
from stream_scorer.features.card import CardLayout, merchant_hash
from stream_scorer.features.catalog import CARD_WINDOWS, FEATURE_NAMES
from stream_scorer.features.merchant import MerchantLayout, MerchantState
from stream_scorer.features.settings import FeatureSettings

SNAPSHOT_MAGIC = b"SSFE"
SNAPSHOT_VERSION = 2
"""Bumped with every change of the bytes of a card or merchant (2: rings without a spare slot,
merchant memory with one-byte "hour before" ages); an engine reads only its own version."""
_SNAP_HEADER = struct.Struct("<4sHIQII")  # magic, version, layout, late events, cards, merchants
_CRC = struct.Struct("<I")  # CRC-32 of the header and the body, after the header
_KEY_LEN = struct.Struct("<H")
_VALUE_LEN = struct.Struct("<I")
_VALUE_HEADER = struct.Struct("<cBI")  # kind (b"C"/b"M"), format version, layout fingerprint
_VALUE_VERSION = SNAPSHOT_VERSION

_DAY_ANGLE = 2.0 * math.pi / 86_400.0
_WEEK_ANGLE = 2.0 * math.pi / (7 * 86_400.0)
_MONDAY_OFFSET_S = 3 * 86_400.0  # 1970-01-01 was a Thursday
_MAX_TS = 2**32 * 3_600.0 / 2  # hours since 1970 must fit the uint32 merchant memory


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

    def __init__(self, settings: FeatureSettings | None = None) -> None:
        self.settings = s = settings or FeatureSettings()
        self._card = CardLayout(s.grace_s, s.card_merchant_slots)
        self._merchant = MerchantLayout(s)
        self.fingerprint = zlib.crc32(
            f"{self._card.describe()}|{self._merchant.describe()}".encode()
        )
        self._card_value_header = _VALUE_HEADER.pack(b"C", _VALUE_VERSION, self.fingerprint)
        self._merchant_value_header = _VALUE_HEADER.pack(b"M", _VALUE_VERSION, self.fingerprint)
        self.card_horizon_s = max(w for _, w, _ in CARD_WINDOWS) + s.grace_s
        self.merchant_horizon_s = self._merchant.horizon_s
        self.cards: dict[str, bytearray] = {}
        self.merchants: dict[str, MerchantState] = {}
        self.late_events = 0
        self._dirty_cards: set[str] = set()
        self._dirty_merchants: set[str] = set()
        self._sweep: list[str] = []
        self._sweep_cards = 0
        self._sweep_pos = 0
        self._next_sweep_ts = -math.inf

    # -- the hot path ---------------------------------------------------------------------------

    def update(self, txn: Transaction, ts: float | None = None) -> dict[str, float]:
        """Features of ``txn`` from the state so far; then fold ``txn`` into that state."""
        if ts is None:
            ts = txn.event_ts
        return self.update_raw(txn.card_id, txn.merchant_id, txn.amount, ts)

    def update_raw(
        self, card_id: str, merchant_id: str, amount: float, ts: float
    ) -> dict[str, float]:
        """:meth:`update` from plain values (event time in epoch seconds): replays, benchmarks."""
        if not (amount >= 0.0 and 0.0 < ts < _MAX_TS):  # also refuses NaN; Transaction ensures it
            raise ValueError(
                f"amount must be >= 0 and event time in (0, {_MAX_TS:g}): {amount}, {ts}"
            )
        x = {"log_amount": math.log1p(amount)}
        m = self.merchants.get(merchant_id)
        if m is None:
            m = self.merchants[merchant_id] = self._merchant.new(merchant_hash(merchant_id))
        buf = self.cards.get(card_id)
        if buf is None:
            buf = self.cards[card_id] = self._card.new()
        late = self._card.update(buf, amount, ts, m.mhash, x)
        if self._merchant.update(m, amount, ts, x) or late:
            self.late_events += 1
        day = ts * _DAY_ANGLE
        week = (ts + _MONDAY_OFFSET_S) * _WEEK_ANGLE
        x["hour_sin"] = math.sin(day)
        x["hour_cos"] = math.cos(day)
        x["dow_sin"] = math.sin(week)
        x["dow_cos"] = math.cos(week)
        self._dirty_cards.add(card_id)
        self._dirty_merchants.add(merchant_id)
        return x

    def observe_label(
        self, merchant_id: str, is_fraud: bool, event_ts: float, label_ts: float
    ) -> None:
        """A label for a transaction at ``merchant_id`` at ``event_ts``, known from ``label_ts`` on.

        A label cannot be known before its transaction happened: ``label_ts`` is taken as at least
        ``event_ts``. Only events at or after that time see it (see :mod:`.merchant`).
        """
        m = self.merchants.get(merchant_id)
        if m is None:
            m = self.merchants[merchant_id] = self._merchant.new(merchant_hash(merchant_id))
        self._merchant.observe_label(m, is_fraud, max(label_ts, event_ts))
        self._dirty_merchants.add(merchant_id)

    # -- bounded memory ---------------------------------------------------------------------------

    def evict(self, watermark_ts: float) -> int:
        """Drop entities idle longer than their longest window + grace; return how many.

        Cheap enough to call every batch: a sweep over all entities starts at most once per
        ``evict_interval_s`` of watermark, and each call examines at most ``evict_keys_per_call``
        of them. Evicted keys become dirty, so the changelog gets their tombstones.

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
        merchant_cut = watermark_ts - self.merchant_horizon_s
        cards, merchants, latest = self.cards, self.merchants, CardLayout.latest
        evicted = 0
        for i in range(start, stop):
            key = self._sweep[i]
            if i < self._sweep_cards:
                buf = cards.get(key)
                if buf is not None and latest(buf) < card_cut:
                    del cards[key]
                    self._dirty_cards.add(key)
                    evicted += 1
            else:
                m = merchants.get(key)
                if m is not None and m.seen_ts < merchant_cut:
                    del merchants[key]
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
        """Keys (``c:<card>``, ``m:<merchant>``) changed or evicted since :meth:`clear_dirty`."""
        return {f"c:{k}" for k in self._dirty_cards} | {f"m:{k}" for k in self._dirty_merchants}

    def clear_dirty(self) -> None:
        """Forget the dirty keys (after their values reached the changelog)."""
        self._dirty_cards.clear()
        self._dirty_merchants.clear()

    def drain_changes(self) -> list[tuple[str, bytes | None]]:
        """``(key, dump_key(key))`` of every dirty key, then clear them: what a commit writes to
        the changelog, without building and splitting the keys' strings twice."""
        cards, merchants, dumps = self.cards, self.merchants, self._merchant.dumps
        ch, mh = self._card_value_header, self._merchant_value_header
        out: list[tuple[str, bytes | None]] = []
        append = out.append
        for ident in self._dirty_cards:
            buf = cards.get(ident)
            append(("c:" + ident, None if buf is None else ch + buf))
        for ident in self._dirty_merchants:
            m = merchants.get(ident)
            append(("m:" + ident, None if m is None else mh + dumps(m)))
        self.clear_dirty()
        return out

    def dump_key(self, key: str) -> bytes | None:
        """The state of one key as bytes, or None if it is not held (evicted: a tombstone)."""
        kind, ident = _split(key)
        if kind == "c":
            buf = self.cards.get(ident)
            return None if buf is None else self._card_value_header + buf
        m = self.merchants.get(ident)
        return None if m is None else self._merchant_value_header + self._merchant.dumps(m)

    def load_key(self, key: str, value: bytes | None) -> None:
        """Set one key's state from :meth:`dump_key`'s bytes (None removes it); not marked dirty."""
        kind, ident = _split(key)
        table: dict[str, bytearray] | dict[str, MerchantState] = (
            self.cards if kind == "c" else self.merchants
        )
        if value is None:
            table.pop(ident, None)
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
        else:
            try:
                self.merchants[ident] = self._merchant.loads(body, merchant_hash(ident))
            except (ValueError, struct.error) as exc:
                raise StateError(f"merchant state of {ident!r} is corrupt: {exc}") from exc

    def snapshot(self) -> bytes:
        """All state as bytes: a versioned header with a CRC-32 of the rest, then every card and
        merchant as ``(u16 key length, key, u32 value length, value)`` (no pickle)."""
        parts: list[bytes | bytearray] = []
        append = parts.append
        dump = self._merchant.dumps
        entries: Iterable[tuple[str, bytes | bytearray]] = itertools.chain(
            self.cards.items(), ((ident, dump(m)) for ident, m in self.merchants.items())
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
        )
        return header + _CRC.pack(zlib.crc32(body, zlib.crc32(header))) + body

    @classmethod
    def restore(cls, data: bytes, settings: FeatureSettings | None = None) -> FeatureEngine:
        """An engine with the state of :meth:`snapshot`'s bytes; StateError if they do not fit."""
        eng = cls(settings)
        view = memoryview(data)
        try:
            magic, version, fingerprint, late, n_cards, n_merchants = _SNAP_HEADER.unpack_from(view)
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
            for kind, count in (("c", n_cards), ("m", n_merchants)):
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
    kind, sep, ident = key.partition(":")
    if not sep or kind not in ("c", "m") or not ident:
        raise StateError(
            f"not a feature-state key: {key!r} (expected 'c:<card>' or 'm:<merchant>')"
        )
    return kind, ident
