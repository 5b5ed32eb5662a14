"""The peer: stream-scorer's scoring pipeline written the way a user would with Quix Streams.

Same features (:class:`~stream_scorer.features.engine.FeatureEngine`, one per partition), same
models (champion and challenger of :func:`~stream_scorer.worker.build_scorer`, learning from the
inline label), same validation (the pydantic ``Transaction`` contract); Quix Streams does the
consuming, JSON decoding, producing and committing::

    .venv/bin/python benchmarks/quix_peer.py --broker 127.0.0.1:9092 --input transactions \\
        --output scores-quix --group quix-peer --guarantee exactly-once

Differences from the stream-scorer worker, which make this peer do *less* work per event: no
state changelog (feature state is lost on a restart), no duplicate check, no dead-letter topic (a
bad record raises), no decoder rules on size or clock skew. ``benchmarks/run.py`` runs it as a
subprocess and watches the group's committed offsets.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from quixstreams import Application, message_context

from stream_scorer.config import Settings
from stream_scorer.events import Transaction
from stream_scorer.worker import build_scorer


def build_app(broker: str, input_topic: str, output_topic: str, group: str, guarantee: str) -> Application:
    app = Application(
        broker_address=broker,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee=guarantee,  # "exactly-once" or "at-least-once"
        loglevel="WARNING",
    )
    source = app.topic(input_topic, value_deserializer="json", key_deserializer="str")
    sink = app.topic(output_topic, value_serializer="json", key_serializer="str")
    scorer = build_scorer(Settings(bootstrap_servers=broker))

    def score(value: dict[str, Any]) -> dict[str, Any]:
        txn = Transaction.model_validate(value)
        record = scorer.score(txn, message_context().partition)
        record["event_time"] = txn.event_time.isoformat()  # Quix's orjson passes datetimes through
        return record

    app.dataframe(source).apply(score).to_topic(sink)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--guarantee", choices=["exactly-once", "at-least-once"], default="exactly-once")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    build_app(args.broker, args.input, args.output, args.group, args.guarantee).run()


if __name__ == "__main__":
    main()
