"""One model for every worker: the learner that trains it, and the records it learns from.

Each worker learns from the labels of its own partitions only: with W workers, each model sees a
1/W share of the labels (measured on a long-tail world, 3 workers on 12 partitions: average
precision -4% against one model that sees them all). So, as parameter servers do, the stage also
hosts a learner:

1. each worker sends every labelled feature vector it learns to ``<group>.learn`` (one
   partition: one learning order), in the same transaction as its scores (:func:`encode_example`);
2. the stage member that owns that partition teaches the champion and the challenger each of them
   (:class:`Learner`), and publishes both, whole, to the compacted ``<group>.model``, exactly once
   (its transaction holds the model and its input offsets; the topic is its changelog too);
3. every worker adopts the latest published model between commits
   (:class:`~.model_reader.ModelReader`), at most once a second. Its own examples that the model
   does not hold yet (the learner publishes, per worker, the last example it learned) it learns
   again on top, and it goes on learning its own labels locally until the next model: a worker's
   model never misses its own labels, and with one worker it is the model it would have learned
   alone.

A published model is plain JSON (the models' ``state()``), never a pickle: a tree challenger is
not shared (each worker keeps its own).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson

from stream_scorer.config import Settings
from stream_scorer.exceptions import StateError
from stream_scorer.model.logistic import OnlineLogit
from stream_scorer.pipeline import ModelsAt, Scorer, scorer_settings

_EXAMPLE = struct.Struct("<cIBIQ")  # kind, names' fingerprint, label, source, sequence number
MAX_SOURCES = 1_024
"""Workers whose progress a published model remembers (the most advanced ones)."""
_MODEL = struct.Struct("<cBI")
MODEL_KEY = b"model"
FORMAT_VERSION = 1
_VALUES: dict[int, struct.Struct] = {}


def learn_topic(group_id: str) -> str:
    """The labelled feature vectors of the workers of ``group_id`` (one partition)."""
    return f"{group_id}.learn"


def model_topic(group_id: str) -> str:
    """The published models (compacted, one partition, one key)."""
    return f"{group_id}.model"


def names_crc(names: tuple[str, ...]) -> int:
    """A fingerprint of a feature list, so that a vector is never read with other names."""
    return zlib.crc32("|".join(names).encode())


def _values(n: int) -> struct.Struct:
    st = _VALUES.get(n)
    if st is None:
        st = _VALUES[n] = struct.Struct(f"<{n}d")
    return st


def encode_example(
    x: dict[str, float], y: bool, names: tuple[str, ...], crc: int, source: int = 0, seq: int = 0
) -> bytes:
    """One labelled feature vector: the names' fingerprint, the label, the worker (``source``)
    and its sequence number, then the values in order.

    >>> names = ("a", "b")
    >>> value = encode_example({"a": 1.0, "b": 2.5}, True, names, names_crc(names), 7, 3)
    >>> decode_example(value, names, names_crc(names))
    ({'a': 1.0, 'b': 2.5}, True, 7, 3)
    """
    head = _EXAMPLE.pack(b"X", crc, 1 if y else 0, source, seq)
    return head + _values(len(names)).pack(*[x.get(n, 0.0) for n in names])


def decode_example(
    value: bytes | None, names: tuple[str, ...], crc: int
) -> tuple[dict[str, float], bool, int, int]:
    """The inverse of :func:`encode_example`; ``ValueError`` for another feature set or bytes."""
    if value is None or len(value) != _EXAMPLE.size + 8 * len(names):
        raise ValueError("not a labelled feature vector of these features")
    kind, got_crc, y, source, seq = _EXAMPLE.unpack_from(value, 0)
    if kind != b"X" or got_crc != crc or y > 1:
        raise ValueError("a labelled feature vector of other features")
    x = dict(zip(names, _values(len(names)).unpack_from(value, _EXAMPLE.size), strict=True))
    return x, bool(y), int(source), int(seq)


class Learner:
    """The champion and the challenger, trained on every worker's labels, and their bytes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.scorer = Scorer(scorer_settings(settings), lambda: None)  # type: ignore[arg-type,return-value]
        from stream_scorer.features.engine import FeatureEngine

        self.names = tuple(FeatureEngine(settings.features).names)
        self.crc = names_crc(self.names)
        self.examples = 0
        self.progress: dict[int, int] = {}
        """Per worker (its source id), the sequence number of the last example learned."""
        self.dirty = False

    def fold(self, value: bytes | None) -> bool:
        """Learn one published example; False (nothing learned) if it is not one of ours."""
        try:
            x, y, source, seq = decode_example(value, self.names, self.crc)
        except ValueError:
            return False
        self.scorer.learn_features(x, y)
        self.examples += 1
        progress = self.progress
        if seq > progress.get(source, 0):
            progress[source] = seq
            if len(progress) > MAX_SOURCES:
                del progress[min(progress, key=progress.__getitem__)]
        self.dirty = True
        return True

    def dumps(self) -> bytes:
        """The models as published: a header, then JSON of their states."""
        sc = self.scorer
        challenger = sc.challenger if isinstance(sc.challenger, OnlineLogit) else None
        body = {
            "examples": self.examples,
            "progress": {str(k): v for k, v in self.progress.items()},
            "champion": sc.champion.state(),
            "challenger": challenger.state() if challenger is not None else None,
        }
        return _MODEL.pack(b"W", FORMAT_VERSION, self.crc) + orjson.dumps(body)

    def loads(self, value: bytes) -> None:
        """Continue from a published model (a restore); StateError when it does not fit."""
        models, examples, progress = decode_model(value, self.crc)
        self.scorer.restore_models(models)
        self.examples = examples
        self.progress = progress
        self.dirty = False


def decode_model(value: bytes | None, crc: int) -> tuple[ModelsAt, int, dict[int, int]]:
    """The models of a publication, how many examples they learned, and each worker's last
    example learned; StateError when it cannot be read."""
    try:
        if value is None or len(value) < _MODEL.size:
            raise ValueError("too short")
        kind, version, got_crc = _MODEL.unpack_from(value, 0)
        if kind != b"W" or version != FORMAT_VERSION:
            raise ValueError(f"format {kind!r}/{version}")
        if got_crc != crc:
            raise ValueError("learned on other features")
        body: dict[str, Any] = orjson.loads(value[_MODEL.size :])
        champion = OnlineLogit.from_state(body["champion"])
        challenger = OnlineLogit.from_state(body["challenger"]) if body.get("challenger") else None
        examples = int(body["examples"])
        progress = {int(k): int(v) for k, v in body.get("progress", {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
        raise StateError(f"published model refused: {exc}") from exc
    return ModelsAt(champion, challenger, examples), examples, progress
