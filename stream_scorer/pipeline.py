"""The one scoring path: features, champion and challenger scores, the score record, learning.

The live worker, the backtest and ``score-file`` all drive a :class:`Scorer`, so a backtest
measures the code that runs in production. Per event, in the order correctness needs:

1. :meth:`Scorer.advance` to the event's time: inline labels whose delay has passed are learned
   first (they were known before this event), and pending entries past their age are dropped;
2. the feature engine computes the event's features from state *before* the event, then folds it in;
3. the champion scores (probability and reason codes), the challenger scores in shadow (a
   logistic challenger that shares the champion's scaler has ``x`` scaled once for both);
4. the transaction is remembered in the partition's pending store with the features it was
   scored on, or, for an inline label without delay, learned at once: after its score, so a
   score never reflects its own label.

A label (:meth:`Scorer.apply_label`) teaches champion and challenger the *stored* features (a
shared scaler learns once), then tells the feature engine (merchant fraud rates and the like) if
the engine listens for labels.
Only the champion decides the band. Nothing here imports Kafka.
"""

from __future__ import annotations

import copy
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from stream_scorer.config import Settings
from stream_scorer.events import SCHEMA_VERSION, Transaction
from stream_scorer.exceptions import CheckpointError
from stream_scorer.model.logistic import OnlineLogit, band_of
from stream_scorer.model.pending import PendingStore
from stream_scorer.model.settings import ChallengerSettings, ScorerSettings
from stream_scorer.model.tree import OnlineTree

logger = logging.getLogger(__name__)

EVICT_EVERY_S = 60.0
"""Event-time seconds between two sweeps of expired pending entries and feature state."""


class FeatureEngineLike(Protocol):
    """What the scorer needs of a feature engine (``observe_label``, ``evict``, ``label_key``,
    ``label_parts`` and ``reason_text`` are optional; ``observe_label`` takes what ``label_key``
    or, for a label learned at once, ``label_parts`` returns)."""

    names: Any

    def update(self, txn: Transaction) -> dict[str, float]: ...


def scorer_settings(settings: Settings, label_delay_s: float = 0.0) -> ScorerSettings:
    """The scorer's part of the process settings."""
    return ScorerSettings(
        review_threshold=settings.review_threshold,
        decline_threshold=settings.decline_threshold,
        model=settings.model,
        challenger=settings.challenger,
        pending=settings.pending,
        label_delay_s=label_delay_s,
    )


def default_feature_engine() -> FeatureEngineLike:
    """A new :class:`stream_scorer.features.FeatureEngine` with its default settings."""
    from stream_scorer.features.engine import FeatureEngine

    engine: FeatureEngineLike = FeatureEngine()
    return engine


def make_challenger(settings: ChallengerSettings) -> OnlineLogit | OnlineTree | None:
    """The challenger the settings describe, or ``None`` for ``kind="none"``."""
    if settings.kind == "logreg":
        return OnlineLogit(settings.logreg, n_reasons=0)  # only the champion gives reasons
    if settings.kind == "tree":
        return OnlineTree(settings.tree)
    return None


@dataclass
class PartitionState:
    """What one partition owns: its feature state, its pending store, its delayed inline labels."""

    engine: FeatureEngineLike
    pending: PendingStore
    due: list[tuple[float, int, str, bool]] = field(default_factory=list)
    """Heap of inline labels waiting for their time: (due time, seq, transaction id, label)."""
    watermark: float = float("-inf")
    """The latest event time seen in this partition."""
    last_sweep: float = float("-inf")
    seq: int = 0


@dataclass
class ScorerStats:
    """Counts across partitions; pending-store counts are in :meth:`Scorer.counters`."""

    scored: int = 0
    learned: int = 0
    labels_applied: int = 0
    labels_missed: int = 0
    delayed_labels_applied: int = 0


@dataclass(frozen=True)
class ModelsAt:
    """The champion and challenger at one point (see :meth:`Scorer.save_models`)."""

    champion: OnlineLogit
    challenger: OnlineLogit | None
    """A logistic challenger; ``None`` when there is none or it is a tree (not copied)."""
    learned: int


class Scorer:
    """Scores transactions and learns from labels, per partition, with no I/O of its own.

    >>> from datetime import datetime, UTC
    >>> s = Scorer(ScorerSettings())
    >>> txn = Transaction(transaction_id="t1", event_time=datetime(2026, 1, 1, tzinfo=UTC),
    ...     card_id="c1", merchant_id="m1", amount=12.5, currency="EUR", is_fraud=False)
    >>> r = s.score(txn)
    >>> round(r["score"], 4), r["band"], r["model_version"], s.stats.learned
    (0.01, 'approve', 'logreg-sgd/0', 1)
    """

    def __init__(
        self,
        settings: ScorerSettings | None = None,
        feature_engine_factory: Callable[[], FeatureEngineLike] = default_feature_engine,
        champion: OnlineLogit | None = None,
        challenger: OnlineLogit | OnlineTree | None = None,
        with_challenger: bool = True,
        frozen: bool = False,
    ) -> None:
        self.settings = s = settings or ScorerSettings()
        self.feature_engine_factory = feature_engine_factory
        self.champion = (
            champion if champion is not None else OnlineLogit(s.model, n_reasons=s.n_reasons)
        )
        if challenger is None and with_challenger:
            challenger = make_challenger(s.challenger)
        self.challenger = challenger
        if isinstance(challenger, OnlineLogit):
            # Equal scalers that see the same features stay equal: learn one for both.
            self.champion.share_scaling(challenger)
        self.partitions: dict[int, PartitionState] = {}
        self.stats = ScorerStats()
        self.label_delay_s = s.label_delay_s
        self._review, self._decline = s.review_threshold, s.decline_threshold
        self._with_features = s.with_features
        self.frozen = frozen
        """Frozen models learn nothing; labels still reach the feature engine (merchant risk)."""
        self.learn_outbox: list[tuple[dict[str, float], bool]] | None = None
        """When a list, every (features, label) learned is also put here, for a learner that
        trains one model on every worker's labels (see :mod:`stream_scorer.merchants.learning`)."""

    # -- models -----------------------------------------------------------------------------------

    def save_models(self) -> ModelsAt:
        """A copy of the models as they are now (0.2 ms for the two logistic models): the worker
        keeps one per commit, to forget what an aborted transaction taught them.

        A tree challenger is not copied (a grown tree takes tens of milliseconds, too much at
        every commit): it keeps what an aborted transaction taught it; it only scores in shadow.
        """
        if isinstance(self.challenger, OnlineLogit):
            champion, challenger = copy.deepcopy((self.champion, self.challenger))
            return ModelsAt(champion, challenger, self.stats.learned)
        return ModelsAt(copy.deepcopy(self.champion), None, self.stats.learned)

    def restore_models(self, saved: ModelsAt) -> None:
        """Go back to ``saved`` (which stays as it is: it can be restored again)."""
        challenger: OnlineLogit | OnlineTree | None
        if saved.challenger is not None:
            champion, challenger = copy.deepcopy((saved.champion, saved.challenger))
        else:
            champion, challenger = copy.deepcopy(saved.champion), self.challenger
        champion.resync()  # the copy's River objects and the fast path's views, one again
        if isinstance(challenger, OnlineLogit):
            challenger.resync()
            if challenger.scaling is not champion.scaling:
                champion.share_scaling(challenger)
        self.champion, self.challenger = champion, challenger
        self.stats.learned = saved.learned

    # -- partitions -----------------------------------------------------------------------------

    def partition(self, p: int) -> PartitionState:
        """The state of partition ``p``, created empty on first use."""
        st = self.partitions.get(p)
        if st is None:
            pend = self.settings.pending
            st = self.partitions[p] = PartitionState(
                engine=self.feature_engine_factory(),
                pending=PendingStore(pend.max_entries, pend.max_age_s),
            )
        return st

    def drop_partition(self, p: int) -> None:
        """Forget partition ``p`` (revoked: its new owner rebuilds or restores its state)."""
        self.partitions.pop(p, None)

    def snapshot_partition(self, p: int) -> bytes:
        """The scorer's own state of partition ``p`` as orjson bytes: the pending store, the
        delayed inline labels and the watermark. The feature engine's state is not included: it
        has its own snapshot and changelog (``engine.snapshot()``)."""
        st = self.partition(p)
        return orjson.dumps(
            {
                "format": 1,
                "pending": st.pending.snapshot().decode(),
                "due": st.due,
                "watermark": st.watermark if st.watermark != float("-inf") else None,
                "seq": st.seq,
            }
        )

    def restore_partition(
        self, p: int, data: bytes, engine: FeatureEngineLike | None = None
    ) -> PartitionState:
        """Install partition ``p`` from :meth:`snapshot_partition` bytes (and a restored engine,
        else a new one); raises :class:`CheckpointError` on bad bytes."""
        try:
            obj = orjson.loads(data)
            if obj.get("format") != 1:
                raise ValueError(f"unknown format {obj.get('format')!r}")
            due = [(float(t), int(n), str(tid), bool(y)) for t, n, tid, y in obj["due"]]
            wm = obj["watermark"]
            seq = int(obj["seq"])
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"cannot restore partition {p}: {exc}") from exc
        pending = PendingStore.restore(obj["pending"].encode())
        heapq.heapify(due)
        st = PartitionState(
            engine=engine if engine is not None else self.feature_engine_factory(),
            pending=pending,
            due=due,
            watermark=float(wm) if wm is not None else float("-inf"),
            seq=seq,
        )
        self.partitions[p] = st
        return st

    def counters(self) -> dict[str, int]:
        """Scorer counts plus the pending stores' counts summed over partitions."""
        out = dict(vars(self.stats))
        out["pending_entries"] = sum(len(st.pending) for st in self.partitions.values())
        out["delayed_labels_waiting"] = sum(len(st.due) for st in self.partitions.values())
        for st in self.partitions.values():
            for k, v in st.pending.counters.items():
                out[f"pending_{k}"] = out.get(f"pending_{k}", 0) + v
        return out

    # -- the hot path ---------------------------------------------------------------------------

    def score(
        self, txn: Transaction, partition: int = 0, t0: float | None = None, learn: bool = True
    ) -> dict[str, Any]:
        """Score ``txn``: a dict ready for orjson that validates as :class:`events.Score`.

        ``t0`` is the ``perf_counter()`` time the event's batch arrived (``latency_ms`` counts
        from it; from this call when ``None``). With ``learn=False`` nothing is learned and
        nothing is remembered for a later label (one-off scoring with a frozen model).
        """
        if t0 is None:
            t0 = time.perf_counter()
        st = self.partitions.get(partition) or self.partition(partition)
        ts = txn.event_ts
        if ts > st.watermark:
            st.watermark = ts
            due = st.due
            if (due and due[0][0] <= ts) or ts - st.last_sweep >= EVICT_EVERY_S:
                self.advance(ts, partition)  # labels due or a sweep: seldom, so not called per event
        engine = st.engine
        x = engine.update(txn)
        text = getattr(engine, "reason_text", _same)
        champion, challenger = self.champion, self.challenger
        q: float | None
        if isinstance(challenger, OnlineLogit) and challenger.scaling is champion.scaling:
            p, reasons, q = champion.score_with(challenger, x)  # x scaled once for both
        else:
            p, reasons = champion.score(x)
            q = challenger.score(x)[0] if challenger is not None else None
        record: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "transaction_id": txn.transaction_id,
            "card_id": txn.card_id,
            "event_time": txn.event_time,
            "score": p,
            "band": band_of(p, self._review, self._decline),
            "model_version": champion.version,
            "latency_ms": 0.0,
            "reason_codes": [{"feature": text(n), "contribution": c} for n, c in reasons],
            "challenger_score": q,
            "challenger_version": challenger.version if challenger is not None else None,
            "label": txn.is_fraud,
            "features": x if self._with_features else None,
            "amount": txn.amount,
            "merchant_id": txn.merchant_id,
        }
        self.stats.scored += 1
        if learn:
            label = txn.is_fraud
            if label is not None and self.label_delay_s <= 0.0:
                # Learned now, nothing kept: the label's parts need no string (label_key).
                parts_of = getattr(engine, "label_parts", None)
                self._learn(st, x, label, parts_of(txn) if parts_of else _label_key(engine, txn),
                            ts, ts)
            else:
                st.pending.put(txn.transaction_id, x, _label_key(engine, txn), ts)
                if label is not None:
                    st.seq += 1
                    heapq.heappush(
                        st.due, (ts + self.label_delay_s, st.seq, txn.transaction_id, label)
                    )
        record["latency_ms"] = (time.perf_counter() - t0) * 1000.0
        return record

    def apply_label(
        self, transaction_id: str, is_fraud: bool, label_ts: float, partition: int = 0
    ) -> bool:
        """Learn a label from the features its transaction was scored on.

        Returns ``False`` (and counts it in the pending store) when the transaction is not pending
        here: expired, already labelled, or never scored by this partition.
        """
        st = self.partitions.get(partition) or self.partition(partition)
        entry = st.pending.pop(transaction_id)
        if entry is None:
            self.stats.labels_missed += 1
            return False
        self._learn(st, entry.features, is_fraud, entry.label_key, entry.event_ts, label_ts)
        self.stats.labels_applied += 1
        return True

    def advance(self, event_ts: float, partition: int = 0) -> None:
        """Move partition ``partition`` to event time ``event_ts``.

        Learns the delayed inline labels that are due (due time <= watermark), then, at most once
        a minute of event time, drops expired pending entries and lets the feature engine evict.
        """
        st = self.partitions.get(partition) or self.partition(partition)
        if event_ts > st.watermark:
            st.watermark = event_ts
        wm = st.watermark
        due = st.due
        while due and due[0][0] <= wm:
            due_ts, _, tid, label = heapq.heappop(due)
            if self.apply_label(tid, label, due_ts, partition):
                self.stats.delayed_labels_applied += 1
        if wm - st.last_sweep >= EVICT_EVERY_S:
            st.last_sweep = wm
            st.pending.evict(wm)
            evict = getattr(st.engine, "evict", None)
            if evict is not None:
                evict(wm)

    def learn_features(self, x: dict[str, float], y: bool) -> None:
        """Teach champion and challenger one labelled feature vector (a shared scaler learns once)."""
        champion, challenger = self.champion, self.challenger
        if isinstance(challenger, OnlineLogit) and challenger.scaling is champion.scaling:
            champion.learn_with(challenger, x, y)  # the shared scaling learns once
        else:
            champion.learn(x, y)
            if challenger is not None:
                challenger.learn(x, y)
        self.stats.learned += 1

    def _learn(
        self,
        st: PartitionState,
        x: dict[str, float],
        y: bool,
        label_key: str | tuple[str | None, ...],
        event_ts: float,
        label_ts: float,
    ) -> None:
        if not self.frozen:
            self.learn_features(x, y)
            if self.learn_outbox is not None:
                self.learn_outbox.append((x, y))
        observe = getattr(st.engine, "observe_label", None)
        if observe is not None:
            observe(label_key, y, event_ts, label_ts)


def _same(name: str) -> str:
    return name


def _label_key(engine: FeatureEngineLike, txn: Transaction) -> str:
    key_of = getattr(engine, "label_key", None)
    return key_of(txn) if key_of is not None else txn.merchant_id


def scorer_from_checkpoint(
    checkpoint: Any,
    settings: ScorerSettings | None = None,
    feature_engine_factory: Callable[[], FeatureEngineLike] = default_feature_engine,
    frozen: bool = False,
) -> Scorer:
    """A scorer whose champion and challenger are those of a loaded checkpoint.

    The models keep the hyper-parameters they were saved with; ``settings`` gives the rest
    (thresholds, pending bounds, label delay). Feature state starts empty.
    """
    return Scorer(
        settings,
        feature_engine_factory,
        champion=checkpoint.champion,
        challenger=checkpoint.challenger,
        with_challenger=checkpoint.challenger is not None,
        frozen=frozen,
    )


def build_scorer(settings: Settings, table: Any = None) -> Scorer:
    """A scorer with the feature engine of the settings, and the checkpointed models if any;
    its engines read merchant features from ``table`` (a :class:`~.merchants.table.MerchantTable`)
    when given.

    A checkpoint that fails its integrity check stops the worker (CheckpointError): a model of
    unknown origin never scores.
    """
    from pathlib import Path

    from stream_scorer.features.engine import FeatureEngine
    from stream_scorer.model import checkpoint

    features = settings.features
    factory = lambda: FeatureEngine(features, table)  # noqa: E731
    ck = settings.checkpoint
    if ck.path and ck.key is not None and Path(ck.path).exists():
        loaded = checkpoint.load(ck.path, ck.key.get_secret_value().encode())
        logger.info("models restored from checkpoint %s (%s)", ck.path, loaded.champion.version)
        return Scorer(
            scorer_settings(settings),
            factory,
            champion=loaded.champion,
            challenger=loaded.challenger,
            with_challenger=loaded.challenger is not None,
        )
    return Scorer(scorer_settings(settings), factory)
