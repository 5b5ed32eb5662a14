"""The errors stream-scorer raises on purpose, one class per kind of failure."""


class StreamScorerError(Exception):
    """Base class of every error raised on purpose by stream-scorer."""


class ConfigError(StreamScorerError):
    """A setting is missing or invalid; the process must not start."""


class BrokerLaunchError(StreamScorerError):
    """The local Kafka broker could not be fetched, formatted or started."""


class DeliveryError(StreamScorerError):
    """Records of a batch were not acknowledged by Kafka; its offsets must not be committed."""


class InvariantError(StreamScorerError):
    """An internal invariant broke (for example an offset that goes backwards)."""


class CheckpointError(StreamScorerError):
    """A checkpoint or state snapshot is refused: altered, truncated, foreign key, or unreadable."""


class StateError(StreamScorerError):
    """Stored state (a snapshot or a changelog value) is corrupt, foreign or of another layout."""
