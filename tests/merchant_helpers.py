"""What the merchant stage should hold for a stream, and how to compare two merchant tables."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from stream_scorer.features.settings import FeatureSettings
from stream_scorer.merchants.book import MerchantBook
from stream_scorer.simulate import _rfc3339


def compressed(
    events: list[dict[str, Any]], span_s: float = 240.0, end: datetime | None = None
) -> list[dict[str, Any]]:
    """``events`` in their order, spread evenly over ``span_s`` seconds ending about now: within
    the 5-minute grace, no event is late anywhere, so merchant state does not depend on the order
    partitions are read in (only float sums may differ in their last bits)."""
    end = end or datetime.now(UTC) - timedelta(minutes=10)
    t0 = (end - timedelta(seconds=span_s)).timestamp()
    step = span_s / max(len(events), 1)
    return [dict(e, event_time=_rfc3339(t0 + i * step)) for i, e in enumerate(events)]


def reference_states(events: list[dict[str, Any]], settings: FeatureSettings | None = None) -> dict[str, Any]:
    """Every merchant as an uninterrupted stage folds the stream: each transaction, then its inline
    label (learned at once: known at the transaction's time)."""
    book = MerchantBook(settings or FeatureSettings())
    out: dict[str, Any] = {}
    for e in events:
        mid = e["merchant_id"]
        m = out.get(mid)
        if m is None:
            m = out[mid] = book.new(mid)
        ts = datetime.fromisoformat(e["event_time"]).timestamp()
        book.fold_event(m, ts, float(e["amount"]))
        if e.get("is_fraud") is not None:
            book.fold_label(m, ts, bool(e["is_fraud"]))
    return out


def decoded(values: dict[str, bytes], settings: FeatureSettings | None = None) -> dict[str, Any]:
    book = MerchantBook(settings or FeatureSettings())
    return {k: book.loads(k, v)[0] for k, v in values.items()}


def differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Merchants whose state differs (counts, clocks and label rings exactly; amount sums to 1e-9)."""
    bad = sorted(set(got) ^ set(want))
    for k in set(got) & set(want):
        a, b = got[k], want[k]
        same = (
            a.max_ts == b.max_ts
            and a.seen_ts == b.seen_ts
            and list(a.counts) == list(b.counts)
            and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) for x, y in zip(a.sums, b.sums, strict=True))
            and bytes(a.risk) == bytes(b.risk)
        )
        if not same:
            bad.append(k)
    return bad
