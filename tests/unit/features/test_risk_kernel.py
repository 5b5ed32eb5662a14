"""The C risk ring gives exactly the features and bytes of the Python one (RiskRing.py_read/py_fold)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_scorer.features import card
from stream_scorer.features.engine import FeatureEngine
from stream_scorer.features.risk import DAY_S, RiskRing

pure = bool(os.environ.get("STREAM_SCORER_PURE_PYTHON"))
T0 = 20_000 * DAY_S

# (is it a label?, offset of its time from T0 in seconds, fraud?)
ops = st.lists(
    st.tuples(st.booleans(), st.floats(0.0, 90 * DAY_S, allow_nan=False), st.booleans()),
    max_size=120,
)


def test_the_risk_kernel_is_built_and_in_use() -> None:
    if pure:
        pytest.skip("STREAM_SCORER_PURE_PYTHON is set")
    assert card.NATIVE
    ring = FeatureEngine()._merchant_risk
    assert type(ring.read.__self__).__name__ == "RiskKernel"
    assert type(ring.fold.__self__).__name__ == "RiskKernel"


@pytest.mark.skipif(pure or not card.NATIVE, reason="C kernel not in use")
@settings(max_examples=300, deadline=None)
@given(
    steps=ops,
    windows=st.sampled_from([(1,), (7, 30), (1, 7, 30), (2, 3), (30,), (1, 3, 7, 14, 30, 60)]),
    itemsize=st.sampled_from([1, 2, 4]),
    prior=st.sampled_from([(0.005, 0.0), (0.005, 1.0), (0.2, 5.0)]),
    off=st.integers(0, 5),
    sorted_times=st.booleans(),
)
def test_c_risk_ring_equals_python(
    steps: list[tuple[bool, float, bool]],
    windows: tuple[int, ...],
    itemsize: int,
    prior: tuple[float, float],
    off: int,
    sorted_times: bool,
) -> None:
    ring = RiskRing("merchant", windows, *prior, itemsize=itemsize)
    if sorted_times:
        steps = sorted(steps, key=lambda s: s[1])
    c_buf = bytearray(off + ring.size + 3)  # an offset and room after it: regions need no alignment
    py_buf = bytearray(c_buf)
    for is_label, dt, fraud in steps:
        t = T0 + dt
        if is_label:
            ring.fold(c_buf, off, t, fraud)
            ring.py_fold(py_buf, off, t, fraud)
            assert c_buf == py_buf
        else:
            xc: dict[str, float] = {}
            xp: dict[str, float] = {}
            ring.read(c_buf, off, t, xc)
            ring.py_read(py_buf, off, t, xp)
            assert xc == xp and list(xc) == list(xp)


@pytest.mark.skipif(pure or not card.NATIVE, reason="C kernel not in use")
def test_c_risk_ring_saturates_as_python() -> None:
    ring = RiskRing("card", (7,), 0.005, 0.0, itemsize=1)
    c_buf, py_buf = bytearray(ring.size), bytearray(ring.size)
    for i in range(300):
        ring.fold(c_buf, 0, T0 + i, True)
        ring.py_fold(py_buf, 0, T0 + i, True)
    assert c_buf == py_buf
    x: dict[str, float] = {}
    ring.read(c_buf, 0, T0 + DAY_S, x)
    assert x["card_risk_7d_rate"] == 1.0 and x["card_risk_7d_log_labels"] > 5.5  # log1p(255)


@pytest.mark.skipif(pure or not card.NATIVE, reason="C kernel not in use")
def test_c_risk_ring_refuses_a_region_outside_the_buffer() -> None:
    ring = RiskRing("merchant", (7, 30), 0.005, 0.0)
    with pytest.raises(ValueError):
        ring.read(bytearray(ring.size - 1), 0, T0, {})
    with pytest.raises(ValueError):
        ring.fold(bytearray(ring.size), 1, T0, True)
