"""A worker's view of ``<group>.model``: the latest model the learner published.

Read committed, one partition, from the beginning (the topic is compacted to one record, plus
what came since the last compaction): :meth:`ModelReader.bootstrap` reads to the end before the
worker takes partitions, so that a worker joining the group starts from the model of every
label so far; :meth:`ModelReader.poll` takes what arrived since, without waiting. Only the latest
publication matters: older ones are dropped unread.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from stream_scorer.config import Settings
from stream_scorer.exceptions import StateError
from stream_scorer.kafka.clients import make_consumer
from stream_scorer.kafka.offsets import watermark_offsets
from stream_scorer.merchants.learning import MODEL_KEY, decode_model, model_topic, names_crc
from stream_scorer.pipeline import ModelsAt

logger = logging.getLogger(__name__)


class ModelReader:
    """The latest published model, decoded when asked for."""

    def __init__(self, settings: Settings, names: tuple[str, ...]) -> None:
        self.settings = settings
        self.topic = model_topic(settings.group_id)
        self.crc = names_crc(names)
        self.received = 0
        self.refused = 0
        self.adopted_examples = 0
        """How many labels the model adopted last had learned (0: none adopted yet)."""
        self._latest: bytes | None = None
        self._consumer: Consumer | None = None

    def open(self) -> None:
        self._consumer = make_consumer(self.settings, group_id=f"{self.settings.group_id}.model-reader")
        self._consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])

    def bootstrap(self, timeout_s: float = 120.0) -> None:
        """Read to the end of the topic as it is now."""
        consumer = self._consumer
        assert consumer is not None
        tp = TopicPartition(self.topic, 0)
        deadline = time.monotonic() + timeout_s
        low, high = watermark_offsets(consumer, tp)
        while high > low and consumer.position([tp])[0].offset < high:
            if time.monotonic() > deadline:
                raise StateError(f"reading the published model from {self.topic} took over {timeout_s:.0f}s")
            self._consume(0.2)

    def poll(self) -> None:
        """Take what has arrived (none before :meth:`open`)."""
        if self._consumer is not None:
            self._consume(0.0)

    def _consume(self, timeout: float) -> None:
        assert self._consumer is not None
        for msg in self._consumer.consume(100, timeout):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                continue
            if msg.key() == MODEL_KEY and msg.value() is not None:
                self._latest = msg.value()
                self.received += 1

    def take(self) -> tuple[ModelsAt, dict[int, int]] | None:
        """The newest model not yet taken, and each worker's last example it holds; None when
        nothing new (or it cannot be read: counted, logged once)."""
        value, self._latest = self._latest, None
        if value is None:
            return None
        try:
            models, examples, progress = decode_model(value, self.crc)
        except StateError as exc:
            self.refused += 1
            if self.refused == 1:
                logger.error("%s: %s (the stage runs other feature or model settings?)", self.topic, exc)
            return None
        self.adopted_examples = examples
        return models, progress

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        self._consumer = None
