"""The scoring worker's running counts, and its Prometheus metrics, updated once per batch (never per event)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class WorkerStats:
    """Running counts of what the worker did; read by the demo, the tests and the metrics."""

    consumed: int = 0
    scored: int = 0
    dead_letters: int = 0
    labels: int = 0
    labels_applied: int = 0
    learned: int = 0
    batches: int = 0
    commits: int = 0
    aborts: int = 0
    changelog_records: int = 0
    delivery_failures: int = 0
    consumer_errors: int = 0
    snapshots: int = 0
    restores: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add_batch(self, consumed: int, scored: int, dead: int, labels: int, applied: int, learned: int) -> None:
        self.consumed += consumed
        self.scored += scored
        self.dead_letters += dead
        self.labels += labels
        self.labels_applied += applied
        self.learned = learned
        self.batches += 1


class WorkerMetrics:
    """Counters, gauges and the latency histogram of one worker, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        p = "stream_scorer_"
        self.consumed = Counter(p + "events_consumed", "Records consumed (transactions and labels).", registry=r)
        self.scored = Counter(p + "scores_produced", "Scores produced.", registry=r)
        self.dead_letters = Counter(p + "dead_letters", "Records sent to the dead-letter topic.", registry=r)
        self.labels = Counter(p + "labels", "Labels consumed, by outcome.", ["outcome"], registry=r)
        self.commits = Counter(p + "commits", "Commits (transactions, or offset commits at least once).", registry=r)
        self.aborts = Counter(p + "aborts", "Commit units rolled back and consumed again.", registry=r)
        self.batches_per_commit = Histogram(
            p + "batches_per_commit",
            "Batches in one commit: 1 when caught up, more while working through a backlog.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.latency = Histogram(
            p + "latency_seconds",
            "Processing latency in the worker, per batch: from the batch's arrival to its last score.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            p + "batch_seconds", "Time to process and commit one batch.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.lag = Gauge(
            p + "consumer_lag", "Records behind the end of each owned partition.", ["topic", "partition"], registry=r
        )
        self.state_entities = Gauge(p + "state_entities", "Cards and merchants held in state.", registry=r)
        self.pending = Gauge(p + "pending_labels", "Scored transactions waiting for their label.", registry=r)
        self.late = Gauge(p + "late_events", "Events older than the grace period (since start).", registry=r)
        self.model = Gauge(
            p + "model_info", "The champion and challenger versions (value 1).", ["role", "version"], registry=r
        )
        self.partitions = Gauge(p + "assigned_partitions", "Partitions this worker owns.", registry=r)
        self.model_adoptions = Counter(
            p + "model_adoptions", "Models published by the shared learner that this worker adopted.", registry=r
        )
        self.table_merchants = Gauge(
            p + "merchant_table_merchants", "Merchants in the worker's merchant table.", registry=r
        )
        self.table_lag = Gauge(
            p + "merchant_table_lag", "Records of the merchant-features topic not yet read into the table.",
            registry=r,
        )
        self.table_staleness = Histogram(
            p + "merchant_table_staleness_seconds",
            "From a card worker producing a transaction or label for the merchant stage to the merchant's new "
            "state reaching this worker's table.",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0),
            registry=r,
        )

    def add_batch(self, consumed: int, scored: int, dead: int, labels: int, applied: int, seconds: float) -> None:
        """One batch's counts, and its latency (from its arrival to its last score)."""
        self.consumed.inc(consumed)
        self.scored.inc(scored)
        self.dead_letters.inc(dead)
        if labels:
            self.labels.labels("applied").inc(applied)
            self.labels.labels("unmatched").inc(labels - applied)
        self.latency.observe(seconds)
