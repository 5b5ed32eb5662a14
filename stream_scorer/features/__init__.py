"""Online features: per-entity state updated by each event, read just before the event updates it.

Pure code, no Kafka: the worker, the backtest and the benchmarks drive it the same way.
"""

from stream_scorer.features.card import CardFeatures

__all__ = ["CardFeatures"]
