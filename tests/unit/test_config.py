"""Settings: defaults work, and a bad value stops the process with a message naming it."""

from __future__ import annotations

import pytest

from stream_scorer.config import Settings, load_settings
from stream_scorer.exceptions import ConfigError


def test_defaults_load():
    s = load_settings()
    assert s.topics.transactions == "transactions" and s.topics.dlq == "transactions.dlq"
    assert s.review_threshold < s.decline_threshold


def test_env_vars_are_read(monkeypatch):
    monkeypatch.setenv("STREAM_SCORER_BATCH_SIZE", "42")
    monkeypatch.setenv("STREAM_SCORER_TOPICS__SCORES", "my-scores")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9093")
    s = load_settings()
    assert (s.batch_size, s.topics.scores, s.bootstrap_servers) == (42, "my-scores", "broker:9093")


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("STREAM_SCORER_BATCH_SIZE", "0", "STREAM_SCORER_BATCH_SIZE"),
        ("STREAM_SCORER_BATCH_SIZE", "many", "STREAM_SCORER_BATCH_SIZE"),
        ("STREAM_SCORER_TOPICS__PARTITIONS", "-1", "STREAM_SCORER_TOPICS__PARTITIONS"),
        ("STREAM_SCORER_REVIEW_THRESHOLD", "0.9", "review_threshold"),
        ("STREAM_SCORER_LOG_LEVEL", "LOUD", "STREAM_SCORER_LOG_LEVEL"),
        ("STREAM_SCORER_BATCHSIZE", "10", "STREAM_SCORER_BATCHSIZE"),
        ("STREAM_SCORER_KAFKA", '{"group.id": "mine"}', "group.id"),
    ],
)
def test_bad_settings_name_the_variable(monkeypatch, var, value, named):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert named in str(exc.value)


def test_cli_overrides_are_named_with_their_flag():
    with pytest.raises(ConfigError, match="--batch-size"):
        load_settings(batch_size=0)


def test_secrets_in_kafka_settings_are_not_echoed(monkeypatch):
    monkeypatch.setenv("STREAM_SCORER_KAFKA", '{"sasl.password": 5}')
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "STREAM_SCORER_KAFKA" in str(exc.value)


def test_launcher_and_pure_python_variables_are_not_unknown_settings(monkeypatch):
    monkeypatch.setenv("STREAM_SCORER_KAFKA_CACHE", "/tmp/x")
    monkeypatch.setenv("STREAM_SCORER_KAFKA_VERSION", "4.4.0")
    monkeypatch.setenv("STREAM_SCORER_PURE_PYTHON", "1")
    assert isinstance(load_settings(), Settings)
    monkeypatch.setenv("STREAM_SCORER_PURE_PYTHN", "1")  # a typo is still refused
    with pytest.raises(ConfigError, match="STREAM_SCORER_PURE_PYTHN"):
        load_settings()


def test_a_commit_interval_a_transaction_would_outlive_is_refused_naming_the_setting():
    """Fault 5: commit_interval_s accepted up to 60 s while transaction.timeout.ms is 30 s; above
    that a busy stream's transactions outlive their timeout, abort, and start over, forever."""
    with pytest.raises(ConfigError, match="STREAM_SCORER_COMMIT_INTERVAL_S") as err:
        load_settings(commit_interval_s=45)
    assert "transaction.timeout.ms" in str(err.value)
    with pytest.raises(ConfigError, match="STREAM_SCORER_COMMIT_INTERVAL_S"):
        load_settings(commit_interval_s=16)
    assert load_settings(commit_interval_s=15).commit_interval_s == 15
    assert load_settings(commit_interval_s=45, processing_guarantee="at_least_once").commit_interval_s == 45
