"""Every feature, on random out-of-order streams with labels, against the brute-force reference."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_scorer.features import FEATURES, FeatureEngine
from stream_scorer.features.catalog import feature_catalog
from stream_scorer.features.settings import FeatureSettings
from tests.unit.features.reference import reference_features
from tests.unit.features.strategies import run, settings_st, streams

# Window sums and maxima are kept in float32 (about 7 significant digits): log1p of them agrees
# to about 1e-6; everything else is float64.
TOLERANCE = 1e-5


def assert_same(
    got: list[dict[str, float]],
    want: list[dict[str, float]],
    stream: Any,
    fs: FeatureSettings | None = None,
) -> None:
    names = list(feature_catalog(fs))
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert list(g) == names, "features must come in catalog order"
        assert set(w) == set(names), "the reference computes every feature"
        for name in names:
            assert math.isfinite(g[name]), (i, name)
            assert math.isclose(g[name], w[name], rel_tol=TOLERANCE, abs_tol=TOLERANCE), (
                f"event {i}: {name} = {g[name]!r}, reference {w[name]!r}"
            )
            if name.endswith(("_count", "_new", "_labels", "_missing", "_border")) or "_ge_q" in name:
                assert g[name] == w[name], (i, name)


@settings(max_examples=400, deadline=None)
@given(stream=streams(), fs=settings_st)
def test_every_feature_matches_the_reference(stream: list[Any], fs: FeatureSettings) -> None:
    engine = FeatureEngine(fs)
    got = run(engine, stream)
    want, late = reference_features(stream, fs)
    assert_same(got, want, stream, fs)
    assert engine.late_events == late


@settings(max_examples=50, deadline=None)
@given(stream=streams(max_items=120))
def test_default_settings_match_the_reference(stream: list[Any]) -> None:
    engine = FeatureEngine()
    want, late = reference_features(stream, FeatureSettings())
    assert_same(run(engine, stream), want, stream)
    assert engine.late_events == late


@given(st.data())
def test_names_are_the_catalog(data: st.DataObject) -> None:
    assert FeatureEngine.names == tuple(FEATURES)
    assert all(isinstance(d, str) and d for d in FEATURES.values())
