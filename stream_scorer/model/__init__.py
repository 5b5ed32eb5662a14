"""Online models: River pipelines that predict, then learn, one event at a time. No Kafka here."""

from stream_scorer.model.logistic import OnlineLogit, band_of

__all__ = ["OnlineLogit", "band_of"]
