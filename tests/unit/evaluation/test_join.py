"""The score/label join: either order, inline labels, duplicates, and both bounds."""

from __future__ import annotations

from stream_scorer.evaluation.join import LabelJoin


def _score(tid: str, label: bool | None = None) -> dict:
    return {"transaction_id": tid, "score": 0.3, "label": label}


def _label(tid: str, y: bool = True) -> dict:
    return {"transaction_id": tid, "is_fraud": y}


def test_label_after_score_joins():
    j = LabelJoin()
    assert j.update_score(_score("a"), ts=0.0) is None
    joined = j.update_label(_label("a", False), ts=100.0)
    assert joined is not None and joined.label is False and joined.score["transaction_id"] == "a"
    assert j.get()["joined"] == 1 and j.get()["pending_scores"] == 0


def test_label_before_score_joins():
    j = LabelJoin()
    assert j.update_label(_label("a", True), ts=0.0) is None
    joined = j.update_score(_score("a"), ts=1.0)
    assert joined is not None and joined.label is True
    assert j.get()["pending_labels"] == 0


def test_inline_label_joins_at_once_and_a_later_label_is_a_duplicate():
    j = LabelJoin()
    joined = j.update_score(_score("a", label=True), ts=0.0)
    assert joined is not None and joined.label is True
    assert j.update_label(_label("a"), ts=5.0) is None
    c = j.get()
    assert c["inline"] == 1 and c["duplicates"] == 1 and c["pending_labels"] == 0


def test_duplicates_are_counted_not_joined_twice():
    j = LabelJoin()
    j.update_score(_score("a"), ts=0.0)
    assert j.update_score(_score("a"), ts=0.0) is None
    assert j.update_label(_label("a"), ts=1.0) is not None
    assert j.update_label(_label("a"), ts=2.0) is None
    assert j.get()["duplicates"] == 2 and j.get()["joined"] == 1


def test_full_buffer_evicts_the_oldest():
    j = LabelJoin(max_pending=3)
    for i in range(5):
        j.update_score(_score(f"s{i}"), ts=float(i))
        j.update_label(_label(f"l{i}"), ts=float(i))
    c = j.get()
    assert c["pending_scores"] == 3 and c["scores_evicted"] == 2
    assert c["pending_labels"] == 3 and c["labels_evicted"] == 2
    assert j.update_label(_label("s0"), ts=6.0) is None, "s0 was evicted"
    assert j.update_label(_label("s4"), ts=6.0) is not None


def test_old_entries_expire_behind_the_watermark():
    j = LabelJoin(max_age_s=100.0)
    j.update_score(_score("old"), ts=0.0)
    j.update_label(_label("orphan"), ts=10.0)
    j.update_score(_score("young"), ts=150.0)
    assert j.expire() == 2
    c = j.get()
    assert c["scores_expired"] == 1 and c["labels_expired"] == 1 and c["pending_scores"] == 1
    assert j.update_label(_label("young"), ts=160.0) is not None
