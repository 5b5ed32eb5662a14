"""At-least-once commit units: confirmed in order, only once every record is acknowledged."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stream_scorer.kafka.acks import AckQueue, CommitUnit


class Msg:
    def __init__(self, partition: int, offset: int) -> None:
        self._p, self._o = partition, offset

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


def _unit(produced: int, offsets: dict[tuple[str, int], int], log: list[Any] | None = None) -> CommitUnit:
    u = CommitUnit(lambda p, o: (log if log is not None else []).append((p, o)))
    u.produced, u.offsets = produced, offsets
    return u


def test_a_unit_waits_for_every_report():
    q = AckQueue()
    u = _unit(3, {("tx", 0): 10})
    q.push(u)
    u.on_delivery(None, None)
    u.on_delivery(None, None)
    assert q.pop_confirmed() is None and len(q) == 1
    u.on_delivery(None, None)
    assert q.pop_confirmed() is u and len(q) == 0


def test_a_later_unit_waits_for_an_earlier_one_then_both_commit_merged():
    q = AckQueue()
    first = _unit(1, {("tx", 0): 10, ("tx", 1): 5})
    second = _unit(1, {("tx", 0): 20, ("labels", 0): 3})
    q.push(first)
    q.push(second)
    second.on_delivery(None, None)
    assert q.pop_confirmed() is None, "the second unit's offsets would cover the first's records"
    first.on_delivery(None, None)
    got = q.pop_confirmed()
    assert got is second
    assert got.offsets == {("tx", 0): 20, ("tx", 1): 5, ("labels", 0): 3}
    assert len(q) == 0


def test_a_unit_with_nothing_produced_is_confirmed_at_once():
    q = AckQueue()
    q.push(_unit(0, {("labels", 2): 7}))
    assert q.pop_confirmed() is not None


def test_a_failed_record_is_never_confirmed_and_blocks_what_follows():
    q = AckQueue()
    bad, good = _unit(2, {("tx", 0): 10}), _unit(1, {("tx", 0): 20})
    q.push(bad)
    q.push(good)
    bad.on_delivery(None, None)
    bad.on_delivery("broker away", None)  # type: ignore[arg-type]
    good.on_delivery(None, None)
    assert bad.settled and bad.failed == 1 and bad.first_error == "broker away"
    assert q.pop_confirmed() is None
    assert q.failed() is bad and q.n_failed() == 1


def test_changelog_reports_tell_where_the_records_landed():
    log: list[tuple[int, int]] = []
    u = _unit(2, {}, log)
    u.on_changelog_delivery(None, Msg(1, 41))  # type: ignore[arg-type]
    u.on_changelog_delivery("too large", Msg(1, -1))  # type: ignore[arg-type]
    assert log == [(1, 41)] and u.acked == 1 and u.failed == 1


@given(st.lists(st.integers(1, 5), min_size=1, max_size=8), st.randoms())
def test_confirmed_offsets_never_cover_an_unacknowledged_record(sizes: list[int], rnd: random.Random):
    """Reports arrive in any order across units; whatever is confirmed has all its reports,
    and so has every unit before it."""
    q = AckQueue()
    units = [_unit(n, {("tx", 0): 10 * (i + 1)}) for i, n in enumerate(sizes)]
    for u in units:
        q.push(u)
    reports = [u for u in units for _ in range(u.produced)]
    rnd.shuffle(reports)
    confirmed = 0  # units confirmed so far, oldest first
    for u in reports:
        u.on_delivery(None, None)
        got = q.pop_confirmed()
        if got is not None:
            i = units.index(got)
            assert i >= confirmed
            assert all(x.settled for x in units[: i + 1])
            assert got.offsets == {("tx", 0): 10 * (i + 1)}
            confirmed = i + 1
    assert confirmed == len(units) and len(q) == 0
