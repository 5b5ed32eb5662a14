"""A transaction simulator: cards and merchants with their own habits, and fraud among them.

Used by the demo, the tests and the benchmarks. Each card has a typical amount, a set of usual
merchants and a daily rhythm; fraud comes as

- *stolen cards*: a burst of large purchases at merchants new to the card, minutes apart;
- *compromised merchants*: for a while, a share of a merchant's transactions are fraud;
- *odd large amounts*: a single purchase far above the card's habit, at night.

A drift can be scheduled (``drift_at``): amounts shift up and a new fraud pattern (many small
card-testing purchases) begins. Everything is reproducible from ``seed``: the same seed gives the
same cards, merchants, amounts and fraud, whatever the labels or the sending rate.

Each transaction's outcome becomes a :class:`~stream_scorer.events.Label` some time later (a
chargeback takes days; demos scale the delay down). :class:`LabelQueue` holds labels until the
stream's event time passes their ``label_time``; :func:`produce_to_kafka` sends transactions and
labels keyed by card at a wall-clock rate (:class:`TokenBucket`), and :func:`write_jsonl` writes
them to files for backtests.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

    from stream_scorer.config import Settings

logger = logging.getLogger(__name__)

CHARGEBACK_DELAY_MEAN_S = 3 * 86_400.0
"""Mean delay between a transaction and its label: chargebacks arrive days later."""
_LABEL_DELAY_SIGMA = 0.6

_CURRENCIES = ("EUR", "USD", "GBP")
_COUNTRIES = ("FR", "DE", "US", "GB", "ES", "IT", "NL")
_MCCS = ("5411", "5812", "5999", "4111", "5732", "7011", "5541", "5912")


@dataclass(slots=True)
class _Card:
    card_id: str
    country: str
    currency: str
    log_mu: float
    merchants: list[int]
    stolen_left: int = 0
    stolen_until: float = 0.0


@dataclass(slots=True)
class SimConfig:
    """Knobs of the simulated world."""

    n_cards: int = 2_000
    n_merchants: int = 300
    events_per_second: float = 5.0
    """Event-time rate of the whole world (not the wall-clock rate a producer sends at)."""
    stolen_card_rate: float = 0.0015
    """Chance that an event starts a stolen-card burst on its card."""
    odd_amount_rate: float = 0.002
    compromised_merchant_share: float = 0.05
    drift_at: int | None = None
    """Event index at which amounts shift and card-testing fraud begins."""
    start: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))


class Simulator:
    """An endless, reproducible stream of transaction dicts with inline labels.

    ``scenario_counts`` counts the fraud by scenario (``stolen_card``, ``compromised_merchant``,
    ``odd_amount``, ``card_testing``); ``last_scenario`` names the last event's (``None`` when
    genuine). The scenario is not written into the event: it would leak the answer.

    >>> events = Simulator(seed=1).take(3)
    >>> sorted(events[0])[:3]
    ['amount', 'card_id', 'channel']
    """

    def __init__(self, config: SimConfig | None = None, seed: int = 0) -> None:
        self.config = c = config or SimConfig()
        self.rng = random.Random(seed)
        # Label delays draw from their own generator, so that asking for labels (or not) never
        # changes the transactions a seed gives.
        self.label_rng = random.Random(f"labels-{seed}")
        self.scenario_counts: Counter[str] = Counter()
        self.last_scenario: str | None = None
        rng = self.rng
        self.merchant_country = [rng.choice(_COUNTRIES) for _ in range(c.n_merchants)]
        self.merchant_mcc = [rng.choice(_MCCS) for _ in range(c.n_merchants)]
        # Merchant popularity follows a Zipf-like law; cards pick their usual merchants by it.
        weights = [1.0 / (i + 1) ** 0.8 for i in range(c.n_merchants)]
        self._merchant_cdf = list(_accumulate(weights))
        self.cards = []
        for i in range(c.n_cards):
            country = rng.choice(_COUNTRIES)
            self.cards.append(
                _Card(
                    card_id=f"card-{seed}-{i:07d}",
                    country=country,
                    currency="USD" if country == "US" else ("GBP" if country == "GB" else "EUR"),
                    log_mu=rng.gauss(3.3, 0.6),
                    merchants=[self._pick_merchant() for _ in range(rng.randint(3, 12))],
                )
            )
        # Cards are not all equally active: activity follows a log-normal law.
        self._card_cdf = list(_accumulate(rng.lognormvariate(0, 0.8) for _ in range(c.n_cards)))
        n_bad = max(1, int(c.n_merchants * c.compromised_merchant_share))
        self.compromised = set(rng.sample(range(c.n_merchants), n_bad))
        self.t = c.start.timestamp()
        self.index = 0

    def _pick_merchant(self) -> int:
        return bisect.bisect_left(self._merchant_cdf, self.rng.random() * self._merchant_cdf[-1])

    def _pick_card(self) -> _Card:
        i = bisect.bisect_left(self._card_cdf, self.rng.random() * self._card_cdf[-1])
        return self.cards[min(i, len(self.cards) - 1)]

    def _advance(self) -> float:
        """Move the clock by an exponential gap; the rate follows a daily rhythm (quiet nights)."""
        hour = (self.t % 86_400) / 3_600
        rhythm = 0.35
        if 6 <= hour <= 22:
            rhythm += 0.65 * max(0.0, math.sin(math.pi * (hour - 6) / 16))
        self.t += self.rng.expovariate(self.config.events_per_second * rhythm * 1.6)
        return self.t

    def next_event(self) -> dict[str, Any]:
        """The next transaction, as a producer would write it (``is_fraud`` is the inline label)."""
        rng, c = self.rng, self.config
        ts = self._advance()
        drifted = c.drift_at is not None and self.index >= c.drift_at
        self.index += 1
        card = self._pick_card()
        fraud = False
        scenario: str | None = None
        channel = rng.choice(("pos", "pos", "pos", "ecom", "contactless"))
        country = card.country
        if card.stolen_left > 0 and ts <= card.stolen_until:
            # stolen card: large, new merchant, often online and abroad
            card.stolen_left -= 1
            fraud, scenario = True, "stolen_card"
            merchant = rng.randrange(c.n_merchants)
            amount = math.exp(card.log_mu + rng.uniform(1.2, 2.5))
            channel = "ecom" if rng.random() < 0.7 else "pos"
            country = rng.choice(_COUNTRIES)
        elif drifted and rng.random() < 0.004:
            # card testing (the drifted pattern): tiny amounts online at an unusual merchant
            fraud, scenario = True, "card_testing"
            merchant = rng.randrange(c.n_merchants)
            amount = round(rng.uniform(0.5, 3.0), 2)
            channel = "ecom"
        else:
            merchant = rng.choice(card.merchants) if rng.random() < 0.85 else self._pick_merchant()
            amount = math.exp(rng.gauss(card.log_mu, 0.55))
            if merchant in self.compromised and rng.random() < 0.08:
                fraud, scenario = True, "compromised_merchant"
                amount *= rng.uniform(1.5, 4.0)
            elif rng.random() < c.odd_amount_rate * (6.0 if (ts % 86_400) < 5 * 3_600 else 0.5):
                # odd large amounts, mostly at night
                fraud, scenario = True, "odd_amount"
                amount = math.exp(card.log_mu + rng.uniform(2.0, 3.5))
            if rng.random() < c.stolen_card_rate:
                card.stolen_left = rng.randint(3, 8)
                card.stolen_until = ts + rng.uniform(600, 3_600)
        if drifted:
            amount *= 1.8
        self.last_scenario = scenario
        if scenario is not None:
            self.scenario_counts[scenario] += 1
        return {
            "transaction_id": f"tx-{self.index:010d}-{rng.getrandbits(32):08x}",
            "event_time": _rfc3339(ts),
            "card_id": card.card_id,
            "merchant_id": f"m-{merchant:05d}",
            "amount": round(max(amount, 0.01), 2),
            "currency": card.currency,
            "mcc": self.merchant_mcc[merchant],
            "channel": channel,
            "country": country,
            "is_fraud": fraud,
        }

    def events(self, n: int | None = None) -> Iterator[dict[str, Any]]:
        """``n`` events (endless when ``None``)."""
        i = 0
        while n is None or i < n:
            yield self.next_event()
            i += 1

    def take(self, n: int) -> list[dict[str, Any]]:
        return list(self.events(n))

    def label_for(
        self, event: dict[str, Any], mean_delay_s: float = CHARGEBACK_DELAY_MEAN_S
    ) -> dict[str, Any]:
        """The late label of ``event`` (an :class:`~stream_scorer.events.Label` as a dict): its
        outcome, known after a log-normal delay whose mean is ``mean_delay_s``."""
        return label_of(event, self.label_delay(mean_delay_s))

    def label_delay(self, mean_delay_s: float = CHARGEBACK_DELAY_MEAN_S) -> float:
        """A label delay in seconds: log-normal, right-skewed (most chargebacks come early, a few
        very late), with mean ``mean_delay_s``."""
        if mean_delay_s <= 0:
            return 0.0
        mu = math.log(mean_delay_s) - _LABEL_DELAY_SIGMA**2 / 2
        return self.label_rng.lognormvariate(mu, _LABEL_DELAY_SIGMA)

    @property
    def clock(self) -> float:
        """The stream's event time (epoch seconds) after the last event."""
        return self.t


def label_of(event: dict[str, Any], delay_s: float) -> dict[str, Any]:
    """The label of ``event`` known ``delay_s`` seconds after it happened."""
    ts = datetime.fromisoformat(event["event_time"]).timestamp() + delay_s
    return {
        "transaction_id": event["transaction_id"],
        "card_id": event["card_id"],
        "is_fraud": bool(event["is_fraud"]),
        "label_time": _rfc3339(ts),
    }


class LabelQueue:
    """Labels waiting for their time: ``push`` when the transaction happens, ``pop_due`` as the
    stream's event time moves on; ``drain`` at the end of a run.

    At most ``max_pending`` labels wait (with days of delay and a high rate the queue would grow
    without bound; a waiting label takes about 0.5 kB): past that, the earliest is released ahead
    of its time and counted in ``released_early``.

    >>> q = LabelQueue()
    >>> q.push(10.0, {"transaction_id": "t1"})
    []
    >>> q.pop_due(5.0), [lab["transaction_id"] for lab in q.pop_due(10.0)]
    ([], ['t1'])
    """

    def __init__(self, max_pending: int = 200_000) -> None:
        self.max_pending = max_pending
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._n = 0
        self.released_early = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, label: dict[str, Any]) -> list[dict[str, Any]]:
        """Queue ``label`` until event time ``due``; return labels released early to make room."""
        self._n += 1
        heapq.heappush(self._heap, (due, self._n, label))
        out = []
        while len(self._heap) > self.max_pending:
            out.append(heapq.heappop(self._heap)[2])
            self.released_early += 1
        return out

    def pop_due(self, now: float) -> list[dict[str, Any]]:
        """The labels due at or before event time ``now``, earliest first."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def drain(self) -> list[dict[str, Any]]:
        """Every waiting label, earliest first."""
        out = [item[2] for item in sorted(self._heap)]
        self._heap.clear()
        return out


class TokenBucket:
    """Paces a sender at ``rate`` events per second of wall time, in bursts of at most ``burst``.

    ``take(n)`` waits until at least one token is there, then grants up to ``n`` at once: the
    sender produces in batches without ever running ahead of the rate by more than ``burst``.

    >>> now = [0.0]
    >>> def sleep(s): now[0] += s
    >>> bucket = TokenBucket(100.0, burst=10, clock=lambda: now[0], sleep=sleep)
    >>> bucket.take(50), bucket.take(50), round(now[0], 3)
    (10, 1, 0.01)
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, burst if burst is not None else rate / 20)
        self.tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()

    def take(self, n: int = 1) -> int:
        """Wait for a token, then take up to ``n``; return how many were taken (at least 1)."""
        while True:
            now = self._clock()
            self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
            self._last = now
            if self.tokens >= 1.0 - 1e-9:  # (the epsilon: float sums of tiny refills)
                k = max(1, min(n, int(self.tokens + 1e-9)))
                self.tokens -= k
                return k
            self._sleep(max((1.0 - self.tokens) / self.rate, 1e-6))


def malformed(rng: random.Random, good: dict[str, Any]) -> bytes:
    """A broken version of ``good``: the kinds of garbage a real topic sees now and then."""
    import orjson

    kind = rng.randrange(6)
    bad = dict(good)
    if kind == 0:
        return b"{not json" + str(good["transaction_id"]).encode()
    if kind == 1:
        bad["amount"] = -abs(good["amount"])
    elif kind == 2:
        bad["currency"] = "XXY"
    elif kind == 3:
        bad["event_time"] = "yesterday at noon"
    elif kind == 4:
        del bad["card_id"]
    else:
        return b'{"transaction_id": "x", "amount": NaN}'
    return orjson.dumps(bad)


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _accumulate(values: Any) -> Iterator[float]:
    total = 0.0
    for v in values:
        total += v
        yield total


def shifted_to(events: list[dict[str, Any]], start: datetime) -> list[dict[str, Any]]:
    """``events`` moved in time so that the first one happens at ``start``."""
    if not events:
        return events
    first = datetime.fromisoformat(events[0]["event_time"])
    delta: timedelta = start - first
    out = []
    for e in events:
        e2 = dict(e)
        e2["event_time"] = _rfc3339((datetime.fromisoformat(e["event_time"]) + delta).timestamp())
        out.append(e2)
    return out


def write_jsonl(
    path: Any,
    count: int,
    seed: int = 0,
    drift_at: int | None = None,
    labels_path: Any = None,
    label_delay_mean_s: float = CHARGEBACK_DELAY_MEAN_S,
    inline_labels: bool = True,
    config: SimConfig | None = None,
) -> int:
    """Write ``count`` simulated transactions to ``path`` as JSON Lines; return the count.

    With ``labels_path``, each transaction's label goes there too, in the order a labels topic
    would hold them (by ``label_time``: every label due as the stream goes, the rest at the end).
    """
    import orjson

    config = config or SimConfig()
    if drift_at is not None:
        config = SimConfig(**{**asdict(config), "drift_at": drift_at})
    sim = Simulator(config, seed=seed)
    queue = LabelQueue(max_pending=max(count, 1))
    with contextlib.ExitStack() as files:
        f = files.enter_context(open(path, "wb"))
        lf = files.enter_context(open(labels_path, "wb")) if labels_path is not None else None
        for event in sim.events(count):
            if lf is not None:
                label = sim.label_for(event, label_delay_mean_s)
                queue.push(datetime.fromisoformat(label["label_time"]).timestamp(), label)
                for due in queue.pop_due(sim.clock):
                    lf.write(orjson.dumps(due) + b"\n")
            if not inline_labels:
                event = {k: v for k, v in event.items() if k != "is_fraud"}
            f.write(orjson.dumps(event) + b"\n")
        for label in queue.drain():
            assert lf is not None
            lf.write(orjson.dumps(label) + b"\n")
    return count


@dataclass
class ProduceStats:
    """What :func:`produce_to_kafka` sent and what Kafka acknowledged."""

    transactions: int = 0
    labels: int = 0
    delivered: int = 0
    failed: int = 0
    labels_pending: int = 0
    """Labels not yet due when the run stopped (sent anyway at the end when ``drain_labels``)."""
    labels_early: int = 0
    """Labels sent ahead of their time because too many were waiting."""
    seconds: float = 0.0
    fraud_by_scenario: dict[str, int] = field(default_factory=dict)

    @property
    def undelivered(self) -> int:
        return self.transactions + self.labels - self.delivered - self.failed

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "undelivered": self.undelivered}


def produce_to_kafka(
    settings: Settings,
    sim: Simulator,
    *,
    rate: float | None = 500.0,
    count: int | None = None,
    duration: float | None = None,
    labels: bool = True,
    inline_labels: bool = True,
    label_delay_mean_s: float = CHARGEBACK_DELAY_MEAN_S,
    drain_labels: bool = True,
    max_pending_labels: int = 200_000,
    batch: int = 500,
    stop: threading.Event | None = None,
    flush_timeout: float = 60.0,
) -> ProduceStats:
    """Send ``sim``'s transactions (keyed by card) to the transactions topic at ``rate`` events
    per second of wall time (``None``: as fast as Kafka takes them), and, with ``labels``, each
    one's :class:`~stream_scorer.events.Label` (keyed by card) to the labels topic once the
    stream's event time passes its ``label_time``.

    Stops after ``count`` transactions, ``duration`` seconds or when ``stop`` is set, whichever
    comes first. Then, in this order:

    1. with ``drain_labels``, send the labels still waiting (their ``label_time`` lies ahead), so
       that every transaction sent has its label;
    2. ``flush()``: wait up to ``flush_timeout`` for Kafka to acknowledge every record;
    3. return the counts; delivery callbacks counted the failures. The caller decides what a
       failure means (the CLI exits non-zero).

    The producer comes from :func:`stream_scorer.kafka.clients.make_producer`: murmur2 keys (as
    Java clients), so a card's label lands on the same partition number as its transactions
    when both topics have as many partitions.
    """
    import orjson

    from stream_scorer.kafka.admin import ensure_topics
    from stream_scorer.kafka.clients import make_producer

    topics = settings.topics
    if settings.create_topics:
        ensure_topics(settings, [topics.transactions, *([topics.labels] if labels else [])])
    stats = ProduceStats()

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            stats.delivered += 1
        else:
            stats.failed += 1
            if stats.failed <= 10 or stats.failed % 10_000 == 0:
                logger.error(
                    "delivery to %s failed (%d so far): %s", msg.topic(), stats.failed, err
                )

    producer = make_producer(settings)

    def send(topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:  # the local queue is full: serve delivery reports, then retry
                producer.poll(0.05)

    def send_labels(due: list[dict[str, Any]]) -> None:
        for label in due:
            send(topics.labels, label["card_id"].encode(), orjson.dumps(label))
        stats.labels += len(due)

    queue = LabelQueue(max_pending_labels)
    bucket = TokenBucket(rate) if rate else None
    stop = stop or threading.Event()
    t0 = time.monotonic()
    last_report = t0
    deadline = t0 + duration if duration is not None else math.inf
    while not stop.is_set() and (count is None or stats.transactions < count):
        now = time.monotonic()
        if now >= deadline:
            break
        want = batch if count is None else min(batch, count - stats.transactions)
        n = bucket.take(want) if bucket else want
        # One batch: produce n transactions and the labels that came due, then serve callbacks.
        for _ in range(n):
            event = sim.next_event()
            if labels:
                label = sim.label_for(event, label_delay_mean_s)
                early = queue.push(datetime.fromisoformat(label["label_time"]).timestamp(), label)
                if early:
                    send_labels(early)
            value = event if inline_labels else {k: v for k, v in event.items() if k != "is_fraud"}
            send(topics.transactions, event["card_id"].encode(), orjson.dumps(value))
            stats.transactions += 1
        if labels:
            send_labels(queue.pop_due(sim.clock))
        producer.poll(0)
        if now - last_report >= 10.0:
            last_report = now
            logger.info(
                "sent %d transactions, %d labels (%d waiting), %d delivered, %d failed",
                stats.transactions, stats.labels, len(queue), stats.delivered, stats.failed,
            )
    stats.labels_pending = len(queue)
    stats.labels_early = queue.released_early
    if labels and drain_labels:
        send_labels(queue.drain())
    remaining = producer.flush(flush_timeout)
    if remaining:
        logger.error("%d records were not acknowledged within %.0fs", remaining, flush_timeout)
    stats.seconds = time.monotonic() - t0
    stats.fraud_by_scenario = dict(sim.scenario_counts)
    return stats
