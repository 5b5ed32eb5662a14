"""Smoke test of benchmarks/bench_model.py: it runs on a few events and reports sane numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_model.py"


def test_bench_model_reports_every_measure() -> None:
    spec = importlib.util.spec_from_file_location("bench_model", _PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_model"] = mod
    spec.loader.exec_module(mod)
    out = mod.bench(n=200, repeats=1, seed=1)
    assert set(out) == {"river", "online_logit", "scorer_model", "scorer_full"}
    assert all(v > 0 for v in out.values())
