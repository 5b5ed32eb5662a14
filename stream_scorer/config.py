"""All settings in one validated object, read from the environment, a `.env` file and CLI flags.

Every setting has an environment variable ``STREAM_SCORER_<NAME>`` (nested ones use ``__``, as in
``STREAM_SCORER_TOPICS__SCORES``). A bad value stops the process at start with a message that names
the variable: :func:`load_settings` turns pydantic's error into a :class:`ConfigError`.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_scorer.evaluation.settings import EvaluationSettings
from stream_scorer.exceptions import ConfigError
from stream_scorer.features.settings import FeatureSettings
from stream_scorer.model.settings import (  # re-exported: config.ModelSettings still works
    ChallengerSettings,
    CheckpointSettings,
    ModelSettings,
    PendingSettings,
)
from stream_scorer.native import PURE_PYTHON_ENV

ENV_PREFIX = "STREAM_SCORER_"

TXN_TIMEOUT_S = 30.0
"""``transaction.timeout.ms`` in seconds: the coordinator aborts a transaction left open longer than
this. It is also how long one transactional call may take before it is retried."""

# librdkafka settings stream-scorer owns: overriding them would break its delivery guarantees.
OWNED_KAFKA_KEYS = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.partition.eof",
        "on_delivery",
    }
)


class TopicSettings(BaseModel):
    """Topic names and how missing topics are created."""

    model_config = ConfigDict(extra="forbid")

    transactions: str = Field("transactions", min_length=1, max_length=249)
    labels: str = Field("labels", min_length=1, max_length=249)
    scores: str = Field("scores", min_length=1, max_length=249)
    drift_alerts: str = Field("drift-alerts", min_length=1, max_length=249)
    dlq: str = Field("transactions.dlq", min_length=1, max_length=249)
    partitions: int = Field(6, ge=1, le=10_000, description="Partitions of topics created at start.")
    replication_factor: int = Field(1, ge=1, le=32)


class Settings(BaseSettings):
    """Settings of a stream-scorer process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        min_length=1,
        validation_alias=AliasChoices(
            "bootstrap_servers", "STREAM_SCORER_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS is read too).",
    )
    group_id: str = Field("stream-scorer", min_length=1, description="Consumer group of workers.")
    client_id: str = Field("stream-scorer", min_length=1)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    challenger: ChallengerSettings = Field(default_factory=ChallengerSettings)
    pending: PendingSettings = Field(default_factory=PendingSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    merchant_features: Literal["stage", "partition"] = Field(
        "stage",
        description="stage: merchant features come from the merchant stage (`stream-scorer merchants`), which "
        "sees every transaction and label of a merchant, whatever the partitions; partition: each worker keeps "
        "its own partitions' view of a merchant (a 1/N share of it with N partitions; no stage to run).",
    )
    learning: Literal["stage", "worker"] = Field(
        "stage",
        description="stage: workers also send each labelled feature vector to the stage's learner, which trains one "
        "model on every worker's labels and publishes it; each worker adopts the latest between commits (and learns "
        "its own labels until the next). worker: each worker's model learns only its own partitions' labels.",
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once",
        description="exactly_once: scores, dead letters, state and offsets commit in one Kafka "
        "transaction; at_least_once: for clusters without transactions.",
    )
    instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        min_length=1,
        max_length=200,
        description="This worker's name in the group (its transactional id is the group id, a dash, and this id); "
        "give each worker a stable one to fence its previous incarnation at once on restart.",
    )
    state_dir: Path = Field(
        Path(".stream-scorer/state"), description="Local snapshots of partition state."
    )
    snapshot_interval_s: float = Field(
        300.0, gt=0, description="Wall-clock seconds between local state snapshots."
    )
    dedupe_window: int = Field(
        100_000, ge=0, le=10_000_000,
        description="Recent transaction ids remembered per partition; a repeat goes to the DLQ (0: off).",
    )
    metrics_port: int | None = Field(
        9108, ge=0, le=65535,
        description="Port of the worker's /metrics, /healthz and /readyz (0: a free port; none: off).",
    )
    metrics_host: str = Field("0.0.0.0", min_length=1)
    create_topics: bool = Field(True, description="Create missing topics at start.")
    batch_size: int = Field(500, ge=1, le=100_000, description="Most records consumed per batch.")
    commit_interval_s: float = Field(
        0.1, gt=0, le=60,
        description="Least time between commits: outputs become visible at most this late after a quiet "
        "spell's first record, and a busy stream costs at most 1/this transactions per second "
        "(exactly once: at most half the 30 s transaction timeout).",
    )
    poll_timeout_s: float = Field(
        0.05, gt=0, le=60,
        description="Longest wait for a record when none is waiting (a batch never waits to fill).",
    )
    max_event_bytes: int = Field(
        64 * 1024, ge=256, le=16 * 1024 * 1024, description="Larger events go to the DLQ."
    )
    max_future_skew_s: float = Field(
        86_400.0, ge=0, description="Events dated further ahead of the wall clock go to the DLQ."
    )
    min_event_time: datetime = Field(
        datetime(2000, 1, 1, tzinfo=UTC), description="Events dated before this go to the DLQ."
    )
    review_threshold: float = Field(0.5, gt=0, lt=1, description="Score at which review starts.")
    decline_threshold: float = Field(0.8, gt=0, le=1, description="Score at which decline starts.")
    kafka: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka settings passed to every client (security settings included).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.review_threshold >= self.decline_threshold:
            raise ValueError("review_threshold must be below decline_threshold")
        if self.processing_guarantee == "exactly_once" and self.commit_interval_s > TXN_TIMEOUT_S / 2:
            # A transaction stays open from its unit's first batch until the commit after the
            # interval, plus that batch and the commit's own round trips.
            raise ValueError(
                f"STREAM_SCORER_COMMIT_INTERVAL_S ({self.commit_interval_s:g} s) must be at most half the "
                f"transaction timeout (transaction.timeout.ms, {TXN_TIMEOUT_S:g} s): a longer transaction "
                f"is aborted by its coordinator, and a busy stream would abort every one"
            )
        for key in self.kafka:
            if key in OWNED_KAFKA_KEYS:
                raise ValueError(f"kafka setting {key!r} is owned by stream-scorer; set it another way")
        return self

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka settings every client shares: bootstrap, client id and the passthrough."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        conf["client.id"] = self.client_id
        conf.update(self.kafka)
        return conf


def env_name(loc: tuple[str | int, ...]) -> str:
    """The environment variable that sets the field at ``loc``."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


NOT_SETTINGS_ENV = frozenset({"STREAM_SCORER_KAFKA_CACHE", "STREAM_SCORER_KAFKA_VERSION", PURE_PYTHON_ENV})
"""Variables with the prefix that are not settings: read by the broker launcher
(stream_scorer.kafka.launcher), and the switch to the hot path's Python loops (stream_scorer.native)."""


def _unknown_env() -> list[str]:
    known = {name.upper() for name in Settings.model_fields}
    return sorted(
        key
        for key in os.environ
        if key.upper().startswith(ENV_PREFIX)
        and key.upper() not in NOT_SETTINGS_ENV
        and key.upper()[len(ENV_PREFIX) :].split("__")[0] not in known
    )


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, `.env` and ``overrides`` (CLI flags win).

    Raises :class:`ConfigError` naming each bad setting, so that a process never starts half-set.
    """
    unknown = _unknown_env()
    if unknown:
        raise ConfigError("unknown setting(s): " + ", ".join(unknown))
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = env_name(loc) if loc else "settings"
            if loc and loc[0] in clean:
                where += f" (--{str(loc[0]).replace('_', '-')})"
            # Passthrough Kafka settings may hold credentials: never echo their values.
            got = "<hidden>" if loc and loc[0] == "kafka" else repr(err.get("input"))
            lines.append(f"{where}: {err['msg']} (got {got})")
        raise ConfigError("invalid setting(s):\n  " + "\n  ".join(lines)) from None
