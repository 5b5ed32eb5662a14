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


def test_long_stream_windows_leave_start_up_out_and_compare_first_and_last() -> None:
    run = _load()
    # 2 s of start-up CPU, then 10 us per event for the first 300 events, 12 us after
    samples = [(0, 0.5), (0, 2.0), (100, 2.001), (300, 2.003), (600, 2.0066), (1000, 2.0114)]
    w = run.per_event_windows(samples, 1000, 200)
    assert w["first_from"] == 100
    assert math.isclose(w["cpu_us_per_event_first"], 10.0) and math.isclose(w["cpu_us_per_event_last"], 12.0)
    assert math.isclose(w["last_over_first"], 1.2)
    text = run.table({"longstream": {"events": 1000, "window": 200, "baseline_rev": "abc",
                                     "current": {**w, "events_per_s": 5.0}, "baseline": {"error": "x"}}})
    assert "8 long stream (this tree)" in text and "MISS" in text and "8 long stream (baseline)" in text
