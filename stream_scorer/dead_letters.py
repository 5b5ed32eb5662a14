"""Dead-letter records: what the worker writes to the DLQ topic for a record it cannot score.

The record keeps the input as it came (key and payload in base64, so any bytes survive), where it
came from (topic, partition, offset, timestamp), and why it was refused (``error_kind``: schema,
rule, size, duplicate...; a one-line ``reason``; the validation ``errors``). The reason and kind are
also headers, so a consumer of the DLQ can route without parsing the value.

>>> class Msg:
...     def value(self): return b"{"
...     def key(self): return b"card-1"
...     def timestamp(self): return (1, 1700000000000)
...     def topic(self): return "transactions"
...     def partition(self): return 2
...     def offset(self): return 41
>>> value, headers = dead_letter(Msg(), Rejection("schema", "not JSON"), worker="w1")
>>> headers
[('reason', b'not JSON'), ('error_kind', b'schema')]
>>> orjson.loads(value)["source_offset"], orjson.loads(value)["key_b64"]
(41, 'Y2FyZC0x')
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson

from stream_scorer.decode import Rejection
from stream_scorer.events import SCHEMA_VERSION

MAX_REASON_HEADER_BYTES = 1000


def dead_letter(msg: Any, rejection: Rejection, worker: str) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
    """The DLQ value and headers for ``msg`` (a consumed confluent-kafka ``Message``)."""
    value = msg.value() or b""
    key = msg.key()
    ts_type, ts = msg.timestamp()
    record = {
        "schema_version": SCHEMA_VERSION,
        "source_topic": msg.topic(),
        "source_partition": msg.partition(),
        "source_offset": msg.offset(),
        "source_timestamp_ms": ts if ts_type else None,
        "key_b64": base64.b64encode(key).decode() if key is not None else None,
        "payload_b64": base64.b64encode(value).decode(),
        "error_kind": rejection.kind,
        "reason": rejection.reason,
        "errors": list(rejection.errors),
        "failed_at": datetime.now(UTC),
        "worker": worker,
    }
    headers: list[tuple[str, str | bytes | None]] = [
        ("reason", rejection.reason.encode()[:MAX_REASON_HEADER_BYTES]),
        ("error_kind", rejection.kind.encode()),
    ]
    return orjson.dumps(record), headers
