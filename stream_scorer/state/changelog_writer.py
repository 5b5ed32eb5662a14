"""Step 3 of a commit: the state a commit unit changed goes to the changelog, one record per key.

A key changed by several batches of the unit is written once, with its value at the end of the
unit. Records go to the changelog partition of their input partition, so the state moves with it
(see :mod:`stream_scorer.state.changelog` for the layout).

Delivery reports carry the changelog's offsets, which the state store keeps (a snapshot records
the offset it reflects). In a transaction one report per partition, on its last record, is enough:
the idempotent producer keeps a partition's order, and a failed record fails the commit. At least
once, every record needs its report: its unit's offsets may be committed only once all are written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol


class _Producer(Protocol):
    producer: Any

    def produce_blocking(
        self, topic: str, value: bytes | None, key: bytes | None, cb: Any, partition: int = -1
    ) -> None: ...


class _State(Protocol):
    def changes(self, partition: int) -> Iterator[tuple[bytes, bytes | None]]: ...


class ChangelogWriter:
    """Writes the changes of a :class:`~stream_scorer.state.store.StateStore` to ``topic``."""

    def __init__(self, topic: str, state: _State, producer: _Producer) -> None:
        self.topic = topic
        self.state = state
        self.producer = producer

    def write(self, partitions: Iterable[int], each: Any, last: Any) -> int:
        """Produce the changes of ``partitions``; return how many records.

        ``each`` is the delivery callback of every record but a partition's last (None: no report),
        ``last`` that of its last record.
        """
        assert self.producer.producer is not None
        produce, topic, blocking = self.producer.producer.produce, self.topic, self.producer.produce_blocking

        def send(p: int, key: bytes, value: bytes | None, cb: Any) -> None:
            try:
                produce(topic, value, key, partition=p, on_delivery=cb)
            except BufferError:
                blocking(topic, value, key, cb, partition=p)

        n = 0
        for p in partitions:
            held: tuple[bytes, bytes | None] | None = None
            for change in self.state.changes(p):
                if held is not None:
                    send(p, held[0], held[1], each)
                    n += 1
                held = change
            if held is not None:
                send(p, held[0], held[1], last)
                n += 1
        return n
