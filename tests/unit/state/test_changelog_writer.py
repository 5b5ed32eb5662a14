"""Step 3 over a fake producer: one record per changed key, to the input's partition, a report on
each record or only on a partition's last."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stream_scorer.kafka.transactions import TransactionalProducer
from stream_scorer.state.changelog import ahead_of, decode_input_offsets
from stream_scorer.state.changelog_writer import ChangelogWriter
from tests.fakes import FakeProducer


class Changes:
    def __init__(self, by_partition: dict[int, list[tuple[bytes, bytes | None]]]) -> None:
        self.by_partition = by_partition

    def changes(self, partition: int) -> Iterator[tuple[bytes, bytes | None]]:
        yield from self.by_partition.pop(partition, [])


Log = dict[int, list[tuple[bytes, bytes | None]]]


def _writer(changes: Log, full: int = 0) -> tuple[ChangelogWriter, FakeProducer]:
    producer = FakeProducer(full=full)
    out = TransactionalProducer(lambda extra: producer, None)  # type: ignore[arg-type,return-value]
    out.start()
    return ChangelogWriter("g.state-changelog", Changes(changes), out, ("tx", "labels")), producer


def test_each_change_goes_to_its_partition_with_the_last_callback_on_the_last_record():
    writer, producer = _writer({0: [(b"fc:1", b"a"), (b"pt:9", None), (b"fc:2", b"b")], 2: [(b"fm:7", b"c")], 1: []})
    each: list[Any] = []
    last: list[Any] = []
    offsets = {("tx", 0): 50, ("labels", 0): 7, ("tx", 1): 3, ("labels", 2): 9}
    n = writer.write(offsets, lambda e, m: each.append(m.key()), lambda e, m: last.append((m.partition(), m.key())))
    assert n == 4
    assert [(m.topic(), m.partition(), m.key(), m.value()) for m in producer.produced] == [
        ("g.state-changelog", 0, b"fc:1", b"a"), ("g.state-changelog", 0, b"pt:9", None),
        ("g.state-changelog", 0, b"fc:2", b"b"), ("g.state-changelog", 2, b"fm:7", b"c"),
    ]
    producer.flush()
    assert each == [b"fc:1", b"pt:9"] and last == [(0, b"fc:2"), (2, b"fm:7")]
    # each record says which unit wrote it: its next offsets on the input partition (-1: none read)
    units = [(m.partition(), decode_input_offsets(m.headers())) for m in producer.produced]
    assert units == [(0, (50, 7)), (0, (50, 7)), (0, (50, 7)), (2, (-1, 9))]


def test_a_restore_leaves_out_the_records_of_units_past_the_committed_offsets():
    assert not ahead_of((50, 7), (50, 7)) and not ahead_of((40, -1), (50, 7)) and not ahead_of(None, (0, 0))
    assert ahead_of((51, 7), (50, 7)) and ahead_of((-1, 8), (50, 7)) and ahead_of((1, -1), (-1001, -1001))


def test_no_report_but_the_last_in_a_transaction():
    writer, producer = _writer({0: [(b"fc:1", b"a"), (b"fc:2", b"b")]})
    last: list[Any] = []
    writer.write({("tx", 0): 1}, None, lambda e, m: last.append(m.key()))
    producer.flush()
    assert last == [b"fc:2"]


def test_a_full_queue_waits_and_loses_nothing():
    writer, producer = _writer({0: [(b"fc:1", b"a"), (b"fc:2", b"b")]}, full=2)
    assert writer.write({("tx", 0): 1}, None, None) == 2
    assert [m.key() for m in producer.produced] == [b"fc:1", b"fc:2"]
