"""The durable state of the partitions a worker owns: restored on assignment, logged per batch,
snapshotted now and then, dropped on revocation.

Each partition's state (its feature engine and its pending store) is durable in two places:

- the **changelog** (:mod:`stream_scorer.state.changelog`), written in the same Kafka transaction
  as the batch's scores and offsets, so it always matches the committed offsets;
- a local **snapshot** per partition (``<state_dir>/<group>/p<N>.*.snap``), written after a commit
  with the changelog offset it reflects, so a restart reads only the changelog's tail.

Restoring a partition, in order: (1) load the snapshot if there is one, it verifies, and it is
younger than the changelog's tombstone retention; (2) replay the changelog from the snapshot's
offset (or from the start) to its last stable offset. Replaying a record twice is harmless: each
holds the whole value of its key. At least once, the restore is also given the committed input
offsets, and leaves out the records of units that wrote their changelog but never committed their
offsets (their input is consumed again): the key keeps its previous value. A key whose previous
record compaction removed since is then restored as new (the same limit as Quix Streams').
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

from stream_scorer.config import Settings
from stream_scorer.exceptions import StateError
from stream_scorer.features.engine import FeatureEngine
from stream_scorer.merchants.table import MerchantTable
from stream_scorer.model.pending import PendingStore
from stream_scorer.pipeline import Scorer
from stream_scorer.state import changelog
from stream_scorer.state.changelog import (
    FEATURE,
    PENDING,
    ahead_of,
    decode_input_offsets,
    decode_pending,
    encode_pending,
)
from stream_scorer.state.snapshot import read_snapshot, write_snapshot

logger = logging.getLogger(__name__)

MAX_SNAPSHOT_AGE_S = 12 * 3600.0
"""Older snapshots are ignored: the changelog may have compacted away tombstones they predate
(``delete.retention.ms`` is 24 h by default)."""


class StateStore:
    """Restore, log and snapshot the partition states of one :class:`Scorer`."""

    def __init__(self, settings: Settings, scorer: Scorer, table: MerchantTable | None = None) -> None:
        self.settings = settings
        self.scorer = scorer
        self.table = table
        """The worker's merchant table, which restored engines read merchant features from."""
        self.topic = changelog.changelog_topic(settings)
        self.dir = Path(settings.state_dir) / settings.group_id
        self.names: tuple[str, ...] = tuple(FeatureEngine(settings.features).names)
        self.next_offset: dict[int, int] = {}
        """Per partition, an offset of the changelog below which everything is in memory."""
        self.restored_records = 0
        self.cluster_id: str | None = None
        """The Kafka cluster the changelog is on; a snapshot from another cluster is ignored."""

    # -- assignment -----------------------------------------------------------------------------

    def restore(self, partition: int, committed: tuple[int, int] | None = None) -> None:
        """Rebuild partition ``partition``'s state from its snapshot and the changelog's tail;
        with the ``committed`` input offsets (transactions, labels), leave out what units past
        them wrote."""
        t0 = time.perf_counter()
        self.scorer.drop_partition(partition)
        st = self.scorer.partition(partition)
        start = 0
        loaded = self._load_snapshot(partition)
        if loaded is not None and loaded[2] > changelog.end_offset(self.settings, partition):
            # The changelog is shorter than the snapshot says: the topic was recreated.
            logger.warning("partition %d: snapshot is ahead of the changelog; restoring from the changelog", partition)
            loaded = None
        if loaded is not None:
            st.engine, st.pending, start = loaded
        engine, pending, names = st.engine, st.pending, self.names
        skipped = 0

        def apply(key: bytes, value: bytes | None, headers: list[tuple[str, bytes | None]] | None = None) -> None:
            nonlocal skipped
            if committed is not None and ahead_of(decode_input_offsets(headers), committed):
                skipped += 1
                return
            kind, ident = key[:1], key[1:].decode()
            if kind == FEATURE:
                engine.load_key(ident, value)  # type: ignore[attr-defined]
            elif kind == PENDING:
                pending.load_entry(ident, None if value is None else decode_pending(value, names))
            else:
                raise StateError(f"unknown changelog record kind {kind!r} in {self.topic}[{partition}]")

        n, next_offset = changelog.read_partition(self.settings, partition, start, apply, headers=committed is not None)
        if skipped:
            logger.info("partition %d: %d changelog records of uncommitted units left out", partition, skipped)
        pending.track_changes()
        self.next_offset[partition] = next_offset
        self.restored_records += n
        logger.info(
            "partition %d restored: %d entities, %d pending, %s snapshot, %d changelog records, %.2fs",
            partition, engine.n_entities(), len(pending),  # type: ignore[attr-defined]
            "from" if loaded else "no", n, time.perf_counter() - t0,
        )

    def drop(self, partition: int) -> None:
        """Forget a revoked partition (its changelog has everything; the new owner restores it)."""
        self.scorer.drop_partition(partition)
        self.next_offset.pop(partition, None)

    # -- per batch ------------------------------------------------------------------------------

    def changes(self, partition: int) -> Iterator[tuple[bytes, bytes | None]]:
        """The changelog records of what changed in ``partition`` since the last call."""
        st = self.scorer.partitions.get(partition)
        if st is None:
            return
        for key, value in st.engine.drain_changes():  # type: ignore[attr-defined]
            yield FEATURE + key.encode(), value
        names = self.names
        for tid, entry in st.pending.drain_changes().items():
            yield PENDING + tid.encode(), None if entry is None else encode_pending(entry, names)

    def delivered(self, partition: int, offset: int) -> None:
        """A changelog record of ``partition`` was written at ``offset`` (from delivery reports)."""
        if offset + 1 > self.next_offset.get(partition, 0):
            self.next_offset[partition] = offset + 1

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot_all(self) -> int:
        """Snapshot every owned partition (call right after a commit: memory == committed state)."""
        for partition in list(self.scorer.partitions):
            self.snapshot(partition)
        return len(self.scorer.partitions)

    def snapshot(self, partition: int) -> None:
        st = self.scorer.partitions.get(partition)
        if st is None:
            return
        meta = {
            "topic": self.topic,
            "partition": partition,
            "cluster_id": self.cluster_id,
            "changelog_offset": self.next_offset.get(partition, 0),
            "created_at": time.time(),
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        write_snapshot(self._path(partition, "features"), st.engine.snapshot(), meta)  # type: ignore[attr-defined]
        write_snapshot(self._path(partition, "pending"), st.pending.snapshot(), meta)

    def _path(self, partition: int, what: str) -> Path:
        return self.dir / f"p{partition}.{what}.snap"

    def _load_snapshot(self, partition: int) -> tuple[FeatureEngine, PendingStore, int] | None:
        paths = self._path(partition, "features"), self._path(partition, "pending")
        if not all(p.exists() for p in paths):
            return None
        try:
            fbody, fmeta = read_snapshot(paths[0])
            pbody, pmeta = read_snapshot(paths[1])
            if fmeta.get("changelog_offset") != pmeta.get("changelog_offset"):
                raise StateError("features and pending snapshots are from different moments")
            if fmeta.get("cluster_id") != self.cluster_id:
                raise StateError(f"snapshot belongs to cluster {fmeta.get('cluster_id')!r}")
            if fmeta.get("topic") != self.topic or fmeta.get("partition") != partition:
                raise StateError(f"snapshot belongs to {fmeta.get('topic')}[{fmeta.get('partition')}]")
            if time.time() - float(fmeta.get("created_at", 0)) > MAX_SNAPSHOT_AGE_S:
                logger.info("partition %d: snapshot older than %.0fh, restoring from the changelog",
                            partition, MAX_SNAPSHOT_AGE_S / 3600)
                return None
            engine = FeatureEngine.restore(fbody, self.settings.features, self.table)
            pending = PendingStore.restore(pbody)
        except StateError as exc:
            logger.warning("partition %d: snapshot refused (%s); restoring from the changelog", partition, exc)
            return None
        except Exception as exc:
            logger.warning("partition %d: snapshot unreadable (%s); restoring from the changelog", partition, exc)
            return None
        return engine, pending, int(fmeta["changelog_offset"])
