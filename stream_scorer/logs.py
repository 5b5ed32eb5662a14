"""Logging set up once at the entry point: JSON lines (or plain text) on stderr.

Card numbers never reach a log: code that must name a card logs :func:`card_ref` of it.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from datetime import UTC, datetime

import orjson


def card_ref(card_id: str) -> str:
    """A short, stable, one-way reference to a card for logs (never the raw id)."""
    return "card:" + hashlib.blake2b(card_id.encode(), digest_size=8, person=b"ss-card-log").hexdigest()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and exception text if any."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Send stream-scorer's logs to stderr as JSON lines (``fmt="json"``) or text."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
