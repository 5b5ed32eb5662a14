"""Steps 3-5 over fake clients: what a commit writes, in which order, and when the caller must
rewind, for both guarantees."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stream_scorer.commits import Commits
from stream_scorer.kafka.transactions import TransactionalProducer
from stream_scorer.state.changelog_writer import ChangelogWriter
from stream_scorer.worker_metrics import WorkerMetrics, WorkerStats
from tests.fakes import FakeConsumer, FakeProducer, abortable


class State:
    def __init__(self) -> None:
        self.pending: dict[int, list[tuple[bytes, bytes | None]]] = {}
        self.delivered_at: list[tuple[int, int]] = []

    def changes(self, p: int) -> Iterator[tuple[bytes, bytes | None]]:
        yield from self.pending.pop(p, [])

    def delivered(self, p: int, offset: int) -> None:
        self.delivered_at.append((p, offset))


class Scorer:
    def __init__(self) -> None:
        self.generation = 0
        self.restored: list[Any] = []

    def save_models(self) -> str:
        self.generation += 1
        return f"models-{self.generation}"

    def restore_models(self, saved: Any) -> None:
        self.restored.append(saved)


def _commits(eos: bool, producer: FakeProducer | None = None) -> tuple[Commits, FakeProducer, State, Scorer]:
    producer = producer or FakeProducer()
    made = [producer]
    out = TransactionalProducer(lambda extra: made.pop(0) if made else FakeProducer(), "g-w" if eos else None,  # type: ignore[arg-type,return-value]
                                wedged_s=0.5, retry_pause_s=0.0)
    out.start()
    state, scorer = State(), Scorer()
    writer = ChangelogWriter("g.state-changelog", state, out, ("tx", "labels"))
    return Commits(eos, 0.1, out, writer, state, scorer, WorkerStats(), WorkerMetrics()), producer, state, scorer


def _batch(commits: Commits, producer: FakeProducer, offsets: dict[tuple[str, int], int], n_scores: int = 1) -> None:
    commits.begin()
    for _ in range(n_scores):
        producer.produce("scores", b"s", b"k", on_delivery=commits.score_cb)
    commits.reports.produced += n_scores
    commits.unit.add(offsets)


def test_exactly_once_one_transaction_per_unit_changelog_then_offsets_then_commit():
    commits, producer, state, scorer = _commits(eos=True)
    _batch(commits, producer, {("tx", 0): 5})
    _batch(commits, producer, {("tx", 0): 9, ("labels", 0): 2})
    state.pending[0] = [(b"fc:1", b"v1"), (b"fc:2", b"v2")]
    assert producer.calls.count("begin_transaction") == 1, "one transaction for the unit's batches"
    assert commits.commit(FakeConsumer()) is True
    assert [m.topic() for m in producer.produced] == ["scores", "scores", "g.state-changelog", "g.state-changelog"]
    assert producer.calls[-2:] == ["send_offsets_to_transaction", "commit_transaction"]
    assert sorted((tp.topic, tp.offset) for tp in producer.sent_offsets) == [("labels", 2), ("tx", 9)]
    assert commits.stats.commits == 1 and commits.stats.changelog_records == 2
    assert commits.models_at_commit == "models-2" and scorer.generation == 2
    assert not commits.open and commits.unit.offsets == {}
    producer.flush()
    assert state.delivered_at == [(0, 1)], "a report on the partition's last changelog record only"


def test_an_aborted_transaction_asks_for_a_rewind_and_keeps_the_rollback_point():
    commits, producer, _, _ = _commits(eos=True, producer=FakeProducer(commit_transaction=[abortable()]))
    before = commits.models_at_commit
    _batch(commits, producer, {("tx", 0): 5})
    assert commits.commit(FakeConsumer()) is False
    assert commits.stats.aborts == 1 and commits.stats.commits == 0 and commits.models_at_commit == before
    assert producer.calls[-1] == "abort_transaction" and not commits.open


def test_losing_the_partitions_aborts_and_restores_the_models():
    commits, producer, _, scorer = _commits(eos=True)
    _batch(commits, producer, {("tx", 0): 5})
    assert commits.abandon() is True
    assert producer.calls[-1] == "abort_transaction" and scorer.restored == [commits.models_at_commit]
    assert commits.stats.aborts == 1 and not commits.open


def test_at_least_once_commits_once_the_reports_are_in():
    commits, producer, state, _ = _commits(eos=False)
    consumer = FakeConsumer()
    _batch(commits, producer, {("tx", 0): 5}, n_scores=2)
    state.pending[0] = [(b"fc:1", b"v1")]
    assert commits.commit(consumer) is True  # close() polls: the reports came, the offsets commit
    assert [(tp.topic, tp.offset) for tp in consumer.commits[0][0]] == [("tx", 5)] and consumer.commits[0][1]
    assert producer.calls == [], "no transaction at least once"
    assert state.delivered_at == [(0, 0)]


def test_at_least_once_a_refused_record_asks_for_a_rewind():
    commits, producer, _, _ = _commits(eos=False, producer=FakeProducer(refuse={"scores"}))
    consumer = FakeConsumer()
    _batch(commits, producer, {("tx", 0): 5})
    assert commits.commit(consumer) is False
    assert commits.stats.delivery_failures == 1 and commits.stats.aborts == 1 and consumer.commits == []


def test_the_loop_waits_until_the_unit_is_due_and_briefly_while_reports_are_due():
    commits, producer, _, _ = _commits(eos=False)
    assert commits.wait_s(1.0) == 1.0
    _batch(commits, producer, {("tx", 0): 5})
    assert commits.wait_s(1.0) <= 0.1
    commits.acks.queue.push(commits.reports)
    assert commits.wait_s(1.0) <= 0.005
