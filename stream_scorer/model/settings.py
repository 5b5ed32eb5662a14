"""Settings of the scoring layer: the champion, the challenger, the pending store, checkpoints.

They live next to the models they configure and are fields of :class:`stream_scorer.config.Settings`
(``STREAM_SCORER_MODEL__LEARNING_RATE``, ``STREAM_SCORER_CHALLENGER__KIND``, ...).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from stream_scorer.exceptions import ConfigError

MIN_KEY_CHARS = 16


class ModelSettings(BaseModel):
    """The champion model's hyper-parameters (a scaled logistic regression trained by SGD).

    Defaults chosen prequentially on data the project did not write, with
    ``benchmarks/sweep_quality.py`` (2026-12-06; one feature stream, many models; average precision
    on ULB with labels at once / the long-tail world and SynCCFD with labels 7 days late):

    - ``learning_rate`` 0.002: 0.0005 0.793/0.745/0.805, 0.001 0.798/0.747/0.809, 0.002
      0.802/0.744/0.811, 0.003 0.804/0.736/0.809, 0.02 (the former default) 0.799/0.609/0.763.
      With a hundred features, large SGD steps chase the last few labels; ULB's ROC AUC goes
      from 0.953 at 0.02 to 0.967 at 0.002.
    - ``imbalance`` none: a fraud weight capped at 3 gave 0.806/0.731/0.809, at 5, 20 and 100
      (learning rate 0.02) 0.777, 0.680, 0.123 on ULB. Weighting buys a little ROC AUC and costs
      precision at the top, which is what a review queue sees; it also inflates probabilities.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field("logreg-sgd", min_length=1, max_length=64)
    learning_rate: float = Field(0.002, gt=0, le=10)
    l2: float = Field(0.0, ge=0, le=10)
    intercept_lr: float = Field(0.01, ge=0, le=10)
    intercept_init: float = Field(
        -4.6,
        ge=-20,
        le=20,
        description="Starting logit. -4.6 is a 1% fraud prior: an untrained model approves, "
        "where 0 (a 50% prior) would send every event to review until labels arrive.",
    )
    imbalance: Literal["none", "weight"] = Field(
        "none",
        description="none: every label counts once; weight: a fraud label counts "
        "min(weight_cap, (1 - prior) / prior) times, prior estimated online.",
    )
    weight_cap: float = Field(10.0, ge=1, le=10_000, description="Largest weight of a fraud label.")


class TreeSettings(BaseModel):
    """A River tree model used as a challenger: a Hoeffding adaptive tree or an adaptive forest."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["hoeffding_adaptive", "arf"] = "hoeffding_adaptive"
    grace_period: int = Field(200, ge=10, le=100_000)
    delta: float = Field(1e-7, gt=0, lt=1)
    n_models: int = Field(10, ge=1, le=100, description="Trees of the forest (arf only).")
    seed: int = 42


class ChallengerSettings(BaseModel):
    """A second model that scores in shadow and learns the same labels; it never decides.

    The default is the champion's model learning four times slower (0.0005): the best ROC AUC on
    the long-tail world and the best average precision on the simulator's, a little behind on ULB
    and SynCCFD. When its live quality passes the champion's, the stream favours slow learning.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["logreg", "tree", "none"] = "logreg"
    logreg: ModelSettings = Field(
        default_factory=lambda: ModelSettings(name="logreg-sgd-slow", learning_rate=0.0005)
    )
    tree: TreeSettings = Field(default_factory=TreeSettings)


class PendingSettings(BaseModel):
    """Bounds of the pending store: scored transactions waiting for their label, per partition."""

    model_config = ConfigDict(extra="forbid")

    max_entries: int = Field(
        200_000, ge=1, le=50_000_000, description="Entries per partition; the oldest go first."
    )
    max_age_s: float = Field(
        14 * 86_400.0, gt=0, description="Event-time age after which an entry is dropped."
    )


class CheckpointSettings(BaseModel):
    """Where and how often model checkpoints are written, and the key that signs them."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, description="Checkpoint file; none means no checkpoints.")
    key: SecretStr | None = Field(
        None, description="HMAC-SHA256 key (at least 16 characters) that signs checkpoints."
    )
    interval_s: float = Field(300.0, gt=0, description="Wall-clock seconds between checkpoints.")

    def key_bytes(self) -> bytes:
        """The signing key, or a :class:`ConfigError` that says how to set it.

        Checked here rather than by a validator, so that no error message ever echoes the key.
        """
        if self.key is None:
            raise ConfigError(
                "checkpoints are signed: set STREAM_SCORER_CHECKPOINT__KEY (at least 16 characters)"
            )
        key = self.key.get_secret_value()
        if len(key) < MIN_KEY_CHARS:
            raise ConfigError(
                f"STREAM_SCORER_CHECKPOINT__KEY is too short: "
                f"{len(key)} characters, at least {MIN_KEY_CHARS} are needed"
            )
        return key.encode()


class ScorerSettings(BaseModel):
    """What :class:`stream_scorer.pipeline.Scorer` needs; built from the process settings."""

    model_config = ConfigDict(extra="forbid")

    review_threshold: float = Field(0.5, gt=0, lt=1)
    decline_threshold: float = Field(0.8, gt=0, le=1)
    model: ModelSettings = Field(default_factory=ModelSettings)
    challenger: ChallengerSettings = Field(default_factory=ChallengerSettings)
    pending: PendingSettings = Field(default_factory=PendingSettings)
    label_delay_s: float = Field(
        0.0, ge=0, description="Inline labels are learned this long (event time) after their event."
    )
    n_reasons: int = Field(3, ge=0, le=20)
    with_features: bool = Field(True, description="Put the feature values in each score record.")

    @model_validator(mode="after")
    def _check(self) -> ScorerSettings:
        if self.review_threshold >= self.decline_threshold:
            raise ValueError("review_threshold must be below decline_threshold")
        return self
