"""The C state of the model gives exactly the floats and dicts of the Python reference loops."""

from __future__ import annotations

import copy
import math
import os
from collections import Counter, defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_scorer.model import kernels

try:
    from stream_scorer.model import _kernels  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - the README's install builds it
    _kernels = None

requires_c = pytest.mark.skipif(
    _kernels is None and bool(os.environ.get("STREAM_SCORER_PURE_PYTHON")),
    reason="C kernels not built and STREAM_SCORER_PURE_PYTHON set",
)

NAMES = [f"f{i}" for i in range(8)]
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
# Feature dicts: any subset of the names in any order, some values repeated (no variance).
feature_dicts = st.lists(
    st.dictionaries(st.sampled_from(NAMES), st.one_of(finite, st.sampled_from([0.0, 1.0, 3.0]))),
    min_size=1,
    max_size=30,
)


def fresh() -> dict[str, Any]:
    return {"counts": Counter(), "means": defaultdict(float), "vars": defaultdict(float), "std": {}}


def same(a: Any, b: Any) -> bool:
    """Equal floats bit for bit (a NaN equals a NaN), dicts with their key order."""
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


def test_native_kernels_are_built_and_in_use() -> None:
    """The README's install compiles the extension; a silent fall back to Python would cost the
    hot path several times its speed."""
    if os.environ.get("STREAM_SCORER_PURE_PYTHON"):
        pytest.skip("STREAM_SCORER_PURE_PYTHON is set")
    assert _kernels is not None, "stream_scorer.model._kernels is not built: reinstall with a C compiler"
    assert kernels.NATIVE and kernels.Scaler is _kernels.Scaler and kernels.learn is _kernels.learn


# -- the array-backed state: Scaler, Weights, learn, score ----------------------------------------


@requires_c
@settings(max_examples=200, deadline=None)
@given(stream=feature_dicts, initial=st.dictionaries(st.sampled_from(NAMES), finite, max_size=4),
       syncs=st.lists(st.booleans(), min_size=30, max_size=30), two=st.booleans(),
       lr=st.sampled_from([0.01, 0.5]), l2=st.sampled_from([0.0, 1e-3]),
       intercept=st.floats(-30.0, 30.0), gs=st.lists(st.floats(-1.0, 1.0), min_size=30, max_size=30))
def test_c_state_equals_python_state_and_the_eager_dict_loops(
    stream: list[dict[str, float]], initial: dict[str, float], syncs: list[bool], two: bool,
    lr: float, l2: float, intercept: float, gs: list[float],
) -> None:
    """C and Python state give the same floats as the dict loops on River's dicts, and their
    dicts, synced at any points, hold what the dict loops wrote, in the same key order."""
    start = {"counts": Counter(dict.fromkeys(initial, 3)), "means": defaultdict(float, initial),
             "vars": defaultdict(float, {k: abs(v) for k, v in initial.items()})}
    eager = copy.deepcopy(start)
    eager["std"] = {k: v**0.5 for k, v in eager["vars"].items()}
    river = {"c": copy.deepcopy(start), "py": copy.deepcopy(start)}
    wd = {"c": (dict(initial), dict(initial)), "py": (dict(initial), dict(initial))}
    we = (dict(initial), dict(initial))
    scalers = {"c": _kernels.Scaler(**river["c"]), "py": kernels.PyScaler(**river["py"])}
    consts = (1.0, 1.0, 5.0, 0.01, lr, l2)
    ws = {
        "c": tuple(_kernels.Weights(scalers["c"], d, *consts) for d in wd["c"]),
        "py": tuple(kernels.PyWeights(scalers["py"], d, *consts) for d in wd["py"]),
    }
    fns = {"c": (_kernels.score, _kernels.learn), "py": (kernels.py_score, kernels.py_learn)}
    b = [intercept, -intercept]
    for i, (x, g, sync) in enumerate(zip(stream, gs, syncs, strict=False)):
        y = i % 3 == 0
        sw = (1.0 + 30 * g * g, 1.0)
        t = kernels.py_scale_transform(x, eager["means"], eager["std"])
        for want in (True, False):
            z1, pos = kernels.py_contributions(x, t, we[0], b[0], want)
            z2 = kernels.py_contributions(x, t, we[1], b[1], False)[0] if two else None
            for k in ("c", "py"):
                got = fns[k][0](scalers[k], x, ws[k][0], b[0], want, ws[k][1] if two else None, b[1])
                assert same(got, (z1, pos, z2)), k
        scaled = kernels.py_scale_learn(x, eager["counts"], eager["means"], eager["vars"], eager["std"])
        b1 = kernels.py_sgd_learn(x, scaled, we[0], b[0], y, *consts[:2], sw[0], *consts[2:])
        b2 = kernels.py_sgd_learn(x, scaled, we[1], b[1], y, *consts[:2], sw[1], *consts[2:]) if two else b[1]
        for k in ("c", "py"):
            got = fns[k][1](scalers[k], x, y, ws[k][0], b[0], sw[0], ws[k][1] if two else None, b[1], sw[1])
            assert same(got, (b1, b2)), k
        b = [b1, b2]
        if sync:
            for k in ("c", "py"):
                scalers[k].sync(river[k]["counts"], river[k]["means"], river[k]["vars"])
                assert scalers[k].pending == 0
                for stat in ("counts", "means", "vars"):
                    assert same(dict(river[k][stat]), dict(eager[stat])), (k, stat)
                for j in range(2 if two else 1):
                    ws[k][j].sync(wd[k][j])
                    assert same(wd[k][j], we[j]), (k, j)
                for name in eager["std"]:
                    assert same(scalers[k].std_of(name), eager["std"][name]), (k, name)


@requires_c
def test_c_state_refuses_bad_input() -> None:
    s = _kernels.Scaler({}, {}, {})
    w = _kernels.Weights(s, {}, 1.0, 1.0, 1.0, 0.01, 0.1, 0.0)
    with pytest.raises(TypeError):
        _kernels.learn(s, {"a": "x"}, True, w, 0.0, 1.0, None, 0.0, 0.0)
    assert s.pending == 0 and w.pending == 0
    with pytest.raises(TypeError):
        _kernels.learn(s, [1.0], True, w, 0.0, 1.0, None, 0.0, 0.0)
    with pytest.raises(ValueError, match="another Scaler"):
        _kernels.score(_kernels.Scaler({}, {}, {}), {"a": 1.0}, w, 0.0, True, None, 0.0)
    with pytest.raises(ValueError, match="share"):
        _kernels.learn(s, {"a": 1.0}, True, w, 0.0, 1.0, w, 0.0, 1.0)
    with pytest.raises(TypeError):
        _kernels.score(s, {"a": 1.0}, w, 0.0, True, "no", 0.0)
    with pytest.raises(TypeError):
        s.sync({}, {})
