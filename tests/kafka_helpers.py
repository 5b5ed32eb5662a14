"""Small helpers for tests that read and write topics on the real broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable

import orjson
from confluent_kafka import Consumer, Message, Producer

from stream_scorer.config import Settings
from stream_scorer.worker import Worker


def produce(settings: Settings, values: Iterable[tuple[bytes | None, bytes]], topic: str | None = None) -> int:
    """Produce ``(key, value)`` pairs and wait until all are acknowledged; return how many."""
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 5, "acks": "all", "partitioner": "murmur2_random"}
    )
    n = 0
    for key, value in values:
        while True:
            try:
                producer.produce(topic or settings.topics.transactions, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
    assert producer.flush(60) == 0
    return n


def produce_events(settings: Settings, events: Iterable[dict]) -> int:
    return produce(settings, ((e["card_id"].encode(), orjson.dumps(e)) for e in events))


def read_all(
    settings: Settings,
    topic: str,
    expected: int,
    timeout: float = 120.0,
    idle: float = 3.0,
) -> list[Message]:
    """Read ``topic`` from the start (read_committed) until ``expected`` records came and no more
    came for ``idle`` seconds, or ``timeout`` passed."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(1000, 0.5)
            good = [m for m in msgs if m.error() is None]
            if good:
                out.extend(good)
                last_new = time.monotonic()
            elif len(out) >= expected and time.monotonic() - last_new > idle:
                break
    finally:
        consumer.close()
    return out


class WorkerThread:
    """A worker running in a thread, stopped gracefully by :meth:`stop`."""

    def __init__(self, settings: Settings, factory: Callable[[Settings], Worker] = Worker) -> None:
        self.worker = factory(settings)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # noqa: BLE001 (surfaced to the test by stop())
            self.error = exc

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def wait_scored(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.worker.stats.scored + self.worker.stats.dead_letters < n:
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise AssertionError(f"worker handled {self.worker.stats.as_dict()} of {n} in {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "worker did not stop within 60s"
        if self.error is not None:
            raise self.error
