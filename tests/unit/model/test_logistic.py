"""The champion: River-equal probabilities, reason codes, class weights, plain-data state."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_scorer.model.logistic import OnlineLogit, band_of, river_pipeline
from stream_scorer.model.settings import ModelSettings


@pytest.mark.parametrize(
    "s", [ModelSettings(), ModelSettings(learning_rate=0.1, l2=0.01, intercept_lr=0.05)]
)
def test_probability_equals_river_predict_proba_one(stream, s):
    m = OnlineLogit(s)
    reference = river_pipeline(s)  # trained apart, through River's own pipeline.learn_one
    for x, y in stream:
        p, _ = m.score(x)
        assert p == pytest.approx(m.pipeline.predict_proba_one(x)[True], rel=1e-12, abs=1e-15)
        assert p == pytest.approx(reference.predict_proba_one(x)[True], rel=1e-9, abs=1e-12)
        m.learn(x, y)
        reference.learn_one(x, y)


feature_dicts = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.floats(-1e3, 1e3, allow_nan=False),
    min_size=1,
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(feature_dicts, st.booleans()), min_size=1, max_size=40))
def test_probability_equals_river_on_any_stream(events):
    s = ModelSettings()
    m, reference = OnlineLogit(s), river_pipeline(s)
    for x, y in events:
        assert m.score(x)[0] == pytest.approx(
            reference.predict_proba_one(x)[True], rel=1e-9, abs=1e-12
        )
        m.learn(x, y)
        reference.learn_one(x, y)


def test_reason_codes_are_the_top_positive_contributions(stream):
    m = OnlineLogit(ModelSettings(), n_reasons=3)
    for x, y in stream[:2_000]:
        m.learn(x, y)
    x = max((x for x, _ in stream[2_000:]), key=lambda x: m.score(x)[0])
    _, reasons = m.score(x)
    scaled = m.scaler.transform_one(x)
    expected = sorted(
        ((n, m.logit._weights.get(n, 0.0) * v) for n, v in scaled.items()), key=lambda t: -t[1]
    )
    expected = [(n, c) for n, c in expected[:3] if c > 0]
    assert [n for n, _ in reasons] == [n for n, _ in expected]
    assert [c for _, c in reasons] == pytest.approx([c for _, c in expected])
    assert reasons and all(c > 0 for _, c in reasons)
    assert [c for _, c in reasons] == sorted((c for _, c in reasons), reverse=True)


def test_class_weight_follows_the_online_prior_and_the_cap():
    m = OnlineLogit(ModelSettings(imbalance="weight", weight_cap=10))
    assert m.class_weight(False) == 1.0
    assert m.class_weight(True) == 1.0  # prior 1/2 before any label
    for i in range(98):
        m.learn({"a": float(i)}, i == 0)
    # prior = (1 + 1) / (98 + 2) = 0.02 -> (1 - 0.02) / 0.02 = 49, capped at 10
    assert m.class_weight(True) == 10.0
    m2 = OnlineLogit(ModelSettings(imbalance="weight", weight_cap=100))
    for i in range(98):
        m2.learn({"a": float(i)}, i == 0)
    assert m2.class_weight(True) == pytest.approx(49.0)
    assert OnlineLogit(ModelSettings()).class_weight(True) == 1.0


def test_state_is_json_and_round_trips_to_identical_scores(stream):
    m = OnlineLogit(ModelSettings(imbalance="weight", weight_cap=5, l2=0.001))
    for x, y in stream[:1_500]:
        m.learn(x, y)
    m.generation = 4
    state = orjson.loads(orjson.dumps(m.state()))
    m2 = OnlineLogit.from_state(state)
    assert m2.version == m.version == "logreg-sgd/4"
    for x, y in stream[1_500:]:
        assert m2.score(x) == m.score(x)
        m.learn(x, y)
        m2.learn(x, y)
    assert m2.state() == m.state()


def test_from_state_refuses_another_kind():
    with pytest.raises(ValueError, match="not a logreg state"):
        OnlineLogit.from_state({"kind": "tree", "state_version": 1})


def test_band_of():
    assert band_of(0.1, 0.5, 0.8) == "approve"
    assert band_of(0.5, 0.5, 0.8) == "review"
    assert band_of(0.8, 0.5, 0.8) == "decline"
    assert not math.isnan(OnlineLogit(ModelSettings()).score({})[0])
