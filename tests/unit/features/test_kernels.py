"""The C updates of cards and merchants give exactly the features and state of the Python ones."""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_scorer.features import card
from stream_scorer.features.engine import FeatureEngine
from stream_scorer.features.merchant import MerchantLayout, MerchantState
from stream_scorer.features.settings import FeatureSettings
from tests.unit.features.strategies import GRACES, label_merchant, run, streams

pure = bool(os.environ.get("STREAM_SCORER_PURE_PYTHON"))
# Python 3.12 sums floats with compensation (sum()); the kernel's plain sums are 3.11's.
EXACT = sys.version_info < (3, 12)

# Only what the two kernels depend on: the grace (and, for cards, the merchant slots below).
kernel_settings = st.builds(
    FeatureSettings, grace_s=st.sampled_from(GRACES), evict_interval_s=st.just(1e-3)
)


def test_kernels_are_built_and_in_use() -> None:
    if pure:
        pytest.skip("STREAM_SCORER_PURE_PYTHON is set")
    assert card.NATIVE, "stream_scorer.features._kernels is not built: reinstall with a C compiler"
    eng = FeatureEngine()
    assert type(eng._card.update.__self__).__name__ == "CardUpdater"
    assert type(eng._merchant.update.__self__).__name__ == "MerchantUpdater"


def python_engine(fs: FeatureSettings) -> FeatureEngine:
    eng = FeatureEngine(fs)
    eng._card.update = eng._card.py_update  # type: ignore[method-assign]
    eng._merchant.update = eng._merchant.py_update  # type: ignore[method-assign]
    return eng


def same_float(a: float, b: float) -> bool:
    if EXACT:
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == pytest.approx(b, rel=1e-12, abs=1e-12)


def same_features(got: dict[str, float], want: dict[str, float]) -> None:
    assert list(got) == list(want)
    assert all(same_float(got[k], want[k]) for k in want), (got, want)


@pytest.mark.skipif(pure or not card.NATIVE, reason="C kernel not in use")
@settings(max_examples=300, deadline=None)
@given(
    stream=streams(max_items=80),
    fs=kernel_settings,
    slots=st.sampled_from([1, 2, 12]),
)
def test_c_updates_equal_python(stream: list[Any], fs: FeatureSettings, slots: int) -> None:
    """Through the engine, on the transactions (labels reach neither kernel)."""
    fs = fs.model_copy(update={"card_merchant_slots": slots})
    txns = [item for item in stream if item[0] == "txn"]
    c_eng, py_eng = FeatureEngine(fs), python_engine(fs)
    for got, want in zip(run(c_eng, txns), run(py_eng, txns), strict=True):
        same_features(got, want)
    if EXACT:
        assert c_eng.cards == py_eng.cards  # the bytes, bucket for bucket
        assert c_eng.snapshot() == py_eng.snapshot()  # merchants too
        for ident, m in c_eng.merchants.items():  # and the caches, which snapshots leave out
            assert m.cache == py_eng.merchants[ident].cache, ident
            assert m.cache_heads == py_eng.merchants[ident].cache_heads, ident
    assert c_eng.late_events == py_eng.late_events


@pytest.mark.skipif(pure or not card.NATIVE, reason="C kernel not in use")
@settings(max_examples=300, deadline=None)
@given(stream=streams(max_items=80), fs=kernel_settings)
def test_c_merchant_update_equals_python(stream: list[Any], fs: FeatureSettings) -> None:
    """On the merchant layout itself, with labels as touches: the C and Python updates give the
    same features, late flags and state, and a touch changes none of the features."""
    layout = MerchantLayout(fs)
    c_update, py_update = layout.native_updater().update, layout.py_update
    c_ms: dict[str, MerchantState] = {}
    py_ms: dict[str, MerchantState] = {}
    untouched: dict[str, MerchantState] = {}  # the same events, no labels
    for item in stream:
        if item[0] == "label":
            _, key, _, event_ts, label_ts = item
            merchant = label_merchant(key)
            for ms in (c_ms, py_ms):
                layout.touch(ms.setdefault(merchant, layout.new(7)), max(label_ts, event_ts))
            continue
        _, _, merchant, amount, ts, *_ = item
        got: dict[str, float] = {}
        want: dict[str, float] = {}
        plain: dict[str, float] = {}
        c_late = c_update(c_ms.setdefault(merchant, layout.new(7)), amount, ts, got)
        py_late = py_update(py_ms.setdefault(merchant, layout.new(7)), amount, ts, want)
        un_late = py_update(untouched.setdefault(merchant, layout.new(7)), amount, ts, plain)
        assert c_late == py_late == un_late
        same_features(got, want)
        assert want == plain
    assert c_ms.keys() == py_ms.keys()
    for ident, m in c_ms.items():
        p = py_ms[ident]
        assert (m.max_ts, m.seen_ts) == (p.max_ts, p.seen_ts), ident
        if EXACT:
            assert layout.dumps(m) == layout.dumps(p), ident
            assert m.cache == p.cache and m.cache_heads == p.cache_heads, ident
        if ident in untouched:
            u = untouched[ident]
            assert m.max_ts == u.max_ts and m.seen_ts >= u.seen_ts, ident
            assert m.counts == u.counts and m.sums == u.sums, ident


def test_touch_moves_only_seen_ts() -> None:
    layout = MerchantLayout(FeatureSettings())
    m = layout.new(7)
    layout.touch(m, 1e9)
    assert (m.max_ts, m.seen_ts) == (-math.inf, 1e9)
    assert not any(m.counts) and not any(m.sums)
    layout.update(m, 10.0, 1e9 + 60, {})
    state = layout.dumps(m)
    layout.touch(m, 1e9 + 30)  # older than the merchant's latest: nothing
    assert layout.dumps(m) == state
    layout.touch(m, 1e9 + 86_400)
    assert (m.max_ts, m.seen_ts) == (1e9 + 60, 1e9 + 86_400)
    x: dict[str, float] = {}
    layout.update(m, 10.0, 1e9 + 120, x)  # an event before the touch keeps seen_ts
    assert m.seen_ts == 1e9 + 86_400 and x["merchant_1h_log_count"] == math.log1p(1.0)


def test_merchant_layout_has_no_risk() -> None:
    layout = MerchantLayout(FeatureSettings())
    x: dict[str, float] = {}
    layout.update(layout.new(7), 10.0, 1e9, x)
    assert x and not any("risk" in k for k in x)
    assert "risk" not in layout.describe()
    assert layout.horizon_s == 7 * 86_400 + FeatureSettings().grace_s


@pytest.mark.skipif(pure or not card.NATIVE, reason="C kernel not in use")
def test_c_merchant_update_refuses_foreign_state() -> None:
    layout = MerchantLayout(FeatureSettings())
    m = layout.new(7)
    m.cache = [0.0] * len(m.cache)  # type: ignore[assignment]
    with pytest.raises(TypeError):
        layout.update(m, 10.0, 1e9, {})
    small = layout.new(7)
    small.counts = small.counts[:1]
    with pytest.raises(ValueError, match="do not fit"):
        layout.update(small, 10.0, 1e9, {})
    short = layout.new(7)
    short.cache_heads = short.cache_heads[:-1]
    with pytest.raises(ValueError, match="do not fit"):
        layout.update(short, 10.0, 1e9, {})


@pytest.mark.skipif(pure or not card.NATIVE, reason="C kernel not in use")
def test_c_card_update_refuses_a_buffer_of_the_wrong_size() -> None:
    layout = FeatureEngine()._card
    with pytest.raises(ValueError, match="bytes, not"):
        layout.update(bytearray(layout.size - 1), 10.0, 1e9, 7, {})
    with pytest.raises(ValueError, match="mhash"):
        layout.update(layout.new(), 10.0, 1e9, 0, {})
    with pytest.raises(BufferError):
        layout.update(bytes(layout.size), 10.0, 1e9, 7, {})  # read-only
