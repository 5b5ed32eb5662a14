"""Prometheus metrics and health endpoints over HTTP, for any stream-scorer process.

One small server per process answers ``/metrics`` (the process's own registry, in Prometheus'
text format), ``/healthz`` (is the process alive and its loop turning?) and ``/readyz`` (is it
ready to do its job, e.g. subscribed and assigned?). Each process defines its metric objects in
its own :class:`~prometheus_client.CollectorRegistry` and passes callbacks for the two checks:

>>> from prometheus_client import CollectorRegistry, Counter
>>> registry = CollectorRegistry()
>>> scored = Counter("demo_scored", "Scores produced.", registry=registry)
>>> server = start_metrics_server(0, "127.0.0.1", registry, ready=lambda: False)
>>> import urllib.request, urllib.error
>>> b"demo_scored_total" in urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics").read()
True
>>> try:
...     urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz")
... except urllib.error.HTTPError as e:
...     print(e.code)
503
>>> server.close()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)

Probe = Callable[[], bool]
Route = Callable[[], tuple[bytes, str]]
"""A page of the server: returns its body and content type."""


class MetricsServer:
    """A running HTTP server; :attr:`port` is the bound port (useful when asked for port 0)."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self.httpd = httpd
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _handler(
    registry: CollectorRegistry, health: Probe, ready: Probe, routes: dict[str, Route]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                probe = health if path == "/healthz" else ready
                try:
                    ok = bool(probe())
                except Exception:
                    logger.exception("probe %s failed", path)
                    ok = False
                self._send(
                    200 if ok else 503, b"ok\n" if ok else b"not ok\n", "text/plain; charset=utf-8"
                )
            elif path in routes:
                try:
                    body, content_type = routes[path]()
                except Exception:
                    logger.exception("page %s failed", path)
                    self._send(500, b"error\n", "text/plain; charset=utf-8")
                    return
                self._send(200, body, content_type)
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # Scrapes every few seconds would flood the logs: stay quiet.
            return

    return Handler


def start_metrics_server(
    port: int,
    host: str = "0.0.0.0",
    registry: CollectorRegistry | None = None,
    health: Probe | None = None,
    ready: Probe | None = None,
    setting: str | None = None,
    routes: dict[str, Route] | None = None,
) -> MetricsServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` from a daemon thread.

    ``port=0`` binds a free port (read it from :attr:`MetricsServer.port`). ``health`` and
    ``ready`` default to always true; a probe that raises counts as false (HTTP 503). With
    ``setting`` (the variable that names the port), a port that cannot be bound is a ConfigError.
    ``routes`` adds pages by path (the evaluator's operations page at ``/``).
    """
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    handler = _handler(registry, health or (lambda: True), ready or (lambda: True), routes or {})
    try:
        httpd = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if setting is None:
            raise
        from stream_scorer.exceptions import ConfigError

        raise ConfigError(f"{setting}: cannot listen on {host}:{port}: {exc}") from None
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    logger.info("metrics on http://%s:%d/metrics", host, httpd.server_address[1])
    return MetricsServer(httpd, thread)
