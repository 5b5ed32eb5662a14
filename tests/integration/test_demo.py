"""`stream-scorer demo --duration`: the whole system runs, ends with its summary, and leaves nothing.

The demo starts its own broker (no KAFKA_BOOTSTRAP_SERVERS), two workers, a merchant stage, the
evaluator and the simulator, for a run of under three minutes: labels 10 s late, the drift 75 s in
(the demo's evaluator warms up for rate x (label delay + 30 s) scores, then takes its reference).
The test reads the summary's figures: counts that add up, both workers scoring, the merchant stage
folding every transaction scored into merchants that both workers' tables hold, with a measured
staleness, quality figures, and a drift alert that fired and one that resolved within two minutes
of the drift. Then it checks that
no process of the demo's session is left, that the broker's process is gone and that the page's
port is closed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DURATION = 160
RATE = 400
DRIFT_AFTER = 75


def _session_processes(sid: int) -> list[str]:
    """The processes still in session ``sid``: their pid and command line."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # Fields after the command's closing parenthesis: state ppid pgrp session ...
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == sid:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out.append(f"{entry.name}: {cmd}")
        except (OSError, ValueError, IndexError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kafka.Kafka" in cmd


def test_demo_runs_the_system_and_stops_cleanly(tmp_path):
    exe = shutil.which("stream-scorer", path=str(Path(sys.executable).parent))
    assert exe is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_SCORER_", "KAFKA_BOOTSTRAP"))}
    cmd = [
        exe, "demo", "--duration", str(DURATION), "--rate", str(RATE), "--label-delay", "10",
        "--drift-after", str(DRIFT_AFTER), "--page-port", "0",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=DURATION + 300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    (tmp_path / "demo.out").write_text(out)
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]

    broker_pid = int(re.search(r"broker at \S+ \(process (\d+)\)", out).group(1))
    page = re.search(r"operations page: http://localhost:(\d+)/", out)
    assert page, out[:2000]

    summary = out[out.index("summary after") :]
    events = int(re.search(r"events: (\d+) transactions sent \((\d+) malformed", summary).group(1))
    bad = int(re.search(r"\((\d+) malformed on purpose\)", summary).group(1))
    labels = int(re.search(r"transactions sent .*?, (\d+) labels", summary).group(1))
    scores = int(re.search(r"scores: (\d+) \(worker-1 (\d+), worker-2 (\d+)\)", summary).group(1))
    per_worker = [int(x) for x in re.search(r"scores: \d+ \(worker-1 (\d+), worker-2 (\d+)\)", summary).groups()]
    dead = int(re.search(r"dead letters: (\d+)", summary).group(1))
    fired, resolved = map(int, re.search(r"alerts fired: (\d+), resolved: (\d+)", summary).groups())
    auc, ap = map(float, re.search(r"champion: ROC AUC ([\d.]+), AP ([\d.]+) over \d+ labelled", summary).groups())
    assert re.search(r"challenger: ROC AUC [\d.]+, AP [\d.]+", summary), summary

    assert events > DURATION * RATE * 0.7, summary
    assert labels > 0.8 * events, summary
    # Two workers shared the partitions; between them they scored or dead-lettered nearly all.
    assert all(n > 0 for n in per_worker) and sum(per_worker) == scores, summary
    assert 0 < dead <= bad and bad - dead <= 5, summary
    assert 0.97 * events <= scores + dead <= events, summary
    # The merchant stage folded what the workers scored (every transaction scored, and the labels
    # that met theirs) into merchants, which both workers read into their tables, some way behind.
    stage = re.search(
        r"merchant stage: (\d+) merchants held, (\d+) transactions \(of (\d+) scored\) and (\d+) labels folded,"
        r" (\d+) states published, \d+ tombstones, (\d+) commits, \d+ aborts",
        summary,
    )
    assert stage, summary
    held, folded, of_scored, folded_labels, published, commits = map(int, stage.groups())
    assert held > 0 and published >= held and commits > 0, summary
    assert of_scored == scores and folded >= 0.99 * scores, summary
    assert 0 < folded_labels <= labels, summary
    tables = re.search(
        r"merchant tables: worker-1 (\d+) merchants, worker-2 (\d+) merchants;"
        r" staleness p50 ([\d.]+)s, p95 ([\d.]+)s \(the last (\d+) of (\d+) updates\)",
        summary,
    )
    assert tables, summary
    table_1, table_2, n_recent, n_updates = (int(tables.group(i)) for i in (1, 2, 5, 6))
    p50, p95 = float(tables.group(3)), float(tables.group(4))
    assert 0.5 * held <= table_1 <= held and 0.5 * held <= table_2 <= held, summary
    assert 0 < p50 <= p95 < 60 and 0 < n_recent <= n_updates, summary
    # The drift: alerts fire after it, and one resolves within two minutes of its start.
    drift_at, began = re.search(r"drift: from event (\d+), began (\S+)", summary).groups()
    assert int(drift_at) == DRIFT_AFTER * RATE
    began_at = datetime.fromisoformat(began.replace("Z", "+00:00"))
    alerts = [
        (datetime.fromisoformat(t.replace("Z", "+00:00")), status, key)
        for t, status, key in re.findall(r"^\s+(\S+Z) (firing|resolved)\s+(\S+) statistic", summary, re.M)
    ]
    assert len(alerts) == fired + resolved, summary
    assert fired >= 1 and 1 <= resolved <= fired, summary
    assert any(status == "resolved" and (t - began_at).total_seconds() <= 120 for t, status, _ in alerts), summary
    assert 0.5 < auc <= 1.0 and 0.0 < ap <= 1.0, summary
    for topic in (
        "transactions", "scores", "transactions.dlq", "drift-alerts", "scorer-metrics", "labels",
        "stream-scorer.by-merchant", "stream-scorer.merchant-features",
    ):
        assert re.search(rf"^\s+.+\s{re.escape(topic)}$", summary, re.M), topic

    # Nothing left: no process of the demo's session, no broker, no listener on the page's port.
    deadline = time.monotonic() + 10
    while (_session_processes(proc.pid) or _alive(broker_pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_processes(proc.pid) == []
    assert not _alive(broker_pid), f"broker process {broker_pid} is still running"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(page.group(1)))) != 0, "the page's port still answers"
