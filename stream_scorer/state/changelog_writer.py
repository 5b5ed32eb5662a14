"""Step 3 of a commit: the state a commit unit changed goes to the changelog, one record per key.

A key changed by several batches of the unit is written once, with its value at the end of the
unit. Records go to the changelog partition of their input partition, so the state moves with it
(see :mod:`stream_scorer.state.changelog` for the layout).

Each record's ``input_offsets`` header says which unit wrote it (its next input offsets on the
partition; see :mod:`stream_scorer.state.changelog`), so that a restore can leave out the records
of units whose offsets never committed.

Delivery reports carry the changelog's offsets, which the state store keeps (a snapshot records
the offset it reflects). In a transaction one report per partition, on its last record, is enough:
the idempotent producer keeps a partition's order, and a failed record fails the commit. At least
once, every record needs its report: its unit's offsets may be committed only once all are written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from stream_scorer.state.changelog import INPUT_OFFSETS, encode_input_offsets


class _Producer(Protocol):
    producer: Any

    def produce_blocking(
        self, topic: str, value: bytes | None, key: bytes | None, cb: Any, partition: int = -1, headers: Any = None
    ) -> None: ...


class _State(Protocol):
    def changes(self, partition: int) -> Iterator[tuple[bytes, bytes | None]]: ...


class ChangelogWriter:
    """Writes the changes of a :class:`~stream_scorer.state.store.StateStore` to ``topic``."""

    def __init__(self, topic: str, state: _State, producer: _Producer, inputs: tuple[str, str]) -> None:
        self.topic = topic
        self.state = state
        self.producer = producer
        self.inputs = inputs
        """The input topics (transactions, labels) whose offsets the header carries."""

    def write(self, offsets: dict[tuple[str, int], int], each: Any, last: Any) -> int:
        """Produce the changes of the partitions of the unit's next ``offsets``; return how many
        records.

        ``each`` is the delivery callback of every record but a partition's last (None: no report),
        ``last`` that of its last record.
        """
        assert self.producer.producer is not None
        produce, topic, blocking = self.producer.producer.produce, self.topic, self.producer.produce_blocking
        tx, labels = self.inputs

        def send(p: int, key: bytes, value: bytes | None, cb: Any, headers: Any) -> None:
            try:
                produce(topic, value, key, partition=p, on_delivery=cb, headers=headers)
            except BufferError:
                blocking(topic, value, key, cb, partition=p, headers=headers)

        n = 0
        for p in sorted({p for (_, p) in offsets}):
            headers = [(INPUT_OFFSETS, encode_input_offsets(offsets.get((tx, p), -1), offsets.get((labels, p), -1)))]
            held: tuple[bytes, bytes | None] | None = None
            for change in self.state.changes(p):
                if held is not None:
                    send(p, held[0], held[1], each, headers)
                    n += 1
                held = change
            if held is not None:
                send(p, held[0], held[1], last, headers)
                n += 1
        return n
