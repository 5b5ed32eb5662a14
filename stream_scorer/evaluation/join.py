"""Join scores with their labels by ``transaction_id``, in a bounded buffer.

A label may arrive before or after its score (labels are keyed by card and travel on another
topic). Whichever half comes first waits in a FIFO buffer until the other one comes, the buffer
is full (the oldest is evicted), or it grows older than ``max_age_s`` in event time (it expires).
A score that carries its label inline is joined at once and never buffered.

>>> j = LabelJoin(max_pending=10, max_age_s=3600)
>>> j.update_score({"transaction_id": "t1", "score": 0.9}, ts=0.0) is None
True
>>> j.update_label({"transaction_id": "t1", "is_fraud": True}, ts=10.0).label
True
>>> j.get()["joined"]
1
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple


class Joined(NamedTuple):
    """A score and its label, ready for the metrics and the performance detectors."""

    score: dict[str, Any]
    label: bool


class LabelJoin:
    """A bounded, age-limited join of scores and labels.

    Counts kept (see :meth:`get`): ``joined``, ``inline`` (scores that carried their label),
    ``scores_expired``/``labels_expired`` (waited longer than ``max_age_s``),
    ``scores_evicted``/``labels_evicted`` (pushed out by a full buffer), and ``duplicates``
    (a second score or label for a transaction already joined or waiting).
    """

    def __init__(self, max_pending: int = 200_000, max_age_s: float = 30 * 86_400.0) -> None:
        self.max_pending = max_pending
        self.max_age_s = max_age_s
        # transaction_id -> (event-time seconds, record); insertion order is arrival order.
        self.scores: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self.labels: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        # Ids joined lately, to recognise a label replayed for a score already evaluated.
        self.done: OrderedDict[str, None] = OrderedDict()
        self.watermark = float("-inf")
        self.joined = 0
        self.inline = 0
        self.scores_expired = 0
        self.labels_expired = 0
        self.scores_evicted = 0
        self.labels_evicted = 0
        self.duplicates = 0

    def _done(self, tid: str) -> None:
        self.done[tid] = None
        if len(self.done) > self.max_pending:
            self.done.popitem(last=False)

    def update_score(self, score: dict[str, Any], ts: float) -> Joined | None:
        """Add a score seen at event time ``ts``; return it joined if its label is known."""
        tid = score["transaction_id"]
        if ts > self.watermark:
            self.watermark = ts
        if tid in self.done or tid in self.scores:
            self.duplicates += 1
            return None
        inline = score.get("label")
        if inline is not None:
            self.inline += 1
            self.joined += 1
            self._done(tid)
            self.labels.pop(tid, None)
            return Joined(score, bool(inline))
        waiting = self.labels.pop(tid, None)
        if waiting is not None:
            self.joined += 1
            self._done(tid)
            return Joined(score, waiting[1])
        self.scores[tid] = (ts, score)
        if len(self.scores) > self.max_pending:
            self.scores.popitem(last=False)
            self.scores_evicted += 1
        return None

    def update_label(self, label: dict[str, Any], ts: float) -> Joined | None:
        """Add a label known at event time ``ts``; return its score joined if it is waiting."""
        tid = label["transaction_id"]
        if ts > self.watermark:
            self.watermark = ts
        if tid in self.done or tid in self.labels:
            self.duplicates += 1
            return None
        waiting = self.scores.pop(tid, None)
        if waiting is not None:
            self.joined += 1
            self._done(tid)
            return Joined(waiting[1], bool(label["is_fraud"]))
        self.labels[tid] = (ts, bool(label["is_fraud"]))
        if len(self.labels) > self.max_pending:
            self.labels.popitem(last=False)
            self.labels_evicted += 1
        return None

    def expire(self) -> int:
        """Drop what waited longer than ``max_age_s`` behind the watermark (call once per batch).

        Arrival order is close to event-time order, so the scan stops at the first young entry.
        """
        horizon = self.watermark - self.max_age_s
        dropped = 0
        for buffer, side in ((self.scores, "scores"), (self.labels, "labels")):
            n = 0
            while buffer:
                ts = next(iter(buffer.values()))[0]
                if ts >= horizon:
                    break
                buffer.popitem(last=False)
                n += 1
            if side == "scores":
                self.scores_expired += n
            else:
                self.labels_expired += n
            dropped += n
        return dropped

    def get(self) -> dict[str, int]:
        """The counts, and how many scores and labels are waiting."""
        return {
            "joined": self.joined,
            "inline": self.inline,
            "pending_scores": len(self.scores),
            "pending_labels": len(self.labels),
            "scores_expired": self.scores_expired,
            "labels_expired": self.labels_expired,
            "scores_evicted": self.scores_evicted,
            "labels_evicted": self.labels_evicted,
            "duplicates": self.duplicates,
        }
