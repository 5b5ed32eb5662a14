"""Online features: per-entity state updated by each event, read just before the event updates it.

Pure code, no Kafka: the worker, the backtest and the benchmarks drive it the same way.
:data:`FEATURES` names and describes every feature; :class:`FeatureEngine` computes them.
"""

from stream_scorer.features.catalog import FEATURE_NAMES, FEATURES
from stream_scorer.features.engine import FeatureEngine
from stream_scorer.features.settings import FeatureSettings

CardFeatures = FeatureEngine
"""The former name of the feature engine, kept while the worker moves to :class:`FeatureEngine`."""

__all__ = ["FEATURES", "FEATURE_NAMES", "CardFeatures", "FeatureEngine", "FeatureSettings"]
