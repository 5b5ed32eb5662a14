"""stream-scorer: score card transactions for fraud in real time, on Kafka, with online learning."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stream-scorer")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
