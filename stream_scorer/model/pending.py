"""Scored transactions waiting for their label, so that a late label teaches the model exactly the
features it was scored on.

One store per partition (labels are keyed by card, like transactions, so a label reaches the
partition that scored its transaction). Bounded two ways, both counted, neither raising:

- ``max_entries``: when full, the oldest entry (in arrival order) makes room (``evicted_full``);
- ``max_age_s`` in *event* time: :meth:`PendingStore.evict` drops entries older than the
  watermark minus the age (``expired``). Arrival order is event order up to small disorder, so
  eviction walks from the oldest end and stops at the first young entry.

A label whose entry is gone is counted, never an error: ``expired_labels`` when the store still
remembers dropping that id (a bounded memory of recently dropped ids), ``unknown_labels``
otherwise (never seen here, or forgotten); a second label for the same transaction is counted as
``duplicate_labels``.

The store serializes to bytes with orjson (plain data, no pickle) and back.

>>> s = PendingStore(max_entries=2, max_age_s=60.0)
>>> s.put("t1", {"a": 1.0}, "m1", 0.0); s.put("t2", {"a": 2.0}, "m1", 30.0)
>>> s.evict(watermark_ts=70.0)
1
>>> s.pop("t1") is None, s.counters["expired_labels"], s.pop("t2").label_key
(True, 1, 'm1')
>>> PendingStore.restore(s.snapshot()).counters == s.counters
True
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from stream_scorer.exceptions import CheckpointError

FORMAT_VERSION = 1
_EXPIRED, _APPLIED = 0, 1


class Pending(NamedTuple):
    """What the scorer saw of a transaction when it scored it."""

    features: dict[str, float]
    label_key: str
    """Where its label must go besides the model: the feature engine's ``label_key`` of the
    transaction (its merchant, card and category values), or its merchant id alone."""
    event_ts: float


class PendingStore:
    """A bounded map ``transaction_id -> Pending`` with event-time expiry."""

    COUNTERS = (
        "added",
        "applied_labels",
        "expired",
        "evicted_full",
        "expired_labels",
        "unknown_labels",
        "duplicate_labels",
        "replaced",
    )

    def __init__(self, max_entries: int = 200_000, max_age_s: float = 14 * 86_400.0) -> None:
        if max_entries < 1 or max_age_s <= 0:
            raise ValueError("max_entries must be >= 1 and max_age_s > 0")
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.entries: dict[str, Pending] = {}
        # Ids dropped recently (by age or room) or already labelled, to tell late labels from
        # unknown ones; as bounded as the entries themselves.
        self.gone: dict[str, int] = {}
        self.counters: dict[str, int] = dict.fromkeys(self.COUNTERS, 0)
        # Entries added (Pending) or removed (None) since drain_changes(), when tracked: what the
        # live worker writes to its changelog. None: not tracked (backtests, one-off scoring).
        self.changes: dict[str, Pending | None] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, transaction_id: object) -> bool:
        return transaction_id in self.entries

    def put(
        self, transaction_id: str, features: dict[str, float], label_key: str, event_ts: float
    ) -> None:
        """Remember what ``transaction_id`` was scored on (a re-scored id replaces its entry)."""
        entries = self.entries
        if transaction_id in entries:
            # Re-delivery (at-least-once): the latest scoring is what the label should teach.
            del entries[transaction_id]
            self.counters["replaced"] += 1
        elif len(entries) >= self.max_entries:
            oldest = next(iter(entries))
            del entries[oldest]
            self._forget(oldest, _EXPIRED)
            self.counters["evicted_full"] += 1
        entry = entries[transaction_id] = Pending(features, label_key, event_ts)
        self.counters["added"] += 1
        if self.changes is not None:
            self.changes[transaction_id] = entry

    def pop(self, transaction_id: str) -> Pending | None:
        """Take the entry of a labelled transaction; ``None`` (and counted) when it is not here."""
        entry = self.entries.pop(transaction_id, None)
        if entry is not None:
            self._forget(transaction_id, _APPLIED)
            if self.changes is not None:
                self.changes[transaction_id] = None
            self.counters["applied_labels"] += 1
            return entry
        why = self.gone.get(transaction_id)
        if why == _EXPIRED:
            self.counters["expired_labels"] += 1
        elif why == _APPLIED:
            self.counters["duplicate_labels"] += 1
        else:
            self.counters["unknown_labels"] += 1
        return None

    def evict(self, watermark_ts: float) -> int:
        """Drop entries dated before ``watermark_ts - max_age_s``; return how many."""
        horizon = watermark_ts - self.max_age_s
        entries = self.entries
        n = 0
        while entries:
            tid = next(iter(entries))
            if entries[tid].event_ts >= horizon:
                break
            del entries[tid]
            self._forget(tid, _EXPIRED)
            n += 1
        self.counters["expired"] += n
        return n

    def track_changes(self) -> None:
        """From now on, remember what changed, for :meth:`drain_changes`."""
        if self.changes is None:
            self.changes = {}

    def drain_changes(self) -> dict[str, Pending | None]:
        """Entries added or removed since the last call (None: removed), and forget them."""
        changes = self.changes
        if not changes:
            return {}
        self.changes = {}
        return changes

    def load_entry(self, transaction_id: str, entry: Pending | None) -> None:
        """Set or remove one entry as a changelog restores it (not counted, not tracked)."""
        if entry is None:
            self.entries.pop(transaction_id, None)
        else:
            self.entries.pop(transaction_id, None)
            self.entries[transaction_id] = entry

    def _forget(self, transaction_id: str, why: int) -> None:
        if self.changes is not None:
            self.changes[transaction_id] = None
        gone = self.gone
        if len(gone) >= self.max_entries:
            del gone[next(iter(gone))]
        gone[transaction_id] = why

    # -- bytes ----------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The store as orjson bytes: bounds, entries in order, dropped ids, counters."""
        return orjson.dumps(
            {
                "format": FORMAT_VERSION,
                "max_entries": self.max_entries,
                "max_age_s": self.max_age_s,
                "entries": [
                    [k, e.features, e.label_key, e.event_ts] for k, e in self.entries.items()
                ],
                "gone": [[k, v] for k, v in self.gone.items()],
                "counters": self.counters,
            }
        )

    @classmethod
    def restore(cls, data: bytes) -> PendingStore:
        """The store :meth:`snapshot` wrote; raises :class:`CheckpointError` on bad bytes."""
        try:
            obj: dict[str, Any] = orjson.loads(data)
            if obj.get("format") != FORMAT_VERSION:
                raise ValueError(f"unknown format {obj.get('format')!r}")
            store = cls(int(obj["max_entries"]), float(obj["max_age_s"]))
            store.entries = {
                str(k): Pending({str(n): float(v) for n, v in f.items()}, str(m), float(ts))
                for k, f, m, ts in obj["entries"]
            }
            store.gone = {str(k): int(v) for k, v in obj["gone"]}
            store.counters.update(
                {k: int(v) for k, v in obj["counters"].items() if k in store.counters}
            )
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"cannot restore the pending store: {exc}") from exc
        return store
