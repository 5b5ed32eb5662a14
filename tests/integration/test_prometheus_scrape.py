"""A real Prometheus (Debian's `prometheus` package) scrapes a worker and sees its metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from stream_scorer.kafka.launcher import free_port
from stream_scorer.simulate import Simulator, shifted_to
from tests.kafka_helpers import WORKER_METRICS, WorkerThread, produce_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]



def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_prometheus_scrapes_the_worker(make_settings, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not found (apt-get install prometheus)")
    settings = make_settings()
    w = WorkerThread(settings).start()
    events = shifted_to(Simulator(seed=3).take(500), datetime.now(UTC) - timedelta(hours=1))
    produce_events(settings, events)
    w.wait_scored(500)
    port = w.worker.server.port
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: worker\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    web = free_port()
    prom = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prom.log", "wb"),  # noqa: SIM115
    )
    try:
        base = f"http://127.0.0.1:{web}/api/v1"
        query = urllib.parse.quote("stream_scorer_scores_produced_total")
        deadline = time.monotonic() + 60
        value = 0.0
        while time.monotonic() < deadline:
            try:
                result = _get(f"{base}/query?query={query}")["data"]["result"]
                if result:
                    value = float(result[0]["value"][1])
                    if value >= 500:
                        break
            except OSError:
                pass
            time.sleep(1)
        assert value >= 500, (tmp_path / "prom.log").read_text()[-2000:]
        names = set(_get(f"{base}/label/__name__/values")["data"])
        assert set(WORKER_METRICS) <= names, set(WORKER_METRICS) - names
        targets = _get(f"{base}/targets")["data"]["activeTargets"]
        assert targets and targets[0]["health"] == "up"
    finally:
        prom.terminate()
        prom.wait(30)
        w.stop()
