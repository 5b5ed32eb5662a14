"""De-duplication: a transaction id seen again within the last ``window`` ids of its partition is a
repeat (a producer retry, a replayed file), dead-lettered instead of scored twice.

The memory is per input partition, so it moves with the partition. After a restart, a rebalance
or a rewind it is recalled from the input itself (:func:`recall`): the valid, first-seen ids among
the ``window`` records before the committed offset, which is what a worker that never stopped
would remember. Nothing extra is logged per event.

>>> ids = RecentIds(window=2)
>>> [ids.add(t) for t in ("a", "b", "a", "c", "a")]
[True, True, False, True, True]
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from stream_scorer.decode import Rejection


class RecentIds:
    """The last ``window`` distinct ids of one partition, oldest forgotten first.

    A set answers "seen?", a ring (deque) beside it says which id is the oldest: both constant
    time. (A dict evicted with ``del d[next(iter(d))]`` is not: its iteration walks over every
    deleted slot before the first live one, so an eviction costs more and more until the dict
    resizes, tens of microseconds per event once a partition has seen the window.)
    """

    __slots__ = ("_ids", "_ring", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self._ids: set[str] = set()
        self._ring: deque[str] = deque()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, tid: str) -> bool:
        return tid in self._ids

    def add(self, tid: str) -> bool:
        """Remember ``tid``; False when it is a repeat (then nothing changes)."""
        ids = self._ids
        if tid in ids:
            return False
        ids.add(tid)
        ring = self._ring
        ring.append(tid)
        if len(ring) > self.window:
            ids.discard(ring.popleft())
        return True


class Dedupe:
    """Per partition, the recent transaction ids (``window`` 0: de-duplication is off)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.partitions: dict[int, RecentIds] = {}

    def partition(self, p: int) -> RecentIds:
        ids = self.partitions.get(p)
        if ids is None:
            ids = self.partitions[p] = RecentIds(self.window)
        return ids

    def drop(self, p: int) -> None:
        self.partitions.pop(p, None)

    def recall(self, p: int, committed: int, read: Callable[..., Any], decode: Callable[..., Any]) -> RecentIds:
        """Rebuild partition ``p``'s memory from the ``window`` input records before the
        ``committed`` offset: ``read(start, apply, end)`` calls ``apply(key, value)`` for each,
        in order (:func:`input_reader`); ``decode(value, now)`` is the worker's decoder (rejected
        records are not ids)."""
        ids = self.partitions[p] = RecentIds(self.window)
        if not self.window or committed <= 0:
            return ids
        now = time.time()
        add = ids.add

        def remember(key: bytes, value: bytes | None) -> None:
            txn = decode(value, now)
            if type(txn) is not Rejection:
                add(txn.transaction_id)

        read(committed - self.window, remember, committed)
        return ids


def input_reader(settings: Any, partition: int) -> Callable[[int, Any, int], Any]:
    """``read(start, apply, end)`` over partition ``partition`` of the transactions topic."""
    from stream_scorer.state.changelog import read_partition

    def read(start: int, apply: Any, end: int) -> Any:
        return read_partition(settings, partition, start, apply, topic=settings.topics.transactions, end=end)

    return read
