"""The fast learn path and the shared scaling: equal to River's own ``pipeline.learn_one``."""

from __future__ import annotations

import math
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import compose

from stream_scorer.model import checkpoint, kernels
from stream_scorer.model.logistic import OnlineLogit, river_pipeline
from stream_scorer.model.scaling import Scaling
from stream_scorer.model.settings import ChallengerSettings, ModelSettings, ScorerSettings
from stream_scorer.pipeline import Scorer, make_challenger
from tests.unit.model.engines import ToyFeatures

TOL = {"rel": 1e-9, "abs": 1e-12}


def assert_same_state(m: OnlineLogit, reference: compose.Pipeline) -> None:
    """Scaler statistics, weights (and their order), intercept and step count alike."""
    sc, lr = reference.steps["StandardScaler"], reference.steps["LogisticRegression"]
    assert dict(m.scaler.counts) == dict(sc.counts)
    for ours, theirs in ((m.scaler.means, sc.means), (m.scaler.vars, sc.vars)):
        assert list(ours) == list(theirs)
        assert list(ours.values()) == pytest.approx(list(theirs.values()), **TOL)
    theirs_w = lr._weights.to_dict()
    assert list(m.logit._weights.to_dict()) == list(theirs_w)
    assert list(m.logit._weights.to_dict().values()) == pytest.approx(list(theirs_w.values()), **TOL)
    assert m.logit.intercept == pytest.approx(lr.intercept, **TOL)
    assert m.logit.optimizer.n_iterations == lr.optimizer.n_iterations


def messy_stream(seed: int, n: int) -> list[tuple[dict[str, float], bool, float]]:
    """(x, y, sample weight): features in any order, missing, appearing late, constant (no
    variance), of very different scales, values exactly at the mean; about 8% positives."""
    rng = random.Random(seed)
    names = [f"f{i}" for i in range(10)]
    out = []
    for t in range(n):
        x: dict[str, float] = {}
        order = names[:]
        rng.shuffle(order)
        for name in order[: rng.randint(0, len(order))]:
            if name == "f0":
                x[name] = 3.0  # never varies
            elif name == "f1":
                x[name] = rng.gauss(0.0, 1.0) * 1e4
            elif name == "f2" and t < n // 2:
                continue  # appears half way
            elif name == "f3":
                x[name] = float(rng.randint(0, 2))  # often at its mean
            else:
                x[name] = rng.gauss(1.0, 2.0)
        if t == n // 3:
            x["once"] = 5.0
        y = rng.random() < 0.08
        out.append((x, y, rng.choice([1.0, 1.0, 0.5, 3.0])))
    return out


@pytest.mark.parametrize(
    "s",
    [
        ModelSettings(),
        ModelSettings(learning_rate=0.3, l2=0.01, intercept_lr=0.05),
        ModelSettings(imbalance="weight", weight_cap=50, l2=0.001),
        ModelSettings(learning_rate=5.0, intercept_lr=0.0, intercept_init=0.0),
    ],
    ids=["default", "l2", "weighted", "steep"],
)
def test_fast_learn_equals_river_learn_one(s):
    m, reference = OnlineLogit(s), river_pipeline(s)
    for i, (x, y, w) in enumerate(messy_stream(7, 4_000)):
        p = m.score(x)[0]
        assert p == pytest.approx(reference.predict_proba_one(x)[True], **TOL)
        assert p == pytest.approx(m.pipeline.predict_proba_one(x)[True], **TOL)
        reference.learn_one(x, y, w=w * m.class_weight(y))  # the class weight as learn() reads it
        m.learn(x, y, weight=w)
        if i % 500 == 0:
            assert_same_state(m, reference)
    assert_same_state(m, reference)


feature_dicts = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([0.0, 1.0])),
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(feature_dicts, st.booleans(), st.sampled_from([1.0, 0.25, 4.0])), max_size=60),
    st.sampled_from([0.0, 0.1]),
    st.sampled_from(["none", "weight"]),
)
def test_fast_learn_equals_river_on_any_stream(events, l2, imbalance):
    s = ModelSettings(l2=l2, imbalance=imbalance, learning_rate=0.5)
    m, reference = OnlineLogit(s), river_pipeline(s)
    for x, y, w in events:
        reference.learn_one(x, y, w=w * m.class_weight(y))
        m.learn(x, y, weight=w)
        assert m.score(x)[0] == pytest.approx(reference.predict_proba_one(x)[True], **TOL)
    assert_same_state(m, reference)


def test_scaling_learn_returns_what_transform_one_gives():
    s = Scaling()
    for x, _, _ in messy_stream(3, 1_000):
        scaled = s.learn(x)
        assert scaled == pytest.approx(list(s.scaler.transform_one(x).values()), **TOL)
        again = s.transform(x)
        assert [v if v is not None else 0.0 for v in again] == scaled
        assert s.std == {k: v**0.5 for k, v in s.scaler.vars.items()}


def test_score_with_and_learn_with_equal_each_model_alone(stream):
    """The one-pass pair (shared scaling) gives the floats of each model scoring and learning alone."""
    m, c = OnlineLogit(ModelSettings(), n_reasons=3), OnlineLogit(ModelSettings(l2=0.01), n_reasons=0)
    m_alone, c_alone = OnlineLogit(ModelSettings(), n_reasons=3), OnlineLogit(ModelSettings(l2=0.01))
    assert m.share_scaling(c)
    xs = [(x, y) for x, y in stream[:1_500]] + [(x, False) for x, _, _ in messy_stream(5, 300)]
    for x, y in xs:
        p, reasons, q = m.score_with(c, x)
        assert (p, reasons) == m_alone.score(x) and q == c_alone.score(x)[0]
        m.learn_with(c, x, y)
        m_alone.learn(x, y)
        c_alone.learn(x, y)
    for x in [x for x, _ in stream[1_500:]] + [x for x, _, _ in messy_stream(6, 300)]:
        p, reasons, q = m.score_with(c, x)
        assert (p, reasons) == m_alone.score(x) and q == c_alone.score(x)[0]
    assert m.state() == m_alone.state()
    assert {**c.state(), "n_reasons": 0} == {**c_alone.state(), "n_reasons": 0}


def test_resync_after_river_learned_the_model_directly(stream):
    m = OnlineLogit(ModelSettings())
    for x, y in stream[:300]:
        m.pipeline.learn_one(x, y)  # River's own path, behind the model's back
    m.resync()
    reference = river_pipeline(ModelSettings())
    for x, y in stream[:300]:
        reference.learn_one(x, y)
    for x, y in stream[300:900]:
        assert m.score(x)[0] == pytest.approx(reference.predict_proba_one(x)[True], **TOL)
        m.learn(x, y)
        reference.learn_one(x, y)
    assert_same_state(m, reference)


# -- shared scaling ------------------------------------------------------------------------------


def test_scorer_with_shared_scaling_equals_models_learning_apart(transactions):
    s = Scorer(ScorerSettings(), ToyFeatures)
    assert s.challenger is not None and s.challenger.scaling is s.champion.scaling
    champion = OnlineLogit(ModelSettings(), n_reasons=3)
    challenger = make_challenger(ChallengerSettings())
    assert isinstance(challenger, OnlineLogit)
    engine = ToyFeatures()
    for t in transactions:
        x = engine.update(t)
        r = s.score(t)
        p, reasons = champion.score(x)
        assert r["score"] == p
        assert r["reason_codes"] == [{"feature": n, "contribution": c} for n, c in reasons]
        assert r["challenger_score"] == challenger.score(x)[0]
        champion.learn(x, bool(t.is_fraud))
        challenger.learn(x, bool(t.is_fraud))
    assert s.champion.state() == champion.state()
    assert s.challenger.state() == challenger.state()  # each saves the (shared) scaler


def test_a_model_that_learns_alone_takes_its_own_copy(stream):
    a, b = OnlineLogit(ModelSettings()), OnlineLogit(ModelSettings(learning_rate=0.05))
    assert a.share_scaling(b) and a.scaling is b.scaling and a.scaling.owners == 2
    a.learn(*stream[0])
    assert a.scaling is not b.scaling and a.scaling.owners == b.scaling.owners == 1
    assert dict(b.scaler.counts) == {} and b.pipeline.steps["StandardScaler"] is b.scaler
    assert a.pipeline.steps["StandardScaler"] is a.scaler
    assert not a.share_scaling(b)  # no longer equal


def test_after_a_checkpoint_the_pair_shares_again_only_if_equal(tmp_path, transactions):
    key = b"k" * 32
    s = Scorer(ScorerSettings(), ToyFeatures)
    for t in transactions[:1_000]:
        s.score(t)
    path = tmp_path / "m.ckpt"
    checkpoint.save(path, s.champion, s.challenger, key)
    ck = checkpoint.load(path, key)
    assert isinstance(ck.challenger, OnlineLogit)
    assert ck.champion.state() == orjson.loads(orjson.dumps(s.champion.state()))
    s2 = Scorer(ScorerSettings(), ToyFeatures, champion=ck.champion, challenger=ck.challenger)
    assert s2.challenger is not None and s2.challenger.scaling is s2.champion.scaling
    # A challenger trained on something else keeps its own scaler.
    other = OnlineLogit(ModelSettings(name="other"), n_reasons=0)
    other.learn({"log_amount": 1.0}, False)
    s3 = Scorer(ScorerSettings(), ToyFeatures, champion=OnlineLogit(ModelSettings()), challenger=other)
    assert s3.challenger is not None and s3.challenger.scaling is not s3.champion.scaling
    for t in transactions[1_000:1_200]:
        s3.score(t)
    assert s3.challenger.n_learned == 201 and s3.champion.n_learned == 200


class EagerLogit:
    """The model as it was before its state moved to arrays: the dict loops of
    :mod:`stream_scorer.model.kernels` on plain dicts, updated at every event."""

    def __init__(self, s: ModelSettings, n_reasons: int, stats: dict[str, dict[str, Any]]) -> None:
        self.s, self.k, self.stats = s, n_reasons, stats
        self.w: dict[str, float] = {}
        self.b = s.intercept_init
        self.n = self.pos = 0

    def score(self, x: dict[str, float]) -> tuple[float, list[tuple[str, float]]]:
        scaled = kernels.py_scale_transform(x, self.stats["means"], self.stats["std"])
        z, positive = kernels.py_contributions(x, scaled, self.w, self.b, self.k > 0)
        positive.sort(key=lambda t: t[1], reverse=True)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z)), positive[: self.k]

    def step(self, x: dict[str, float], scaled: list[float], y: bool) -> None:
        w = 1.0
        if self.s.imbalance == "weight" and y:
            prior = (self.pos + 1.0) / (self.n + 2.0)
            w = min(self.s.weight_cap, (1.0 - prior) / prior)
        self.b = kernels.py_sgd_learn(x, scaled, self.w, self.b, y, 1.0, 1.0, w, 1e12,
                                      self.s.intercept_lr, self.s.learning_rate, self.s.l2)
        self.n += 1
        self.pos += y


def test_scores_equal_the_eager_dict_loops_bit_for_bit(transactions):
    """The scorer's scores and reason codes, through copies, restores and checkpoint states, are
    the floats of the dict loops the model ran before its state moved to arrays."""
    from stream_scorer.features.engine import FeatureEngine

    s = Scorer(ScorerSettings(with_features=True), FeatureEngine)
    assert isinstance(s.challenger, OnlineLogit) and s.challenger.scaling is s.champion.scaling
    assert s.champion.logit.clip_gradient == 1e12
    stats: dict[str, dict[str, Any]] = {"counts": {}, "means": {}, "vars": {}, "std": {}}
    champion = EagerLogit(s.champion.settings, s.champion.n_reasons, stats)
    challenger = EagerLogit(s.challenger.settings, 0, stats)
    for i, t in enumerate(transactions):
        r = s.score(t)
        x = r["features"]
        assert len(x) == len(FeatureEngine.names)
        p, reasons = champion.score(x)
        assert r["score"] == p and r["challenger_score"] == challenger.score(x)[0], i
        assert [(c["feature"], c["contribution"]) for c in r["reason_codes"]] == [
            (s.partition(0).engine.reason_text(n), c) for n, c in reasons]
        scaled = kernels.py_scale_learn(x, stats["counts"], stats["means"], stats["vars"], stats["std"])
        champion.step(x, scaled, bool(t.is_fraud))
        challenger.step(x, scaled, bool(t.is_fraud))
        if i % 700 == 350:
            s.restore_models(s.save_models())  # copies sync River's objects, restores take them up
        if i % 900 == 450:
            s.champion = OnlineLogit.from_state(orjson.loads(orjson.dumps(s.champion.state())))
            assert s.champion.share_scaling(s.challenger)
    assert dict(s.champion.scaler.means) == stats["means"] and s.champion.logit._weights.to_dict() == champion.w
    assert s.challenger.logit.intercept == challenger.b
