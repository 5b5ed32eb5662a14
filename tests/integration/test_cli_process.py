"""The `stream-scorer` command as users run it: a real process, real signals, a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream_scorer.simulate import Simulator, shifted_to
from tests.kafka_helpers import committed_total, produce, produce_events, read_all, worker_env

pytestmark = [pytest.mark.integration]

CLI = [sys.executable, "-m", "stream_scorer.cli"]


def _env(settings, **more: str) -> dict[str, str]:
    return worker_env(settings, **more)


def _committed(settings) -> int:
    return committed_total(settings)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_batch_commits_and_exits_zero(make_settings, tmp_path, sig):
    from datetime import UTC, datetime, timedelta

    settings = make_settings()
    events = shifted_to(Simulator(seed=5).take(3_000), datetime.now(UTC) - timedelta(hours=1))
    produce_events(settings, events)
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*CLI, "run"], env=_env(settings), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while _committed(settings) < len(events):
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "worker did not commit every event in 90s"
            time.sleep(0.5)
        proc.send_signal(sig)
        assert proc.wait(60) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (tmp_path / "worker.log").read_text()
    assert "worker stopped" in text
    assert _committed(settings) == len(events)
    scores = read_all(settings, settings.topics.scores, expected=len(events))
    assert len({orjson.loads(m.value())["transaction_id"] for m in scores}) == len(events)


@pytest.mark.slow
def test_card_numbers_never_reach_the_logs(make_settings, tmp_path):
    """At DEBUG, with events the worker scores and events it dead-letters (whose reasons quote
    their bad values), no card number appears anywhere in the worker's log."""
    from datetime import UTC, datetime, timedelta

    settings = make_settings()
    events = shifted_to(Simulator(seed=6).take(1_000), datetime.now(UTC) - timedelta(hours=1))
    cards = {e["card_id"] for e in events}
    bad = [
        {**events[0], "transaction_id": "bad-amount", "amount": -1.0},
        {**events[1], "transaction_id": "bad-currency", "currency": "XYZ"},
        {**events[2], "transaction_id": "bad-card", "card_id": 12345678},
    ]
    produce_events(settings, events)
    produce(settings, [(str(e["card_id"]).encode(), orjson.dumps(e)) for e in bad])
    produce(settings, [(events[3]["card_id"].encode(), orjson.dumps(events[3]))])  # a duplicate
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CLI, "run"], env=_env(settings, STREAM_SCORER_LOG_LEVEL="DEBUG", STREAM_SCORER_LOG_FORMAT="json"),
            stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 90
            while _committed(settings) < len(events) + len(bad) + 1:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "worker did not commit every record in 90s"
                time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert "worker stopped" in text and "'dead_letters': 4" in text
    assert all(orjson.loads(line) for line in text.splitlines()), "every log line is a JSON object"
    leaked = [c for c in cards | {"12345678"} if c in text]
    assert not leaked, f"card numbers in the log: {leaked[:5]}"


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"STREAM_SCORER_BATCH_SIZE": "0"}, [], "STREAM_SCORER_BATCH_SIZE"),
        ({"STREAM_SCORER_DECLINE_THRESHOLD": "2"}, [], "STREAM_SCORER_DECLINE_THRESHOLD"),
        ({}, ["-X", "no.such.property=1"], "no.such.property"),
        ({}, ["--batch-size", "-3"], "--batch-size"),
    ],
)
def test_a_bad_setting_stops_the_worker_at_start_naming_it(make_settings, env, args, named):
    settings = make_settings()
    proc = subprocess.run([*CLI, "run", *args], env=_env(settings, **env), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr


def test_unreachable_broker_is_a_clear_error(tmp_path):
    from stream_scorer.kafka.launcher import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_SCORER_", "KAFKA_"))}
    env["STREAM_SCORER_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
    env["STREAM_SCORER_GROUP_ID"] = f"g-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run([*CLI, "run"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no Kafka broker answered" in proc.stderr


def test_an_independent_kafka_client_reads_valid_scores(make_settings, tmp_path):
    """Apache Kafka's own Java console consumer reads the scores, and each one fits schemas/score.json."""
    import json
    from datetime import UTC, datetime, timedelta

    import jsonschema

    from stream_scorer.kafka.launcher import fetch_jars
    from tests.kafka_helpers import WorkerThread

    settings = make_settings()
    events = shifted_to(Simulator(seed=9).take(300), datetime.now(UTC) - timedelta(hours=1))
    produce_events(settings, events)
    w = WorkerThread(settings).start()
    w.wait_scored(len(events))
    w.stop()
    lib = fetch_jars()
    out = subprocess.run(
        [
            "java", "-Xmx256m", "-cp", str(lib / "*"), "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server", settings.bootstrap_servers, "--topic", settings.topics.scores,
            "--from-beginning", "--max-messages", str(len(events)), "--timeout-ms", "30000",
            "--consumer-property", "isolation.level=read_committed",
        ],
        capture_output=True, text=True, timeout=120,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(events), out.stderr[-2000:]
    schema = json.loads((Path(__file__).parents[2] / "schemas" / "score.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for line in lines:
        validator.validate(json.loads(line))
