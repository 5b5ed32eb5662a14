"""One merchant's state as the merchant stage keeps it and the card workers read it.

The windows are those of :class:`~stream_scorer.features.merchant.MerchantLayout` and the fraud
rates those of :class:`~stream_scorer.features.risk.RiskRing`, the very code the feature engine
runs on its own merchants (the backtest): a merchant folded here reads the same features.

A published state is ``<cBIq`` (kind ``M``, format version, layout fingerprint, the wall-clock
milliseconds of the oldest record it folds that no earlier publication held), then the windows'
bytes, then the risk ring's. The fingerprint keeps a table from reading a stage run with other
feature settings.
"""

from __future__ import annotations

import math
import struct
import zlib

from stream_scorer.exceptions import StateError
from stream_scorer.features.card import merchant_hash
from stream_scorer.features.catalog import DAY_S
from stream_scorer.features.merchant import MerchantLayout, MerchantState
from stream_scorer.features.risk import RiskRing
from stream_scorer.features.settings import FeatureSettings

_HEADER = struct.Struct("<cBIq")
FORMAT_VERSION = 1


class MerchantBook:
    """Fold, read and (de)serialize merchant states for given feature settings."""

    def __init__(self, settings: FeatureSettings) -> None:
        s = settings
        self.layout = MerchantLayout(s)
        self.ring = RiskRing(
            "merchant", tuple(s.risk_windows_days), s.risk_prior_rate, s.risk_prior_weight,
            itemsize=2,
        )
        self.fingerprint = zlib.crc32(f"{self.layout.describe()}|{self.ring.describe()}".encode())
        self.horizon_s = max(self.layout.horizon_s, max(s.risk_windows_days) * DAY_S + s.grace_s)
        """A merchant untouched (no event, no label) for this long is evicted: the engine's rule."""
        self._windows_size = 16 + 16 * self.layout.n_buckets
        self._size = _HEADER.size + self._windows_size + self.ring.size
        self._scratch: dict[str, float] = {}

    def new(self, merchant_id: str) -> MerchantState:
        """A merchant never seen."""
        m = self.layout.new(merchant_hash(merchant_id))
        m.risk = bytearray(self.ring.size)
        return m

    # -- the merchant stage ---------------------------------------------------------------------

    def fold_event(self, m: MerchantState, ts: float, amount: float) -> bool:
        """Fold a transaction in (the engine's update, its features unread); True if late."""
        return self.layout.update(m, amount, ts, self._scratch)

    def fold_label(self, m: MerchantState, known_ts: float, is_fraud: bool) -> None:
        """Fold a label known from ``known_ts`` on (as the engine's ``observe_label``)."""
        self.layout.touch(m, known_ts)
        assert m.risk is not None
        self.ring.fold(m.risk, 0, known_ts, is_fraud)

    # -- the card workers -----------------------------------------------------------------------

    def read(self, m: MerchantState | None, ts: float, x: dict[str, float]) -> None:
        """The merchant's features at event time ``ts`` into ``x`` (none known: empty ones)."""
        if m is None:
            self.layout.read(_EMPTY, ts, x)
            self.ring.empty(x)
            return
        self.layout.read(m, ts, x)
        assert m.risk is not None
        self.ring.read(m.risk, 0, ts, x)

    # -- bytes ----------------------------------------------------------------------------------

    def dumps(self, m: MerchantState, source_ms: int) -> bytes:
        """The published value of ``m``."""
        assert m.risk is not None
        header = _HEADER.pack(b"M", FORMAT_VERSION, self.fingerprint, source_ms)
        return header + self.layout.dumps(m) + m.risk

    def loads(self, merchant_id: str, value: bytes) -> tuple[MerchantState, int]:
        """``(state, source_ms)`` from :meth:`dumps`'s bytes; StateError when they do not fit."""
        if len(value) != self._size:
            raise StateError(
                f"merchant state of {merchant_id!r} has {len(value)} bytes, not {self._size}: "
                "written with other feature settings or another format"
            )
        kind, version, fingerprint, source_ms = _HEADER.unpack_from(value, 0)
        if kind != b"M" or version != FORMAT_VERSION:
            raise StateError(f"merchant state of {merchant_id!r} has format {kind!r}/{version}")
        if fingerprint != self.fingerprint:
            raise StateError(f"merchant state of {merchant_id!r} was written with other feature settings")
        at = _HEADER.size + self._windows_size
        try:
            m = self.layout.loads(memoryview(value)[_HEADER.size : at], merchant_hash(merchant_id))
        except (ValueError, struct.error) as exc:
            raise StateError(f"merchant state of {merchant_id!r} is corrupt: {exc}") from exc
        m.risk = bytearray(value[at:])
        return m, int(source_ms)

    def idle(self, m: MerchantState, watermark_ts: float) -> bool:
        """Untouched for longer than every window and the grace: nothing of it can be read."""
        return m.seen_ts < watermark_ts - self.horizon_s

    def latest(self, m: MerchantState) -> float:
        """The latest time the merchant was touched, by an event or a label."""
        return m.seen_ts if m.seen_ts != -math.inf else m.max_ts


_EMPTY = MerchantState(0, 0, 1)
