"""Settings of the evaluator: windows, thresholds, cooldown and where metrics go.

They live under ``Settings.evaluation``; every field has an environment variable
``STREAM_SCORER_EVALUATION__<NAME>``, e.g. ``STREAM_SCORER_EVALUATION__PSI_THRESHOLD=0.25``.
The defaults were tuned so that a stationary stream of 100,000 scores raises no alert
(``benchmarks/bench_drift_false_alarms.py``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Features whose distribution moves by construction on any live stream, so that a fixed reference
# window cannot judge them (glob patterns): calendar encodings cycle; counts and sums follow the
# traffic rate, which has a daily rhythm (and so does the share of empty windows, whose means and
# maxima are 0); 24 h and 7 d windows, per-card history and label-driven merchant risk keep
# growing for days after a start. What is left is amount-shaped: the amount, its log, and the
# card-relative ratio and z-score. Measured with benchmarks/bench_drift_false_alarms.py.
# The same holds for what cards and category values learn from labels (their risk windows fill for
# a month after a start), for novelty (a card's first events are never new), and for the quantile
# indicators, whose edges move while their sketches fill. Producer signals stay watched: a producer
# that changes or stops sending one is drift worth an alert.
DEFAULT_IGNORED_FEATURES = (
    "hour_*",
    "dow_*",
    "card_10m_*",
    "card_1h_*",
    "card_24h_*",
    "card_7d_*",
    "merchant_*",
    "card_log_count",
    "card_log_seconds_since_prev",
    "card_merchant_new",
    "card_*_new",
    "card_cross_border",
    "card_risk_*",
    "mcc_risk_*",
    "country_risk_*",
    "channel_risk_*",
    "*_ge_q*",
)


class EvaluationSettings(BaseModel):
    """Windows, thresholds and outputs of the side evaluator (``stream-scorer evaluate``)."""

    model_config = ConfigDict(extra="forbid")

    # -- outputs --------------------------------------------------------------------------------
    metrics_topic: str = Field("scorer-metrics", min_length=1, max_length=249)
    publish_interval_s: float = Field(
        10.0, gt=0, le=3600, description="Wall-clock seconds between metric records."
    )
    metrics_port: int | None = Field(
        9109,
        ge=0,
        le=65535,
        description=(
            "Port of the operations page (/), /metrics, /healthz and /readyz; 0 picks a free one, "
            "None disables."
        ),
    )
    metrics_host: str = Field("0.0.0.0", min_length=1)

    # -- join -----------------------------------------------------------------------------------
    join_max_pending: int = Field(
        200_000, ge=1, description="Most scores (and labels) waiting for their other half."
    )
    join_max_age_s: float = Field(
        30 * 86_400.0,
        gt=0,
        description="Event-time seconds a score or label waits before it expires.",
    )

    # -- metrics --------------------------------------------------------------------------------
    windows: list[int] = Field(default_factory=lambda: [1_000, 10_000], min_length=1)
    """Sizes of the rolling windows of the live metrics (labelled scores; scores for rates)."""
    quantiles: list[float] = Field(default_factory=lambda: [0.5, 0.9, 0.99])
    histogram_bins: int = Field(10, ge=2, le=1000)
    review_threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Threshold of precision/recall and alert rate (default: the worker's).",
    )
    decline_threshold: float | None = Field(None, gt=0, le=1)

    # -- distribution drift (prediction and data) -----------------------------------------------
    warmup: int = Field(
        10_000,
        ge=0,
        description="Scores, and labels, ignored by the detectors while the online model warms up.",
    )
    reference_size: int = Field(20_000, ge=100, description="Scores in the reference window.")
    drift_window: int = Field(
        5_000, ge=100, description="Scores in the current window compared to the reference."
    )
    check_every: int = Field(250, ge=1, description="Scores between two checks of a detector.")
    grow_reference: bool = Field(
        True,
        description="Values leaving the window join the reference while no drift is on.",
    )
    """The reference then becomes the long-run distribution: the traffic mix of a whole day, an
    online model that keeps learning. On 30 h of a stationary simulated stream this took the
    alarms from 3 to 0 at the same detection delays; the price is that a drift slow enough to be
    absorbed before it crosses the threshold goes unseen here (its effect on the log loss does
    not: the performance detector has its own reference)."""
    distribution_method: Literal["psi", "ks"] = Field(
        "psi",
        description="Statistic of prediction and data drift: PSI, or KS distance over the bins.",
    )
    distribution_bins: int = Field(
        10, ge=2, le=100, description="Quantile bins of PSI and the binned KS."
    )
    psi_threshold: float = Field(
        0.35, gt=0, description="PSI above which a feature's distribution drifted."
    )
    prediction_psi_threshold: float = Field(
        1.0,
        gt=0,
        description="PSI above which the score distribution drifted (gross changes only).",
    )
    """An online model's scores move as it learns and with the daily mix of traffic: over 30 h of a
    stationary simulated stream the score PSI against the first hours reached 0.66, as high as
    after a real drift. Performance and data drift are the reliable signals; this one guards
    against a gross change (a broken model, a scaler gone wrong)."""
    ks_threshold: float = Field(
        0.1, gt=0, lt=1, description="KS distance above which a distribution drifted (method ks)."
    )
    resolve_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A drift clears when its statistic falls below threshold x this (hysteresis).",
    )
    data_features: list[str] | None = Field(
        None,
        description="Features watched for data drift (default: every numeric feature not ignored).",
    )
    ignored_features: list[str] = Field(
        default_factory=lambda: list(DEFAULT_IGNORED_FEATURES),
        description="Glob patterns of features never watched for data drift.",
    )

    # -- performance drift ----------------------------------------------------------------------
    performance_detector: Literal["adwin", "page_hinkley"] = "adwin"
    adwin_delta: float = Field(1e-5, gt=0, lt=1)
    page_hinkley_threshold: float = Field(50.0, gt=0)
    performance_min_increase: float = Field(
        0.25,
        gt=0,
        description="Relative rise of the mean log loss over its reference that counts as drift.",
    )
    performance_min_labels: int = Field(
        5_000, ge=100, description="Labelled scores before the reference is set."
    )

    # -- label rate and disagreement ------------------------------------------------------------
    label_window: int = Field(5_000, ge=100)
    label_rate_z: float = Field(
        8.0, gt=0, description="z-score of the window's fraud rate against the reference."
    )
    disagreement_window: int = Field(2_000, ge=10)
    disagreement_bound: float = Field(
        0.1, gt=0, le=1, description="Mean |champion - challenger| that alerts."
    )

    # -- alerts ---------------------------------------------------------------------------------
    cooldown_s: float = Field(
        3_600.0,
        ge=0,
        description="Event-time seconds before an alert that resolved may fire again.",
    )
    critical_factor: float = Field(
        2.0, ge=1, description="Statistic over threshold x this is critical."
    )

    @model_validator(mode="after")
    def _check(self) -> EvaluationSettings:
        if any(w < 10 for w in self.windows):
            raise ValueError("windows must hold at least 10 scores each")
        if any(not 0 < q < 1 for q in self.quantiles):
            raise ValueError("quantiles must lie strictly between 0 and 1")
        if (
            self.review_threshold is not None
            and self.decline_threshold is not None
            and self.review_threshold >= self.decline_threshold
        ):
            raise ValueError("review_threshold must be below decline_threshold")
        return self
