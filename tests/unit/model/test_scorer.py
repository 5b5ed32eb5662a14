"""The shared scoring path: score records, predict-then-learn, challenger, labels, label delay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from stream_scorer.events import Score, Transaction
from stream_scorer.exceptions import CheckpointError
from stream_scorer.model.settings import (
    ChallengerSettings,
    PendingSettings,
    ScorerSettings,
    TreeSettings,
)
from stream_scorer.pipeline import Scorer
from tests.unit.model.engines import ToyFeatures

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def txn(
    i: int, seconds: float, fraud: bool | None = None, amount: float = 20.0, card: str = "c1"
) -> Transaction:
    return Transaction(
        transaction_id=f"t{i}",
        event_time=T0 + timedelta(seconds=seconds),
        card_id=card,
        merchant_id=f"m{i % 3}",
        amount=amount,
        currency="EUR",
        is_fraud=fraud,
    )


def scorer(**kw) -> Scorer:
    return Scorer(ScorerSettings(**kw), ToyFeatures)


@pytest.mark.parametrize("kind", ["logreg", "tree", "none"])
def test_every_record_validates_against_the_contract(transactions, kind):
    s = scorer(challenger=ChallengerSettings(kind=kind, tree=TreeSettings(grace_period=50)))
    for t in transactions[:1_500]:
        r = s.score(t)
        Score.model_validate(r)
        Score.model_validate_json(orjson.dumps(r))
        assert r["latency_ms"] >= 0
        assert (r["challenger_score"] is None) == (kind == "none")
        assert (r["challenger_version"] is None) == (kind == "none")
    assert s.stats.scored == 1_500 and s.stats.learned == 1_500


def test_challenger_scores_in_shadow_and_learns_the_same_labels(transactions):
    s = scorer(challenger=ChallengerSettings(kind="logreg"))
    records = [s.score(t) for t in transactions[:2_000]]
    assert s.challenger is not None and s.challenger.n_learned == s.champion.n_learned == 2_000
    assert records[-1]["challenger_version"] == "logreg-sgd-slow/0"
    assert any(r["challenger_score"] != r["score"] for r in records)
    # Only the champion decides the band.
    review, decline = s.settings.review_threshold, s.settings.decline_threshold
    for r in records:
        expected = (
            "decline" if r["score"] >= decline else "review" if r["score"] >= review else "approve"
        )
        assert r["band"] == expected


def test_the_score_is_the_champion_before_learning(transactions):
    s = scorer()
    engine = ToyFeatures()
    for t in transactions[:1_000]:
        x = engine.update(t)
        before = s.champion.score(x)[0]
        assert s.score(t)["score"] == before


def test_a_score_never_reflects_its_own_label(transactions):
    """Same history, last event labelled fraud or genuine: the same score."""
    history = transactions[:1_000]
    a, b = scorer(), scorer()
    for t in history:
        a.score(t)
        b.score(t)
    last = transactions[1_000]
    ra = a.score(last.model_copy(update={"is_fraud": True}))
    rb = b.score(last.model_copy(update={"is_fraud": False}))
    assert ra["score"] == rb["score"] and ra["challenger_score"] == rb["challenger_score"]
    # ... but the next event sees the difference.
    nxt = transactions[1_001]
    assert a.score(nxt)["score"] != b.score(nxt)["score"]


def test_a_late_label_learns_the_features_seen_at_scoring_time():
    s = scorer(challenger=ChallengerSettings(kind="none"))
    r = s.score(txn(1, 0.0), partition=2)  # no inline label: pending
    for i in range(2, 20):  # the card's state moves on
        s.score(txn(i, float(i)), partition=2)
    assert s.champion.n_learned == 0
    reference = scorer(challenger=ChallengerSettings(kind="none")).champion
    reference.learn(r["features"], True)
    assert s.apply_label("t1", True, label_ts=1e9, partition=2) is True
    assert s.champion.state()["weights"] == reference.state()["weights"]
    engine = s.partition(2).engine
    assert engine.labels == [("m1", True, r["event_time"].timestamp(), 1e9)]
    # Counted, not raised: a second label, a label from another partition, an unknown id.
    assert s.apply_label("t1", False, 1e9, partition=2) is False
    assert s.apply_label("t3", True, 1e9, partition=0) is False
    assert s.apply_label("nope", True, 1e9, partition=2) is False
    c = s.counters()
    assert (c["labels_applied"], c["labels_missed"]) == (1, 3)
    assert (c["pending_duplicate_labels"], c["pending_unknown_labels"]) == (1, 2)


def test_a_label_after_expiry_is_counted():
    s = scorer(pending=PendingSettings(max_age_s=3_600.0, max_entries=100))
    s.score(txn(1, 0.0))
    s.score(txn(2, 7_200.0))  # advances the watermark past t1's age
    assert s.apply_label("t1", True, 7_300.0) is False
    assert s.counters()["pending_expired_labels"] == 1
    assert s.apply_label("t2", True, 7_300.0) is True


def test_label_delay_holds_inline_labels_until_their_time():
    s = scorer(label_delay_s=3_600.0)
    s.score(txn(1, 0.0, fraud=True))
    s.score(txn(2, 1_800.0, fraud=False))
    s.score(txn(3, 3_599.0, fraud=False))
    assert s.champion.n_learned == 0  # nobody's hour has come
    s.score(txn(4, 3_600.0, fraud=False))  # t1's label is due: learned before t4 is scored
    assert s.champion.n_learned == 1 and s.stats.delayed_labels_applied == 1
    s.advance(T0.timestamp() + 5_400.0)  # t2's is due
    assert s.champion.n_learned == 2
    assert s.counters()["delayed_labels_waiting"] == 2
    assert s.partition(0).engine.labels[0] == ("m1", True, T0.timestamp(), T0.timestamp() + 3_600.0)


def test_without_delay_inline_labels_are_learned_at_once_and_not_kept():
    s = scorer()
    s.score(txn(1, 0.0, fraud=True))
    assert s.champion.n_learned == 1 and len(s.partition(0).pending) == 0


def test_learn_false_learns_and_keeps_nothing():
    s = scorer(label_delay_s=10.0)
    for i in range(50):
        s.score(txn(i, float(i) * 100, fraud=i % 2 == 0), learn=False)
    assert s.champion.n_learned == 0 and s.challenger is not None and s.challenger.n_learned == 0
    assert s.counters()["pending_entries"] == 0 and s.counters()["delayed_labels_waiting"] == 0


def test_partitions_are_separate_and_can_be_dropped():
    s = scorer()
    s.score(txn(1, 0.0, card="c1"), partition=0)
    r = s.score(txn(2, 1.0, card="c1"), partition=1)
    assert r["features"]["card_log_count"] == 0.0  # partition 1 never saw c1
    s.drop_partition(1)
    assert set(s.partitions) == {0}
    s.drop_partition(7)  # unknown: nothing to do


def test_the_engine_is_told_to_evict_once_a_minute_of_event_time():
    s = scorer()
    for i in range(300):
        s.score(txn(i, float(i)))
    evictions = s.partition(0).engine.evictions
    assert 4 <= len(evictions) <= 6


def test_a_partition_snapshot_restores_pending_entries_and_delayed_labels():
    s = scorer(label_delay_s=3_600.0)
    for i in range(10):
        s.score(txn(i, float(i) * 600, fraud=i % 3 == 0), partition=4)
    data = s.snapshot_partition(4)
    before = s.stats.delayed_labels_applied
    restored = scorer(label_delay_s=3_600.0)
    st = restored.restore_partition(4, data)
    orig = s.partition(4)
    assert st.pending.entries == orig.pending.entries and st.due == orig.due
    assert st.watermark == orig.watermark and st.seq == orig.seq
    # Both go on the same way: same labels come due, same counts.
    s.advance(T0.timestamp() + 20_000.0, partition=4)
    restored.advance(T0.timestamp() + 20_000.0, partition=4)
    assert s.stats.delayed_labels_applied == 10
    assert restored.stats.delayed_labels_applied == 10 - before > 0
    with pytest.raises(CheckpointError):
        restored.restore_partition(5, b"garbage")


def test_frozen_models_learn_nothing_but_the_engine_hears_the_labels():
    s = Scorer(ScorerSettings(), ToyFeatures, frozen=True)
    before = (s.champion.state(), s.challenger.state() if s.challenger else None)
    for i in range(20):
        s.score(txn(i, float(i), fraud=i % 4 == 0))
    assert (s.champion.state(), s.challenger.state() if s.challenger else None) == before
    assert s.stats.learned == 0
    assert len(s.partition(0).engine.labels) == 20


@pytest.mark.parametrize("kind", ["logreg", "tree"])
def test_restored_models_forget_what_they_learned_after_the_save(transactions, kind):
    """What the worker does when a transaction aborts: the models go back to the last commit, and
    learning the same records again gives the scores of a run that learned them once."""
    challenger = ChallengerSettings(kind=kind, tree=TreeSettings(grace_period=50))
    once, twice = scorer(challenger=challenger), scorer(challenger=challenger)
    for t in transactions[:1_000]:
        once.score(t, partition=0)
        twice.score(t, partition=0)
    saved = twice.save_models()
    for t in transactions[1_000:1_500]:  # learned, then "aborted"
        twice.score(t, partition=1)
    twice.restore_models(saved)
    assert twice.stats.learned == 1_000 and twice.champion.n_learned == 1_000
    twice.restore_models(saved)  # a second abort before the next commit: the copy is intact
    assert twice.champion.state() == saved.champion.state() == once.champion.state()
    if kind == "logreg":
        assert twice.challenger is not None and twice.challenger.scaling is twice.champion.scaling
    else:  # a tree challenger is not copied at each commit (too slow): it keeps what it learned
        assert twice.challenger is not None and twice.challenger.n_learned == 1_500
    for t in transactions[1_000:2_000]:
        a, b = once.score(t, partition=2), twice.score(t, partition=2)
        assert (a["score"], a["reason_codes"]) == (b["score"], b["reason_codes"])
        if kind == "logreg":
            assert a["challenger_score"] == b["challenger_score"]
    assert twice.champion.state() == once.champion.state()


@pytest.mark.slow
def test_after_warm_up_the_model_ranks_the_simulated_fraud_well_above_chance():
    """Predict then learn on a simulated stream with learnable fraud (bursts on stolen cards,
    compromised merchants, odd amounts): once warmed up, the champion ranks fraud far above
    chance, where the same features with a model that never learns rank at chance."""
    from stream_scorer.backtest import average_precision, roc_auc
    from stream_scorer.simulate import Simulator

    events = [Transaction.model_validate(e) for e in Simulator(seed=5).take(12_000)]
    labels = [bool(t.is_fraud) for t in events]
    warm_up = 4_000
    for frozen, check in ((False, "learns"), (True, "never learns")):
        s = Scorer(frozen=frozen)
        scores = [s.score(t)["score"] for t in events]
        y, p = labels[warm_up:], scores[warm_up:]
        auc, ap, rate = roc_auc(y, p), average_precision(y, p), sum(y) / len(y)
        if check == "learns":
            assert auc > 0.9 and ap > 10 * rate, (auc, ap, rate)
        else:
            assert auc == pytest.approx(0.5) and ap < 2 * rate, (auc, ap, rate)
