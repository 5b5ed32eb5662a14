"""benchmarks/bench_quality.py: its metrics on hand-made arrays, no label leak, a tiny run."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_quality.py"
DAY = 86_400.0


def _load() -> ModuleType:
    if "bench_quality" in sys.modules:
        return sys.modules["bench_quality"]
    spec = importlib.util.spec_from_file_location("bench_quality", _PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = mod
    spec.loader.exec_module(mod)
    return mod


bq = _load()


def test_card_precision_at_k_by_hand() -> None:
    # day 0: card 1 max 0.9 (fraud via its 0.1 event), card 2 0.8 (genuine), card 3 0.2 (fraud)
    # day 1: card 1 0.3 (genuine), card 2 0.7 (fraud)
    day = np.array([0, 0, 0, 0, 1, 1])
    card = np.array([1, 1, 2, 3, 1, 2])
    y = np.array([0, 1, 0, 1, 0, 1])
    s = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.7])
    # k=1: day 0 top card 1 (fraud) -> 1; day 1 top card 2 (fraud) -> 1
    assert bq.card_precision_at_k(day, card, y, s, k=1) == (1.0, 2)
    # k=2: day 0 cards 1, 2 -> 1/2; day 1 cards 2, 1 -> 1/2
    assert bq.card_precision_at_k(day, card, y, s, k=2) == (0.5, 2)
    # k=100: fewer cards than k, all of them: day 0 2/3, day 1 1/2
    cp, days = bq.card_precision_at_k(day, card, y, s, k=100)
    assert days == 2 and cp == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_card_precision_counts_days_without_fraud() -> None:
    day = np.array([0, 1])
    card = np.array([1, 1])
    cp, days = bq.card_precision_at_k(day, card, np.array([1, 0]), np.array([0.5, 0.5]), k=100)
    assert (cp, days) == (0.5, 2)


def test_per_type_metrics_by_hand() -> None:
    # genuine 0.1, 0.4; type a frauds 0.8, 0.3; type b fraud 0.05; a fraud of no type 0.9
    y = np.array([0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.4, 0.8, 0.3, 0.05, 0.9])
    types = np.array([-1, -1, 0, 0, 1, -1])
    m = bq.per_type_metrics(y, s, types, ["a", "b"])
    # a: pairs (fraud > genuine): 0.8 beats both, 0.3 beats 0.1 only -> 3/4
    assert m["a"]["roc_auc"] == 0.75 and m["a"]["frauds"] == 2
    # a: ranking 0.8+, 0.4-, 0.3+, 0.1- -> AP = (1/1 + 2/3) / 2
    assert m["a"]["average_precision"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-5)
    # b: its fraud is below both genuine events
    assert m["b"]["roc_auc"] == 0.0 and m["b"]["frauds"] == 1
    assert m["b"]["average_precision"] == pytest.approx(1 / 3, abs=1e-5)


class _Recorder:
    """A model that remembers when (in event time) it learned what."""

    def __init__(self) -> None:
        self.now = -math.inf
        self.learned: list[tuple[float, float]] = []  # (clock at learning, event time learned)

    def predict_proba_one(self, x: dict[str, float]) -> dict[Any, float]:
        return {True: 0.5}

    def learn_one(self, x: dict[str, float], y: Any) -> None:
        self.learned.append((self.now, x["ts"]))


def test_delayed_learner_never_learns_a_label_before_it_is_due() -> None:
    rng = np.random.default_rng(0)
    delay = 3_600.0
    model = _Recorder()
    learner = bq.DelayedLearner(model, delay)
    times = np.sort(rng.uniform(0, 10 * delay, 2_000)).tolist()
    for ts in times:
        model.now = ts
        learner.step({"ts": ts}, bool(rng.random() < 0.1), ts)
    assert model.learned, "nothing learned"
    assert all(now >= ts + delay for now, ts in model.learned)
    # and nothing due was held back: every event older than the last one by the delay is learned
    assert len(model.learned) == sum(1 for t in times if t + delay <= times[-1])


def test_textbook_terminal_windows_see_only_labels_known_by_then() -> None:
    feats = bq.TextbookFeatures(delay_s=DAY)
    t0 = 100 * DAY
    feats.update("c1", "m", 10.0, t0, True)  # its label is known from t0 + 1 d
    x = feats.update("c2", "m", 10.0, t0 + DAY - 1.0, False)
    assert x["terminal_1d_count"] == 0.0 and x["terminal_30d_fraud_share"] == 0.0
    x = feats.update("c3", "m", 10.0, t0 + DAY + 1.0, False)
    assert x["terminal_1d_count"] == 1.0 and x["terminal_1d_fraud_share"] == 1.0
    # 1 d later the fraud has left the 1-day window [t - D - 1d, t - D) but not the 7-day one;
    # the two genuine events (t0 + 1 d -/+ 1 s) are known and inside both
    x = feats.update("c4", "m", 10.0, t0 + 2 * DAY + 2.0, False)
    assert x["terminal_1d_count"] == 2.0 and x["terminal_1d_fraud_share"] == 0.0
    assert x["terminal_7d_count"] == 3.0 and x["terminal_7d_fraud_share"] == pytest.approx(1 / 3)
    # card windows include the event itself
    assert x["card_1d_count"] == 1.0 and x["card_1d_mean_amount"] == 10.0


def test_parse_sets() -> None:
    feats, model = bq.parse_sets(["model.learning_rate=0.05", "features.grace_s=60"])
    assert feats == {"grace_s": 60} and model == {"learning_rate": 0.05}
    with pytest.raises(bq.BenchError):
        bq.parse_sets(["learning_rate=0.05"])


def test_quick_run_of_the_simulator_end_to_end(tmp_path: Path) -> None:
    doc = bq.main(["--datasets", "simulator", "--quick", "--results-dir", str(tmp_path)])
    path = Path(doc["path"])
    assert path.parent == tmp_path and path.name.startswith("quality-")
    saved = json.loads(path.read_text())
    r = saved["datasets"]["simulator"]
    assert set(r["models"]) == {"champion", "challenger", "reference"}
    assert r["test_events"] > 0 and r["test_frauds"] > 0 and r["reference_learned"] > 0
    for m in r["models"].values():
        assert 0.5 < m["roc_auc"] <= 1.0
        assert set(m["per_type"]) and all("roc_auc" in v for v in m["per_type"].values())
    assert saved["git_commit"] and saved["command"]


def test_synccfd_not_generated_is_skipped_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bq._datasets_module(), "CACHE_DIR", tmp_path / "empty-cache")
    doc = bq.main(["--datasets", "synccfd", "--quick", "--results-dir", str(tmp_path)])
    assert doc["datasets"] == {} and "fetch synccfd" in doc["skipped"]["synccfd"]
    err = capsys.readouterr().err
    assert err.startswith("synccfd: skipped: ") and err.count("\n") == 1
    assert not (tmp_path / "empty-cache").exists()  # nothing generated behind one's back


def _synccfd_csv(path: Path, days: int = 12, seed: int = 0) -> Path:
    """A SynCCFD-shaped CSV: 40 cards, 25 terminals, stolen card numbers shipped far away."""
    rng = np.random.default_rng(seed)
    header = (
        "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TYPE,TX_SHIPP_LAT,"
        "TX_SHIPP_LONG,TX_BILL_LAT,TX_BILL_LONG,TX_TERM_LAT,TX_TERM_LONG,TX_TIME_SECONDS,"
        "TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO"
    )
    lines = [header]
    secs = np.sort(rng.integers(0, days * 86_400, 3_000))
    for i, s in enumerate(secs.tolist()):
        card, term = int(rng.integers(40)), int(rng.integers(25))
        cnp = rng.random() < 0.5
        amount, ship, scenario = round(float(rng.uniform(5, 100)), 2), 0.0, 0
        if rng.random() < 0.03:
            scenario, amount, ship, cnp = 3, amount * 5, 10.0, True
        elif amount > 95:
            scenario = 1
        when = f"2025-01-{1 + s // 86_400:02d} {s % 86_400 // 3_600:02d}:{s % 3_600 // 60:02d}:{s % 60:02d}"
        lines.append(
            f"{i},{when},{card},{term},{amount},{'CNP' if cnp else 'CP'},{ship},0.0,0.0,0.0,0.0,"
            f"{term / 100},{s},{s // 86_400},{int(scenario > 0)},{scenario}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_synccfd_run_gives_the_scorer_the_distances_and_the_reference_textbook_features(tmp_path: Path) -> None:
    ds = bq._datasets_module()
    events = ds.synccfd_events(_synccfd_csv(tmp_path / "sc.csv"))
    r = bq.run_dataset("synccfd", events, DAY, {}, {}, warmup=0.2)
    assert r["feature_settings"]["signals"] == ["bill_term_km", "bill_ship_km"]
    assert r["events_total"] == 3_000 and r["rejected_by_field"] == {}
    assert r["reference_learned"] > 0.8 * 3_000
    assert set(r["models"]) == {"champion", "challenger", "reference"}
    for m in r["models"].values():
        assert set(m["per_type"]) == {"stolen_card_number", "high_amount"}
    # the distance to the shipping place gives stolen card numbers away to the scorer, which
    # sees it; the reference (card and terminal windows, amount) only has their amount
    champion = r["models"]["champion"]["per_type"]["stolen_card_number"]["roc_auc"]
    assert champion > 0.9


def _load_sweep() -> ModuleType:
    _load()
    path = _PATH.parent / "sweep_quality.py"
    spec = importlib.util.spec_from_file_location("sweep_quality", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sweep_parses_variants() -> None:
    sq = _load_sweep()
    assert sq.parse_variant("w3:imbalance=weight,weight_cap=3") == (
        "w3",
        {"imbalance": "weight", "weight_cap": 3},
    )
    with pytest.raises(bq.BenchError):
        sq.parse_variant("bad:learning_rate")


def test_sweep_default_variant_is_bench_quality_s_champion(tmp_path: Path) -> None:
    """The sweep's one-engine, many-models loop learns as the scorer does: the default variant
    ranks the same events exactly as bench_quality's champion, and another learning rate does not."""
    sq = _load_sweep()
    common = ["--datasets", "long_tail", "--n", "15000", "--delay", "long_tail=1h"]
    swept = sq.main([*common, "--variant", "fast:learning_rate=0.2", "--results-dir", str(tmp_path)])
    ref = bq.main([*common, "--results-dir", str(tmp_path)])
    champion = ref["datasets"]["long_tail"]["models"]["champion"]
    models = swept["datasets"]["long_tail"]["models"]
    assert champion["roc_auc"] is not None and 0.5 < champion["roc_auc"] <= 1.0
    for metric in ("roc_auc", "average_precision"):
        assert models["default"][metric] == champion[metric]
    assert models["fast"]["average_precision"] != champion["average_precision"]
