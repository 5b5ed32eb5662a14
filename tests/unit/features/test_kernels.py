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
from stream_scorer.features.settings import FeatureSettings
from tests.unit.features.strategies import run, settings_st, streams

pure = bool(os.environ.get("STREAM_SCORER_PURE_PYTHON"))
# Python 3.12 sums floats with compensation (sum()); the kernel's plain sums are 3.11's.
EXACT = sys.version_info < (3, 12)


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


@pytest.mark.skipif(pure or not card.NATIVE, reason="C kernel not in use")
@settings(max_examples=300, deadline=None)
@given(
    stream=streams(max_items=80),
    fs=settings_st,
    slots=st.sampled_from([1, 2, 12]),
)
def test_c_updates_equal_python(stream: list[Any], fs: FeatureSettings, slots: int) -> None:
    fs = fs.model_copy(update={"card_merchant_slots": slots})
    c_eng, py_eng = FeatureEngine(fs), python_engine(fs)
    for got, want in zip(run(c_eng, stream), run(py_eng, stream), strict=True):
        assert list(got) == list(want)
        assert all(same_float(got[k], want[k]) for k in want), (got, want)
    if EXACT:
        assert c_eng.cards == py_eng.cards  # the bytes, bucket for bucket
        assert c_eng.snapshot() == py_eng.snapshot()  # merchants too, pending labels included
        for ident, m in c_eng.merchants.items():  # and the caches, which snapshots leave out
            assert m.cache == py_eng.merchants[ident].cache, ident
            assert m.cache_heads == py_eng.merchants[ident].cache_heads, ident
    assert c_eng.late_events == py_eng.late_events


@pytest.mark.skipif(pure or not card.NATIVE, reason="C kernel not in use")
def test_c_merchant_update_refuses_foreign_state() -> None:
    layout = FeatureEngine()._merchant
    m = layout.new(7)
    m.cache = [0.0] * len(m.cache)  # type: ignore[assignment]
    with pytest.raises(TypeError):
        layout.update(m, 10.0, 1e9, {})
    small = FeatureEngine()._merchant.new(7)
    small.counts = small.counts[:1]
    with pytest.raises(ValueError, match="do not fit"):
        layout.update(small, 10.0, 1e9, {})


@pytest.mark.skipif(pure or not card.NATIVE, reason="C kernel not in use")
def test_c_card_update_refuses_a_buffer_of_the_wrong_size() -> None:
    layout = FeatureEngine()._card
    with pytest.raises(ValueError, match="bytes, not"):
        layout.update(bytearray(layout.size - 1), 10.0, 1e9, 7, {})
    with pytest.raises(ValueError, match="mhash"):
        layout.update(layout.new(), 10.0, 1e9, 0, {})
    with pytest.raises(BufferError):
        layout.update(bytes(layout.size), 10.0, 1e9, 7, {})  # read-only
