"""The merchant stage's gauges: the merchants it holds, and the lag of the partitions it owns now
only, so that a sum over the stages of a group counts each partition once after a rebalance."""

from __future__ import annotations

import math

from stream_scorer.config import load_settings
from stream_scorer.merchants.sketches import SketchSet
from stream_scorer.merchants.stage import MerchantStage, StagePartition
from tests.fakes import FakeConsumer


def _lag(stage: MerchantStage) -> dict[str, float]:
    return {
        s.labels["partition"]: s.value
        for family in stage.metrics.registry.collect()
        if family.name == "stream_scorer_merchant_stage_consumer_lag"
        for s in family.samples
    }


def _refresh(stage: MerchantStage) -> None:
    stage._last_gauges = -math.inf  # the gauges refresh at most every 5 s
    stage._gauges()


def test_lag_covers_the_partitions_owned_now():
    stage = MerchantStage(load_settings(metrics_port=None))
    topic = stage.in_topic
    stage._consumer = FakeConsumer({(topic, 0): 40, (topic, 1): 90, (topic, 2): 100})  # ends at 100
    sketches = stage.settings.features
    stage.parts = {0: StagePartition(SketchSet(sketches)), 1: StagePartition(SketchSet(sketches))}
    stage.parts[0].merchants["m1"] = stage.book.new("m1")
    stage.parts[1].merchants["m2"] = stage.book.new("m2")
    _refresh(stage)
    assert _lag(stage) == {"0": 60.0, "1": 10.0}
    assert stage.metrics.registry.get_sample_value("stream_scorer_merchant_stage_merchants") == 2.0
    del stage.parts[0]  # revoked: another stage reports it now
    _refresh(stage)
    assert _lag(stage) == {"1": 10.0}
    assert stage.metrics.registry.get_sample_value("stream_scorer_merchant_stage_merchants") == 1.0
    stage.parts.clear()
    _refresh(stage)
    assert _lag(stage) == {}
