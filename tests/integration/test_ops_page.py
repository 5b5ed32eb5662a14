"""The evaluator's operations page in a real browser (headless Chromium), against a live evaluator.

The evaluator reads drifted synthetic scores from the session's broker, so it has charts to draw
and alerts to list; a consumer in the workers' group gives it a member whose lag it measures.
Chromium loads ``/``, runs the page's JavaScript (which polls ``/api/dashboard``), and the test reads
the rendered DOM: the four charts with their series, an alert row with its status, the lag row. A
screenshot stays in the test's temporary directory.

Chromium comes from Debian (``make tools`` installs it; so does this test when it runs as root or
with passwordless sudo). Without it the test skips and says why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer

from stream_scorer.evaluation.synthetic import synthetic_scores
from stream_scorer.evaluator import Evaluator
from stream_scorer.kafka.admin import ensure_topics
from tests.integration.test_evaluator import EVALUATION, EvaluatorThread, _get
from tests.kafka_helpers import produce

pytestmark = [pytest.mark.integration]

N = 6_000
DRIFT = (2_000, 4_000)
BROWSERS = ("chromium", "chromium-browser")


def _find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _install_chromium() -> str:
    """Install Debian's chromium with apt (root or passwordless sudo); return what went wrong."""
    if os.geteuid() == 0:
        sudo: list[str] = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        sudo = ["sudo", "-n"]
    else:
        return "not root and no passwordless sudo"
    if not shutil.which("apt-get"):
        return "no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    if subprocess.run(install, capture_output=True, env=env, timeout=900).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            return f"apt-get install chromium failed: {done.stderr.strip()[-300:]}"
    return ""


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a headless-capable Chromium; installed from Debian when missing, else a skip."""
    path = _find_browser()
    if path is None:
        why = _install_chromium()
        path = _find_browser()
        if path is None:
            pytest.skip(f"Chromium is not installed and could not be installed ({why}); run `make tools` as root")
    return path


def _browse(chromium: str, url: str, *what: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``url``; the virtual time budget lets the page poll and render."""
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--hide-scrollbars", f"--user-data-dir={cwd / 'profile'}",
        "--window-size=1280,1400", "--virtual-time-budget=5000", *what, url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_operations_page_renders_charts_alerts_and_lag(make_settings, chromium, tmp_path):
    settings = make_settings(
        topics={"partitions": 1},
        evaluation={**EVALUATION, "metrics_topic": f"scorer-metrics-{uuid.uuid4().hex[:8]}"},
        batch_size=500,
    )
    ensure_topics(settings, [settings.evaluation.metrics_topic])
    # A member of the workers' group, behind by the records it has not committed.
    produce(settings, ((b"k", b"{}") for _ in range(25)), settings.topics.transactions)
    member = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": settings.group_id,
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    member.subscribe([settings.topics.transactions])
    ev = EvaluatorThread(Evaluator(settings)).start()
    try:
        scores = list(synthetic_scores(N, seed=11, amount_shift=DRIFT, new_fraud=DRIFT, new_fraud_rate=0.05))
        # In chunks a publish interval apart, as a live stream: the charts get points over time.
        for i in range(0, N, 1_000):
            chunk = scores[i : i + 1_000]
            produce(settings, ((s["card_id"].encode(), orjson.dumps(s)) for s in chunk), settings.topics.scores)
            ev.wait(scores=i + len(chunk), labels=0)
            time.sleep(1.2)
        dashboard = ev.evaluator.dashboard
        deadline = time.monotonic() + 60
        while not (dashboard.fired and len(dashboard.history) >= 3 and dashboard.lag):
            assert time.monotonic() < deadline, dashboard.get()["alert_counts"]
            member.poll(0.5)
        port = ev.evaluator.server.port
        url = f"http://127.0.0.1:{port}/"
        status, body = _get(url)
        assert status == 200 and b"<svg" in body
        assert _get(f"{url}api/dashboard")[0] == 200

        shot = tmp_path / "operations-page.png"
        done = _browse(chromium, url, f"--screenshot={shot}", cwd=tmp_path)
        assert shot.exists() and shot.stat().st_size > 10_000, done.stderr[-2000:]
        done = _browse(chromium, url, "--dump-dom", cwd=tmp_path)
        dom = done.stdout
        (tmp_path / "operations-page.html").write_text(dom)
    finally:
        member.close()
        ev.stop()

    assert 'data-rendered="yes"' in dom, done.stderr[-2000:]
    for chart in ("throughput", "quality", "scores", "bands"):
        assert re.search(rf'<svg class="chart" id="chart-{chart}"[^>]*>.*?<(path|rect) ', dom, re.S), chart
    assert dom.count('class="series"') >= 4  # throughput, AUC and AP per model, two band rates
    quality = re.search(r'id="chart-quality".*?</svg>', dom, re.S)
    assert quality and re.search(r'class="series" d="M[\d.]+,[\d.]+ L', quality.group(0)), "no quality line drawn"
    assert re.search(r'class="bar"', dom)
    rows = re.findall(r'<tr class="alert-row" data-status="(firing|resolved)">(.*?)</tr>', dom, re.S)
    assert any(status == "firing" and ">psi<" in row and ">amount<" in row for status, row in rows), rows
    assert re.search(r'<span class="status firing">firing</span>', dom)
    lag = re.findall(r'<tr class="lag-row">(.*?)</tr>', dom, re.S)
    assert len(lag) == 1 and re.search(r'<td class="num">25</td>', lag[0]), lag
