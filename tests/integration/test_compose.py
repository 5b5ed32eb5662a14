"""docker-compose.yml, the Dockerfile and deploy/ hold together, checked without a Docker engine.

- a real compose implementation (the ``docker compose`` plugin, else Debian's ``docker-compose``)
  validates and resolves the compose file; no engine is needed for ``config``;
- every command the compose file runs with the stream-scorer image parses with the CLI's own
  parser, and every STREAM_SCORER_* variable it sets is a setting ``load_settings`` accepts;
- ``promtool`` checks the Prometheus config and the PromQL of every Grafana panel;
- the scalable services (the workers and the merchant stage) can run as N replicas with no other
  change: no fixed name, port or instance id, and Prometheus finds every replica by DNS.

The tools come from Debian: ``apt-get install -y --no-install-recommends docker-compose
prometheus`` (``promtool`` is in ``prometheus``). Each test skips, saying so, when its tool is
missing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from stream_scorer.cli import build_parser
from stream_scorer.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "stream-scorer.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

INSTALL = "apt-get install -y --no-install-recommends docker-compose prometheus"
SCORER_IMAGE = "stream-scorer:local"
METRICS = [
    "stream_scorer_events_consumed_total",
    "stream_scorer_scores_produced_total",
    "stream_scorer_dead_letters_total",
    "stream_scorer_latency_seconds",
    "stream_scorer_consumer_lag",
    "stream_scorer_state_entities",
    "stream_scorer_pending_labels",
    "stream_scorer_model_info",
    "stream_scorer_eval_roc_auc",
    "stream_scorer_eval_average_precision",
    "stream_scorer_drift_alerts_total",
    "stream_scorer_merchant_table_staleness_seconds",
    "stream_scorer_merchant_table_merchants",
    "stream_scorer_merchant_table_lag",
    "stream_scorer_merchant_stage_merchants",
    "stream_scorer_merchant_stage_consumer_lag",
    "stream_scorer_merchant_stage_commits_total",
    "stream_scorer_merchant_stage_aborts_total",
]
SCALABLE = {"worker": "run", "merchants": "merchants"}
"""The services started with ``--scale NAME=N``, and the command each runs."""


def _runs(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@cache
def _compose() -> list[str] | None:
    """The compose command here: the v2 plugin (``docker compose``), else ``docker-compose``."""
    if shutil.which("docker") and _runs(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose") and _runs(["docker-compose", "version"]):
        return ["docker-compose"]
    return None


def _yaml_loader() -> list[str] | None:
    """A Python that can parse YAML: this one if PyYAML is installed, else the interpreter of
    Debian's docker-compose (a Python program that depends on PyYAML)."""
    try:
        import yaml  # noqa: F401

        return []
    except ImportError:
        pass
    path = shutil.which("docker-compose")
    if path:
        first = Path(path).read_bytes()[:200].split(b"\n", 1)[0].decode(errors="replace")
        if first.startswith("#!") and "python" in first:
            return first[2:].strip().split()
    return None


def _load_yaml(text: str) -> Any:
    loader = _yaml_loader()
    if loader is None:
        pytest.skip(f"no YAML parser (PyYAML, or Debian's docker-compose: {INSTALL})")
    if not loader:
        import yaml

        return yaml.safe_load(text)
    code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout, default=str)"
    out = subprocess.run(
        [*loader, "-c", code], input=text, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    """The compose file as the compose implementation resolves it (anchors, defaults, paths)."""
    compose = _compose()
    if compose is None:
        pytest.skip(
            f"no compose implementation (docker compose plugin or docker-compose): {INSTALL}"
        )
    base = [*compose, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    if compose == ["docker", "compose"]:
        out = subprocess.run(
            [*base, "config", "--format", "json"], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, f"compose config failed:\n{out.stderr}"
        return dict(json.loads(out.stdout))
    out = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, f"docker-compose config failed:\n{out.stderr}"
    return dict(_load_yaml(out.stdout))


def _scorer_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in config["services"].items()
        if svc.get("image") == SCORER_IMAGE or "build" in svc
    }


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command(svc: dict[str, Any]) -> list[str]:
    command = svc.get("command")
    assert command, "a stream-scorer service says which command it runs"
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def test_compose_file_is_valid_and_has_every_service(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert {
        "kafka",
        "topics-init",
        "simulator",
        "worker",
        "merchants",
        "evaluator",
        "prometheus",
        "grafana",
    } <= set(services)
    assert {"simulator", "worker", "merchants", "evaluator"} <= set(_scorer_services(compose_config))


def test_kafka_is_the_official_image_in_kraft_mode(compose_config: dict[str, Any]) -> None:
    kafka = compose_config["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.0"
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "healthcheck" in kafka


@pytest.mark.parametrize("name", sorted(SCALABLE))
def test_service_can_scale(compose_config: dict[str, Any], name: str) -> None:
    svc = compose_config["services"][name]
    assert "container_name" not in svc, f"a fixed name forbids --scale {name}=N"
    assert not svc.get("ports"), f"a published port forbids --scale {name}=N"
    # The instance id names the transactional id: replicas sharing one would fence each other.
    # Unset, it is the container's hostname (one per replica).
    assert "STREAM_SCORER_INSTANCE_ID" not in _env(svc), f"a fixed instance id forbids --scale {name}=N"


def _metrics_port(svc: dict[str, Any]) -> int:
    return int(_env(svc)["STREAM_SCORER_METRICS_PORT"])


@pytest.mark.parametrize("name", sorted(SCALABLE))
def test_scalable_service_serves_metrics_and_health_on_its_port(
    compose_config: dict[str, Any], name: str
) -> None:
    svc = compose_config["services"][name]
    port = _metrics_port(svc)
    assert str(port) in [str(p) for p in svc.get("expose") or []], f"{name} exposes its metrics port"
    probe = " ".join(str(part) for part in svc["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in probe, f"{name}: the healthcheck asks its own /healthz"


def test_merchant_stage_and_workers_share_a_group_id(compose_config: dict[str, Any]) -> None:
    """The stage's topics are named after the group id (``<group>.by-merchant``,
    ``<group>.merchant-features``): the stage must use the workers' one to meet them."""
    services = compose_config["services"]
    group = _env(services["worker"])["STREAM_SCORER_GROUP_ID"]
    assert _env(services["merchants"])["STREAM_SCORER_GROUP_ID"] == group
    assert _metrics_port(services["merchants"]) != _metrics_port(services["worker"])


def _published(svc: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) of a service's published ports, short or long syntax."""
    out = set()
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            out.add((int(p["published"]), int(p["target"])))
        else:
            host, _, target = str(p).rpartition(":")
            out.add((int(host.rsplit(":", 1)[-1]), int(target)))
    return out


def test_evaluator_publishes_its_operations_page(compose_config: dict[str, Any]) -> None:
    evaluator = compose_config["services"]["evaluator"]
    port = int(_env(evaluator)["STREAM_SCORER_EVALUATION__METRICS_PORT"])
    assert (port, port) in _published(evaluator), "the page at / needs the evaluator's port on the host"


def test_every_command_exists_in_the_cli(compose_config: dict[str, Any]) -> None:
    parser = build_parser()
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    subcommands = set(subparsers[0].choices)
    seen = {}
    for name, svc in _scorer_services(compose_config).items():
        argv = _command(svc)
        entrypoint = svc.get("entrypoint")
        assert entrypoint in (None, ["stream-scorer"], "stream-scorer"), (
            f"{name}: the image's entrypoint runs"
        )
        assert argv[0] in subcommands, (
            f"{name}: `stream-scorer {argv[0]}` is no subcommand of {sorted(subcommands)}"
        )
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(
                f"{name}: `stream-scorer {' '.join(argv)}` does not parse"
            ) from exc
        seen[name] = argv[0]
    assert seen == {"simulator": "simulate", "evaluator": "evaluate", **SCALABLE}
    assert "--to-kafka" in _command(compose_config["services"]["simulator"])


def test_every_setting_is_known(
    compose_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, svc in _scorer_services(compose_config).items():
        env = {k: v for k, v in _env(svc).items() if k.startswith("STREAM_SCORER_")}
        assert env["STREAM_SCORER_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            load_settings()  # raises ConfigError naming an unknown or invalid setting


def test_dockerfile_runs_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["stream-scorer"\]$', text, re.M)
    assert "USER " in text, "the image does not run as root"


def test_prometheus_scrapes_every_replica_and_the_evaluator(compose_config: dict[str, Any]) -> None:
    config = _load_yaml(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in SCALABLE:  # by DNS: one A record per replica, so --scale needs no change here
        dns = jobs[name]["dns_sd_configs"][0]
        port = _metrics_port(compose_config["services"][name])
        assert dns["names"] == [name] and dns["type"] == "A" and dns["port"] == port, name
    evaluator_port = _env(compose_config["services"]["evaluator"])[
        "STREAM_SCORER_EVALUATION__METRICS_PORT"
    ]
    assert jobs["evaluator"]["static_configs"][0]["targets"] == [f"evaluator:{evaluator_port}"]
    mounts = " ".join(str(v) for v in compose_config["services"]["prometheus"]["volumes"])
    assert "deploy/prometheus/prometheus.yml" in mounts


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(f"promtool not found ({INSTALL})")
    return path


def test_prometheus_config_parses() -> None:
    out = subprocess.run(
        [_promtool(), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if t.get("expr")]


def test_dashboard_shows_every_metric_from_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(_dashboard_exprs())
    missing = [m for m in METRICS if m not in exprs]
    assert not missing, f"no panel shows {missing}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for word in ("events", "latency", "lag", "dead letters", "auc", "drift", "merchant stage", "staleness"):
        assert word in titles
    uid = _load_yaml(DATASOURCES.read_text())["datasources"][0]["uid"]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid}


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    promtool = _promtool()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"panel:expr{i}", "expr": e}
                    for i, e in enumerate(_dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    out = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
