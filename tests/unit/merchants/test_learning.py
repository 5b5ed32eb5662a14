"""The shared learner: labelled feature vectors in, one published model out, adopted as is."""

from __future__ import annotations

import pytest

from stream_scorer.config import Settings
from stream_scorer.events import Transaction
from stream_scorer.exceptions import StateError
from stream_scorer.features.engine import FeatureEngine
from stream_scorer.merchants.learning import Learner, decode_example, decode_model, encode_example, names_crc
from stream_scorer.pipeline import Scorer, scorer_settings
from stream_scorer.simulate import Simulator


def _examples(n: int) -> list[tuple[dict[str, float], bool]]:
    eng = FeatureEngine()
    out = []
    for e in Simulator(seed=4).take(n):
        t = Transaction.model_validate(e)
        out.append((eng.update(t), bool(t.is_fraud)))
    return out


def test_a_learner_fed_every_example_is_the_model_that_learned_them_itself():
    settings = Settings(metrics_port=None)
    learner = Learner(settings)
    alone = Scorer(scorer_settings(settings), lambda: None)  # type: ignore[arg-type,return-value]
    for x, y in _examples(2_000):
        assert learner.fold(encode_example(x, y, learner.names, learner.crc))
        alone.learn_features(x, y)
    models, examples, progress = decode_model(learner.dumps(), learner.crc)
    assert examples == 2_000 and progress == {}
    x = _examples(2_100)[-1][0]
    assert models.champion.score(x)[0] == pytest.approx(alone.champion.score(x)[0], abs=1e-12)
    assert models.challenger is not None
    assert models.challenger.score(x)[0] == pytest.approx(alone.challenger.score(x)[0], abs=1e-12)  # type: ignore[union-attr]
    # A restored learner goes on from the published model.
    again = Learner(settings)
    again.loads(learner.dumps())
    assert again.examples == 2_000 and not again.dirty
    assert again.scorer.champion.score(x)[0] == pytest.approx(alone.champion.score(x)[0], abs=1e-12)


def test_examples_and_models_of_other_features_are_refused():
    names = ("a", "b")
    value = encode_example({"a": 1.0, "b": 2.0}, False, names, names_crc(names))
    assert decode_example(value, names, names_crc(names)) == ({"a": 1.0, "b": 2.0}, False, 0, 0)
    other = ("a", "c")
    with pytest.raises(ValueError):
        decode_example(value, other, names_crc(other))
    with pytest.raises(ValueError):
        decode_example(value[:-1], names, names_crc(names))
    learner = Learner(Settings(metrics_port=None))
    assert not learner.fold(value) and learner.examples == 0 and not learner.dirty
    with pytest.raises(StateError):
        decode_model(learner.dumps(), names_crc(other))
    with pytest.raises(StateError):
        decode_model(b"W\x01\x00\x00\x00\x00{}", learner.crc)


def test_a_worker_scorer_puts_each_example_it_learns_in_its_outbox():
    scorer = Scorer(scorer_settings(Settings(metrics_port=None)))
    scorer.learn_outbox = []
    events = [Transaction.model_validate(e) for e in Simulator(seed=2).take(50)]
    for t in events:
        scorer.score(t)
    assert len(scorer.learn_outbox) == 50 == scorer.stats.learned
    assert [y for _, y in scorer.learn_outbox] == [bool(t.is_fraud) for t in events]


def test_the_published_model_says_how_far_it_learned_each_workers_examples():
    settings = Settings(metrics_port=None)
    learner = Learner(settings)
    examples = _examples(30)
    for seq, (x, y) in enumerate(examples[:20], start=1):
        learner.fold(encode_example(x, y, learner.names, learner.crc, source=7, seq=seq))
    for seq, (x, y) in enumerate(examples[20:], start=1):
        learner.fold(encode_example(x, y, learner.names, learner.crc, source=9, seq=seq))
    _, n, progress = decode_model(learner.dumps(), learner.crc)
    assert n == 30 and progress == {7: 20, 9: 10}
    again = Learner(settings)
    again.loads(learner.dumps())
    assert again.progress == {7: 20, 9: 10}


def test_a_worker_without_a_learner_keeps_a_bounded_number_of_its_examples():
    from stream_scorer.worker import MAX_REAPPLIED, Worker

    w = Worker(Settings(metrics_port=None))
    assert w._examples.maxlen == MAX_REAPPLIED
