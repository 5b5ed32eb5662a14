"""De-duplication: repeats within the window are caught, the oldest ids are forgotten first, the
memory is recalled from the input, and the cost of an id stays flat however long the stream."""

from __future__ import annotations

import time
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from stream_scorer.decode import Decoder
from stream_scorer.dedupe import Dedupe, RecentIds


def test_a_repeat_within_the_window_is_caught_and_changes_nothing():
    ids = RecentIds(window=3)
    assert [ids.add(t) for t in "abca"] == [True, True, True, False]
    assert ids.add("d") and "a" not in ids and "b" in ids, "the oldest is forgotten first"
    assert len(ids) == 3


@given(st.lists(st.integers(0, 30), max_size=200), st.integers(1, 10))
def test_same_answers_as_a_list_of_the_last_window_ids(stream, window):
    ids, reference = RecentIds(window), []
    for x in stream:
        tid = str(x)
        expected = tid not in reference
        assert ids.add(tid) is expected
        if expected:
            reference.append(tid)
            reference = reference[-window:]
    assert len(ids) == len(reference) and all(t in ids for t in reference)


def test_the_cost_of_an_id_stays_flat_once_the_window_is_full():
    """Fault 1: evicting with ``del seen[next(iter(seen))]`` walks over every deleted slot before
    the first live one, until the dict resizes: after the window (100,000 ids) filled, an id cost
    ten times more 50,000 ids later than at first. Measured here: 10,000 ids at a time over the
    100,000 after the window filled."""
    window, step = 100_000, 10_000
    ids = RecentIds(window)
    add = ids.add
    for i in range(window):
        add(f"t{i}")
    slices = []
    for s in range(10):
        t0 = time.perf_counter()
        for i in range(window + s * step, window + (s + 1) * step):
            add(f"t{i}")
        slices.append(time.perf_counter() - t0)
    # The median slice against the first (the dict's cost was a sawtooth: it fell at each resize).
    median = sorted(slices)[len(slices) // 2]
    assert median < 3 * slices[0], [f"{x * 1e6 / step:.2f} us/id" for x in slices]


def _txn(i: int) -> bytes:
    return orjson.dumps({"transaction_id": f"t{i}", "event_time": "2026-01-31T12:00:00Z",
                         "card_id": "c1", "merchant_id": "m1", "amount": 12.5, "currency": "EUR"})


def test_recall_reads_the_window_before_the_committed_offset():
    log = [_txn(i) for i in range(10)] + [b"not json"] + [_txn(3)]
    reads: list[tuple[int, int]] = []

    def read(start: int, apply: Any, end: int) -> None:
        reads.append((start, end))
        for value in log[max(start, 0):end]:
            apply(b"", value)

    d = Dedupe(window=5)
    decoder = Decoder()
    ids = d.recall(0, 12, read, decoder.decode)
    assert reads == [(7, 12)]
    assert [t in ids for t in ("t7", "t8", "t9", "t3", "t6")] == [True, True, True, True, False]
    assert d.partition(0) is ids
    assert len(d.recall(1, 0, read, decoder.decode)) == 0 and len(reads) == 1, "nothing committed: nothing read"
    assert len(Dedupe(0).recall(2, 12, read, decoder.decode)) == 0 and len(reads) == 1, "off: nothing read"
