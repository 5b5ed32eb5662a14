"""Smoke test of the pure parts of benchmarks/run.py (no broker): they run and report sane numbers."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_run", _PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_percentile_nearest_rank() -> None:
    run = _load()
    values = [float(i) for i in range(1, 101)]
    assert run.percentile(values, 50) == 50.0
    assert run.percentile(values, 99) == 99.0
    assert run.percentile(values, 100) == 100.0
    assert math.isnan(run.percentile([], 50))


def test_limit_offline_and_table() -> None:
    run = _load()
    pairs = run.simulate(300)
    values = [v for _, v in pairs]
    limit = run.bench_limit(run.feature_rows(values))
    offline = run.bench_offline(values, batch=100)
    assert limit["events_per_s"] > 0 and offline["events_per_s"] > 0
    assert set(offline["stages_us"]) and all(v > 0 for v in offline["stages_us"].values())
    text = run.table({"limit": limit, "offline": offline})
    assert "1 limit" in text and "2 offline" in text
