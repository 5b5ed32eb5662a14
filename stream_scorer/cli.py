"""The ``stream-scorer`` command."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from stream_scorer import __version__
from stream_scorer.config import Settings, load_settings
from stream_scorer.exceptions import StreamScorerError

logger = logging.getLogger("stream_scorer.cli")


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (each also has a STREAM_SCORER_* variable)")
    g.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")
    g.add_argument("--group-id", help="consumer group of the workers")
    g.add_argument(
        "--kafka-config", "-X", type=_kv, action="append", default=[], metavar="KEY=VALUE",
        help="any librdkafka setting, e.g. -X security.protocol=SASL_SSL (repeatable)",
    )
    g.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _settings(args: argparse.Namespace, **more: Any) -> Settings:
    overrides: dict[str, Any] = {
        "bootstrap_servers": args.bootstrap_servers,
        "group_id": args.group_id,
        "log_level": args.log_level,
        **more,
    }
    base = load_settings(**overrides)
    if args.kafka_config:
        merged = {**base.kafka, **dict(args.kafka_config)}
        base = load_settings(**overrides, kafka=merged)
    return base


def _configure_logging(settings: Settings) -> None:
    from stream_scorer.logs import configure

    configure(settings.log_level, settings.log_format)


class _Loop(Protocol):
    def run(self) -> Any: ...

    def stop(self) -> None: ...


@contextmanager
def _stopping_on_signals(stop: Callable[[], None], doing: str) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT call ``stop`` (logging ``doing``) instead of killing the
    process; the previous handlers are back afterwards."""

    def _graceful(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %s: %s", signal.Signals(signum).name, doing)
        stop()

    previous = {sig: signal.signal(sig, _graceful) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_until_signal(loop: _Loop) -> int:
    """Run a consume loop; SIGTERM/SIGINT make it finish its batch, commit and return (exit 0)."""
    with _stopping_on_signals(loop.stop, "finishing the batch, then stopping"):
        loop.run()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from stream_scorer.worker import Worker

    settings = _settings(args, batch_size=args.batch_size)
    _configure_logging(settings)
    worker = Worker(settings)
    rc = _run_until_signal(worker)
    if worker.abandoned_clients:
        # A Kafka client stuck inside librdkafka blocks when destroyed, which the interpreter
        # does at exit: everything is committed and flushed by now, so leave without it.
        logger.warning("exiting without destroying %d stuck Kafka client(s)", worker.abandoned_clients)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(rc)
    return rc


def cmd_merchants(args: argparse.Namespace) -> int:
    from stream_scorer.merchants.stage import MerchantStage

    port = {"metrics_port": args.metrics_port} if args.metrics_port is not None else {}
    settings = _settings(args, batch_size=args.batch_size, **port)
    _configure_logging(settings)
    return _run_until_signal(MerchantStage(settings))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stream_scorer.evaluator import Evaluator

    port = {"metrics_port": args.metrics_port} if args.metrics_port is not None else None
    settings = _settings(args, evaluation=port)
    _configure_logging(settings)
    return _run_until_signal(Evaluator(settings))


def cmd_demo(args: argparse.Namespace) -> int:
    from stream_scorer.demo import DemoOptions, run_demo

    settings = _settings(args)
    _configure_logging(settings.model_copy(update={"log_level": "WARNING", "log_format": "text"}))
    # Ctrl-C and SIGTERM both stop the demo cleanly, even when started from a shell that handed it
    # SIGINT ignored (a background job of a script): the demo is an interactive command.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    options = DemoOptions(
        duration=args.duration, rate=args.rate, seed=args.seed, workers=args.workers,
        drift_after_s=args.drift_after, label_delay_s=args.label_delay, page_port=args.page_port,
    )
    return run_demo(settings, options)


def cmd_kafka(args: argparse.Namespace) -> int:
    from stream_scorer.kafka.launcher import KAFKA_VERSION, LocalKafka, fetch_jars

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.kafka_cmd == "fetch":
        print(fetch_jars(args.version or KAFKA_VERSION))
        return 0
    users = dict(args.sasl_user) or None
    kafka = LocalKafka(
        port=args.port, data_dir=args.data_dir, version=args.version or KAFKA_VERSION,
        sasl_users=users, sasl_mechanism=args.sasl_mechanism,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    kafka.start()
    print(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}", flush=True)
    if users:
        print(
            "clients: -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism="
            f"{args.sasl_mechanism} -X sasl.username=<user> -X sasl.password=<password>",
            flush=True,
        )
    try:
        while kafka.process is not None and kafka.process.poll() is None:
            time.sleep(0.5)
        print("the broker exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        kafka.close()


def cmd_schemas(args: argparse.Namespace) -> int:
    from stream_scorer import schemas

    directory = Path(args.dir)
    if args.write:
        for path in schemas.write_all(directory):
            print(path)
        return 0
    stale = schemas.stale(directory)
    if stale:
        print(f"out of date: {', '.join(stale)} (run `stream-scorer schemas --write`)", file=sys.stderr)
        return 1
    print("schemas are up to date")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from stream_scorer import simulate

    if args.to_kafka == bool(args.out):
        print("stream-scorer simulate: give one of --to-kafka and --out FILE", file=sys.stderr)
        return 2
    start = args.start
    if not args.to_kafka:
        count = args.count if args.count is not None else 100_000
        config = simulate.SimConfig(**({"start": start} if start else {}))
        n = simulate.write_jsonl(
            Path(args.out), count, seed=args.seed, drift_at=args.drift_at,
            labels_path=Path(args.labels_out) if args.labels_out else None,
            label_delay_mean_s=args.label_delay_mean, inline_labels=args.inline_labels,
            config=config,
        )
        also = f", labels to {args.labels_out}" if args.labels_out else ""
        print(f"wrote {n} transactions to {args.out}{also}")
        return 0

    import threading

    settings = _settings(args)
    _configure_logging(settings)
    rate = args.rate if args.rate > 0 else None
    # Event time follows the wall clock: the world's rate is the sending rate, starting now. Sent
    # as fast as possible (--rate 0), a counted run is a backfill whose event time ends about now
    # (never days ahead, where workers would dead-letter it as dated in the future).
    eps = rate or simulate.SimConfig().events_per_second
    if start is None:
        start = datetime.now(UTC)
        if rate is None and args.count:
            start -= timedelta(seconds=args.count / eps)
    config = simulate.SimConfig(events_per_second=eps, start=start, drift_at=args.drift_at)
    stop = threading.Event()
    with _stopping_on_signals(stop.set, "sending the waiting labels, flushing, then stopping"):
        stats = simulate.produce_to_kafka(
            settings, simulate.Simulator(config, seed=args.seed),
            rate=rate, count=args.count, duration=args.duration, labels=args.labels,
            inline_labels=args.inline_labels, label_delay_mean_s=args.label_delay_mean, stop=stop,
        )
    summary = stats.as_dict()
    print(
        f"sent {stats.transactions} transactions to {settings.topics.transactions}"
        + (f" and {stats.labels} labels to {settings.topics.labels}" if args.labels else "")
        + f" in {stats.seconds:.1f}s: {stats.delivered} delivered, {stats.failed} failed,"
        f" {summary['undelivered']} unacknowledged; fraud by scenario {stats.fraud_by_scenario}",
        flush=True,
    )
    return 0 if stats.failed == 0 and stats.undelivered == 0 else 1


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _duration(text: str) -> float:
    from stream_scorer.backtest import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print_result(result: Any, out: str, rejects: str | None, command: str) -> int:
    """Print a replay's summary; the exit code: 0, or 1 (and why, on stderr) when nothing was scored.

    A file whose lines are all refused is not a crash of the command but it is a failed run: the
    reason names the reject kinds and where the reasons are (or how to get them).
    """
    m = result.metrics
    quality = (
        f"ROC AUC {m['roc_auc']}, average precision {m['average_precision']}"
        if m["metrics_available"]
        else m["metrics_unavailable_reason"]
    )
    print(
        f"scored {result.scored} of {result.lines} events ({result.rejects} rejected) into {out} "
        f"in {result.seconds:.1f}s ({result.throughput:,.0f} events/s; "
        f"{m['events_per_cpu_s'] or 0:,.0f} events per CPU second); {quality}"
    )
    if result.scored > 0:
        return 0
    where = f"see {rejects}" if rejects else "rerun with --rejects FILE for each line's reason"
    reasons = f"; {where}" if result.rejects else ""
    print(f"stream-scorer {command}: {m['metrics_unavailable_reason']}{reasons}", file=sys.stderr)
    return 1


def _replay_errors(command: str, run: Callable[[], Any]) -> Any:
    """Run a replay; a file that cannot be read or written is an error message (exit 2), not a
    traceback."""
    try:
        return run()
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        raise StreamScorerError(f"{command}: {exc.strerror or exc}{where}") from exc


def cmd_backtest(args: argparse.Namespace) -> int:
    from stream_scorer.backtest import backtest

    settings = load_settings(log_level=args.log_level)
    _configure_logging(settings)
    result = _replay_errors("backtest", lambda: backtest(
        args.input, args.scores_out, settings, label_delay_s=args.label_delay,
        report_dir=args.report, rejects_path=args.rejects, checkpoint_out=args.checkpoint_out,
    ))
    rc = _print_result(result, args.scores_out, args.rejects, "backtest")
    if result.checkpoint_generation is not None:
        print(f"checkpoint generation {result.checkpoint_generation} written to {args.checkpoint_out}")
    elif args.checkpoint_out is not None:
        print(f"no checkpoint written to {args.checkpoint_out}: nothing was scored", file=sys.stderr)
    return rc


def cmd_score_file(args: argparse.Namespace) -> int:
    from stream_scorer.backtest import score_file

    settings = load_settings(log_level=args.log_level)
    _configure_logging(settings)
    result = _replay_errors("score-file", lambda: score_file(
        args.input, args.checkpoint, args.out, settings, rejects_path=args.rejects, report_dir=args.report,
        fresh_features=args.fresh_features, label_delay_s=args.label_delay, use_labels=not args.ignore_labels,
    ))
    return _print_result(result, args.out, args.rejects, "score-file")


def _position(text: str) -> int | datetime:
    """A topic position: an offset (digits) or an ISO 8601 time."""
    return int(text) if text.isdigit() else _timestamp(text)


def cmd_backfill(args: argparse.Namespace) -> int:
    from stream_scorer import backfill

    if (args.input is None) == (args.source_topic is None):
        print("stream-scorer backfill: give one of FILE and --source-topic TOPIC", file=sys.stderr)
        return 2
    if args.input is not None and (args.start is not None or args.end is not None):
        print("stream-scorer backfill: --from and --to go with --source-topic", file=sys.stderr)
        return 2
    settings = _settings(args)
    _configure_logging(settings)
    if args.rate is not None and not args.rate > 0:
        print("stream-scorer backfill: --rate must be a positive number of records a second", file=sys.stderr)
        return 2
    if args.input is not None:
        result = backfill.backfill_file(settings, args.input, rate=args.rate)
        source = args.input
    else:
        result = backfill.backfill_topic(settings, args.source_topic, args.start, args.end, rate=args.rate)
        source = f"topic {args.source_topic}"
    print(
        f"sent {result.sent} records ({result.bytes / 1e6:.1f} MB) from {source} to"
        f" {settings.topics.transactions} in {result.seconds:.1f}s",
        flush=True,
    )
    if args.wait:
        waited = backfill.wait_committed(settings, result.end_offsets, timeout=args.timeout)
        print(
            f"group {settings.group_id} committed a score or dead letter for every one of them"
            f" {waited:.1f}s later",
            flush=True,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-scorer", description="Score card transactions for fraud on Kafka.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a scoring worker (joins the consumer group)")
    _common(p)
    p.add_argument("--batch-size", type=int, help="most records per batch")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "merchants", help="run a merchant stage: every merchant's features, whatever the partitions, for the workers"
    )
    _common(p)
    p.add_argument("--batch-size", type=int, help="most records per batch")
    p.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz and /readyz (0: any free port)")
    p.set_defaults(func=cmd_merchants)

    p = sub.add_parser("evaluate", help="run the side evaluator: live metrics, drift detection, alerts")
    _common(p)
    p.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz and /readyz (0: any free port)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "demo",
        help="the whole system: local broker, simulator, two workers, a merchant stage, the evaluator; a live view"
        " and a page",
    )
    _common(p)
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    p.add_argument("--rate", type=float, default=500.0, help="simulated events per second")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workers", type=int, default=2, help="scoring workers in the group")
    p.add_argument(
        "--drift-after", type=float, default=150.0, metavar="S",
        help="seconds of events before the drift (amounts shift, card testing starts)",
    )
    p.add_argument("--label-delay", type=float, default=60.0, metavar="S", help="mean delay of a label")
    p.add_argument(
        "--page-port", type=int, default=9109, help="port of the operations page (another free one when taken)"
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("kafka", help="the local Apache Kafka broker (no Docker needed)")
    ksub = p.add_subparsers(dest="kafka_cmd", required=True)
    k = ksub.add_parser("fetch", help="fetch the broker's jars with Maven")
    k.add_argument("--version")
    k = ksub.add_parser("start", help="start a broker in the foreground; Ctrl-C stops it")
    k.add_argument("--port", type=int, default=9092)
    k.add_argument("--data-dir", type=Path, default=None, help="keep data here (default: a temp dir)")
    k.add_argument("--version")
    k.add_argument(
        "--sasl-user", type=_kv, action="append", default=[], metavar="NAME=PASSWORD",
        help="require SASL: clients authenticate as one of these users (repeatable)",
    )
    k.add_argument("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], default="PLAIN")
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("schemas", help="check (default) or write the JSON Schema files")
    p.add_argument("--write", action="store_true")
    p.add_argument("--dir", default=str(Path(__file__).resolve().parent.parent / "schemas"))
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser(
        "simulate",
        help="simulated transactions (and late labels) to Kafka or to JSON Lines",
        description="Simulated card transactions with fraud (stolen-card bursts, compromised"
        " merchants, odd large amounts; card testing after --drift-at), reproducible from --seed."
        " --to-kafka sends them keyed by card at --rate events/s and each one's label to the labels"
        " topic once its delay has passed in event time; --out writes JSON Lines for backtests.",
    )
    _common(p)
    dest = p.add_mutually_exclusive_group()
    dest.add_argument(
        "--to-kafka", action="store_true", help="produce to the transactions and labels topics"
    )
    dest.add_argument("--out", help="write JSON Lines to this file instead")
    p.add_argument("--labels-out", help="with --out: write the labels to this file too")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument(
        "--count", type=int, help="transactions to send (--out: 100000; --to-kafka: no limit)"
    )
    stop.add_argument("--duration", type=float, help="with --to-kafka: seconds to run")
    p.add_argument(
        "--rate", type=float, default=500.0,
        help="with --to-kafka: events per second of wall time (0: as fast as Kafka takes them; with"
        " --count, a backfill whose event time ends about now)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--drift-at", type=int, default=None,
        help="event index where amounts shift and card testing begins",
    )
    p.add_argument(
        "--label-delay-mean", type=float, default=3 * 86_400.0, metavar="S",
        help="mean delay of a label after its transaction, in event-time seconds (chargebacks:"
        " days, the default; use e.g. 30 for a demo)",
    )
    p.add_argument(
        "--labels", action=argparse.BooleanOptionalAction, default=True,
        help="produce Label records to the labels topic (default: yes)",
    )
    p.add_argument(
        "--inline-labels", action=argparse.BooleanOptionalAction, default=True,
        help="keep is_fraud inside each transaction (default: yes; --no-inline-labels leaves"
        " learning to the labels topic)",
    )
    p.add_argument(
        "--start", type=_timestamp,
        help="event time of the first transaction (default: now with --to-kafka, 2026-01-01 with"
        " --out)",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("backtest", help="replay a JSON Lines file through the scorer, learning as it goes")
    p.add_argument("input", help="transactions, one JSON object a line, in event order")
    p.add_argument("--scores-out", required=True, help="write one score record a line here")
    p.add_argument(
        "--label-delay", type=_duration, default=0.0, metavar="DURATION",
        help="learn inline labels this long after their event, in event time (0, 90s, 12h, 3d)",
    )
    p.add_argument("--report", metavar="DIR", help="write metrics.json, plots and index.html here")
    p.add_argument("--rejects", metavar="FILE", help="write refused lines with their reasons here")
    p.add_argument(
        "--checkpoint-out", metavar="FILE",
        help="save the models at the end (signed with STREAM_SCORER_CHECKPOINT__KEY)",
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser(
        "backfill",
        help="send past transactions (a JSON Lines file or a topic range) through the live workers",
        description="Send past transactions to the transactions topic, keyed by card, for the running"
        " workers to score as any other (decoding and dead letters, features, learning, exactly-once)."
        " A file's lines go out as they are; a topic range keeps its records' keys.",
    )
    _common(p)
    p.add_argument("input", nargs="?", help="transactions, one JSON object a line, in event order")
    p.add_argument("--source-topic", help="replay this topic's records instead of a file")
    p.add_argument(
        "--from", dest="start", type=_position, metavar="OFFSET|TIME",
        help="with --source-topic: first offset (every partition) or time (default: the beginning)",
    )
    p.add_argument(
        "--to", dest="end", type=_position, metavar="OFFSET|TIME",
        help="with --source-topic: offset or time to stop before (default: the end when it starts)",
    )
    p.add_argument(
        "--wait", action="store_true",
        help="then wait until the worker group has committed a score or dead letter for every record",
    )
    p.add_argument(
        "--rate", type=float, metavar="PER_S",
        help="send at most this many records a second (default: as fast as Kafka takes them); a slower "
        "backfill leaves the merchant stage and the shared model less event time behind",
    )
    p.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("score-file", help="score a JSON Lines file with a saved checkpoint, learning nothing")
    p.add_argument("input", help="transactions, one JSON object a line")
    p.add_argument("--checkpoint", required=True, help="a checkpoint from backtest or a worker")
    p.add_argument("--out", required=True, help="write one score record a line here")
    p.add_argument("--rejects", metavar="FILE", help="write refused lines with their reasons here")
    p.add_argument("--report", metavar="DIR", help="write metrics.json, plots and index.html here")
    p.add_argument(
        "--fresh-features", action="store_true",
        help="start features from empty state, not from the checkpoint's feature state",
    )
    p.add_argument(
        "--label-delay", type=_duration, default=0.0, metavar="DURATION",
        help="inline labels reach the feature engine this long after their event (models never learn)",
    )
    p.add_argument("--ignore-labels", action="store_true", help="do not tell the feature engine any label")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_score_file)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StreamScorerError as exc:
        print(f"stream-scorer: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
