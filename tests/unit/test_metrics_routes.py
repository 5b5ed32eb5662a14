"""The metrics server's extra routes: the evaluator's page and its data, next to /metrics."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from stream_scorer.config import Settings
from stream_scorer.evaluator import Evaluator
from stream_scorer.metrics import start_metrics_server


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


@pytest.fixture
def evaluator_server():
    ev = Evaluator(Settings())
    server = start_metrics_server(0, "127.0.0.1", ev.metrics.registry, routes=ev.routes())
    yield ev, f"http://127.0.0.1:{server.port}"
    server.close()


def test_the_page_and_its_data_are_served_with_metrics(evaluator_server):
    ev, base = evaluator_server
    status, ctype, body = _get(f"{base}/")
    assert status == 200 and ctype.startswith("text/html")
    assert b'id="chart-throughput"' in body and b"api/dashboard" in body and b"<script" in body
    # Nothing from the network: the only absolute URL is the SVG namespace, which is a name.
    assert set(re.findall(rb"https?://[^\"' ]+", body)) == {b"http://www.w3.org/2000/svg"}
    ev.dashboard.alert({"status": "firing", "detector": "psi", "subject": "amount", "statistic": 0.5})
    status, ctype, body = _get(f"{base}/api/dashboard")
    data = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert data["alerts"][0]["subject"] == "amount" and data["alert_counts"] == {"firing": 1, "resolved": 0}
    assert _get(f"{base}/metrics")[0] == 200
    assert _get(f"{base}/nothing")[0] == 404


def test_a_failing_route_answers_500_and_the_server_lives_on():
    def broken() -> tuple[bytes, str]:
        raise RuntimeError("boom")

    server = start_metrics_server(0, "127.0.0.1", routes={"/x": broken})
    try:
        assert _get(f"http://127.0.0.1:{server.port}/x")[0] == 500
        assert _get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    finally:
        server.close()
