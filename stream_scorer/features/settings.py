"""The knobs of the feature engine, validated once; the window widths themselves are fixed names."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY_S = 86_400.0


class FeatureSettings(BaseModel):
    """How the feature engine treats late events, merchant labels, memory and eviction.

    Changing ``grace_s``, ``card_merchant_slots`` or the merchant-risk window changes the state's
    layout: a snapshot or changelog written with other values is refused on restore.

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
    merchant_risk_window_s: float = Field(
        default=30 * DAY_S,
        gt=0.0,
        description="Width of the merchant fraud-rate window, over the time labels became known.",
    )
    merchant_risk_bucket_s: float = Field(
        default=DAY_S,
        gt=0.0,
        description="Bucket of the merchant fraud-rate window (a whole number of them).",
    )
    merchant_risk_prior_rate: float = Field(
        default=0.005,
        ge=0.0,
        le=1.0,
        description="Fraud rate a merchant is assumed to have before its labels say otherwise.",
    )
    merchant_risk_prior_weight: float = Field(
        default=20.0,
        gt=0.0,
        description="How many labels the prior rate is worth (Beta smoothing of the fraud rate).",
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
    def _whole_risk_buckets(self) -> FeatureSettings:
        ratio = self.merchant_risk_window_s / self.merchant_risk_bucket_s
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(
                "merchant_risk_window_s must be a whole number of merchant_risk_bucket_s"
            )
        return self
