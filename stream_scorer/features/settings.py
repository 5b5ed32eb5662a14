"""The knobs of the feature engine, validated once; the window widths themselves are fixed names."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY_S = 86_400.0
MAX_RISK_DAYS = 60
"""The longest risk window: a card's label ring costs 2 bytes a day, and a card stays within
1 KiB with the other defaults (1022 bytes at 60 days)."""


class FeatureSettings(BaseModel):
    """How the feature engine treats late events, merchant labels, memory and eviction.

    Changing ``grace_s``, ``card_merchant_slots``, the risk windows, the card memory or the bins
    changes the state's layout: a snapshot or changelog written with other values is refused on restore.

    Why no smoothing of the risk rates (``risk_prior_weight=0``), measured prequentially with
    ``benchmarks/sweep_quality.py`` (labels 7 days late, model learning rate 0.002, 2026-12-06):
    average precision 0.744 / 0.654 / 0.657 / 0.644 at prior weights 0 / 0.2 / 1 / 5 on the
    long-tail world, 0.811 / - / 0.818 / 0.806 on SynCCFD (a third-party simulator). Any prior
    makes "no labels" read as a little riskier than "only genuine labels", a difference the scaler
    magnifies into noise; the label count beside each rate already says how much it is worth.
    Risk windows (7, 30) days: (1, 7, 30) and (1, 3, 7, 30) measured the same (0.744 / 0.742
    against 0.743 on the long tail, 0.811 / 0.814 against 0.809 on SynCCFD), and each window
    costs ten features and a sum per entity per event. Where labels come within a day, add 1.
    Category risk of MCC and channel: 0.746 on the long tail against 0.727 with none and 0.743
    with country too (0.809 on SynCCFD in all three); a card's cross-border flag already says
    what country risk would. Ten bin levels: nine rather than four gave +0.019 AP on the long tail (amounts over a
    line: AP 0.35 against 0.25), equal on ULB; a tenth at 0.999 another +0.019 (0.765 against
    0.746; amounts over a line 0.41, stolen cards 0.85 against 0.77), SynCCFD 0.811 against 0.809,
    ULB and the simulator unchanged.

    Why a 5-minute grace: one card's events come out of order by seconds to a minute (producer
    retries, several acquirers or regions, a rebalance replaying a partition); five minutes
    covers that with room to spare and costs 8 more ring slots per card than no grace (80 bytes:
    the 10-minute window keeps 15 one-minute buckets instead of 10, the others one more); the
    maximum, one hour, would make a card 1480 bytes instead of 820. Later events (offline
    terminals, batch uploads hours late) are rare and no grace short of a day would cover them:
    they are counted in ``late_events`` and folded in at ``latest - grace`` rather than dropped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    grace_s: float = Field(
        default=300.0,
        ge=0.0,
        le=3_600.0,
        description=(
            "How far (seconds) an event may trail its card's or merchant's latest event time and "
            "still update windows exactly; older events are late: scored and folded in as if they "
            "happened at (latest - grace). At most one hour, the bucket of a card's merchant "
            "memory."
        ),
    )
    risk_windows_days: tuple[int, ...] = Field(
        default=(7, 30),
        min_length=1,
        max_length=6,
        description=(
            "Windows (whole days, by the time labels became known) of the fraud rates of cards, "
            "merchants and category values, each 1 to 60. Each day of the longest costs a card 2 "
            "bytes: at 60 days a card with the other defaults is 1022 bytes, within 1 KiB."
        ),
    )
    risk_prior_rate: float = Field(
        default=0.005,
        ge=0.0,
        le=1.0,
        description="Fraud rate an entity is assumed to have before its labels say otherwise.",
    )
    risk_prior_weight: float = Field(
        default=0.0,
        ge=0.0,
        le=1_000.0,
        description=(
            "How many labels the prior rate is worth (Beta smoothing of the fraud rates); 0: none, "
            "an entity without labels reads rate 0 beside 0 labels."
        ),
    )
    category_risk: tuple[Literal["mcc", "country", "channel"], ...] = Field(
        default=("mcc", "channel"),
        description="Transaction attributes whose values get fraud rates of their own.",
    )
    card_memory_slots: int = Field(
        default=4,
        ge=1,
        le=32,
        description=(
            "Distinct devices, countries, channels and MCCs a card remembers (for novelty); "
            "each slot costs 16 bytes per card."
        ),
    )
    signals: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = Field(
        default=(),
        max_length=256,
        description=(
            "Producer signals (names in the event's `signals` object) that reach the model as "
            "they are, as features `signal_<name>`."
        ),
    )
    signal_missing: Literal["impute", "reject"] = Field(
        default="impute",
        description=(
            "A named signal that is absent or null: impute (0, with the indicator "
            "`signal_<name>_missing` at 1) or reject (the event is dead-lettered)."
        ),
    )
    bins: tuple[str, ...] = Field(
        default=("log_amount", "card_amount_ratio", "card_24h_log_count"),
        max_length=32,
        description=(
            "Features that also get quantile indicators (`<feature>_ge_q<level>`: 1 at or "
            "above the level's current edge, from a streaming sketch)."
        ),
    )
    bin_levels: tuple[float, ...] = Field(
        default=(0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999),
        min_length=1,
        max_length=32,
        description="Quantile levels of the indicators, each in (0, 1).",
    )
    bin_refresh_every: int = Field(
        default=1_000, ge=1, description="Values between two recomputations of a sketch's edges."
    )
    bin_min_count: int = Field(
        default=500, ge=1, description="Values a sketch needs before its indicators can be 1."
    )
    card_merchant_slots: int = Field(
        default=12,
        ge=1,
        le=255,
        description=(
            "Merchants a card remembers (for novelty and distinct counts); beyond that the least "
            "recently seen one is forgotten. Each slot costs 9 bytes per card."
        ),
    )
    evict_interval_s: float = Field(
        default=3_600.0,
        gt=0.0,
        description="Event time between two eviction sweeps over all entities.",
    )
    evict_keys_per_call: int = Field(
        default=50_000,
        ge=1,
        description="Entities an evict() call examines at most, so that one call stays cheap.",
    )

    @model_validator(mode="after")
    def _check(self) -> FeatureSettings:
        if len(set(self.signals)) != len(self.signals):
            raise ValueError("signals: a name is listed twice")
        if not all(0.0 < q < 1.0 for q in self.bin_levels):
            raise ValueError("bin_levels: each level must be in (0, 1)")
        if min(self.risk_windows_days) < 1 or max(self.risk_windows_days) > MAX_RISK_DAYS:
            raise ValueError(f"risk_windows_days: each window is 1 to {MAX_RISK_DAYS} days")
        from stream_scorer.features.catalog import base_feature_names

        known = set(base_feature_names(self))
        unknown = [b for b in self.bins if b not in known]
        if unknown:
            raise ValueError(f"bins: not features of this engine: {', '.join(unknown)}")
        return self
