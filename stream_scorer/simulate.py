"""A transaction simulator: cards and merchants with their own habits, and fraud among them.

Used by the demo, the tests and the benchmarks. Each card has a typical amount, a set of usual
merchants and a daily rhythm; fraud comes as

- *stolen cards*: a burst of large purchases at merchants new to the card, minutes apart;
- *compromised merchants*: for a while, a share of a merchant's transactions are fraud;
- *odd large amounts*: a single purchase far above the card's habit, at night.

A drift can be scheduled (``drift_at``): amounts shift up and a new fraud pattern (many small
card-testing purchases) begins. Everything is reproducible from ``seed``.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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

    >>> events = Simulator(seed=1).take(3)
    >>> sorted(events[0])[:3]
    ['amount', 'card_id', 'channel']
    """

    def __init__(self, config: SimConfig | None = None, seed: int = 0) -> None:
        self.config = c = config or SimConfig()
        self.rng = random.Random(seed)
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
        rhythm = 0.35 + 0.65 * max(0.0, math.sin(math.pi * (hour - 6) / 16)) if 6 <= hour <= 22 else 0.35
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
        channel = rng.choice(("pos", "pos", "pos", "ecom", "contactless"))
        country = card.country
        if card.stolen_left > 0 and ts <= card.stolen_until:
            # stolen card: large, new merchant, often online and abroad
            card.stolen_left -= 1
            fraud = True
            merchant = rng.randrange(c.n_merchants)
            amount = math.exp(card.log_mu + rng.uniform(1.2, 2.5))
            channel = "ecom" if rng.random() < 0.7 else "pos"
            country = rng.choice(_COUNTRIES)
        elif drifted and rng.random() < 0.004:
            # card testing (the drifted pattern): tiny amounts online at an unusual merchant
            fraud = True
            merchant = rng.randrange(c.n_merchants)
            amount = round(rng.uniform(0.5, 3.0), 2)
            channel = "ecom"
        else:
            merchant = rng.choice(card.merchants) if rng.random() < 0.85 else self._pick_merchant()
            amount = math.exp(rng.gauss(card.log_mu, 0.55))
            if merchant in self.compromised and rng.random() < 0.08:
                fraud = True
                amount *= rng.uniform(1.5, 4.0)
            elif rng.random() < c.odd_amount_rate * (6.0 if (ts % 86_400) < 5 * 3_600 else 0.5):
                # odd large amounts, mostly at night
                fraud = True
                amount = math.exp(card.log_mu + rng.uniform(2.0, 3.5))
            if rng.random() < c.stolen_card_rate:
                card.stolen_left = rng.randint(3, 8)
                card.stolen_until = ts + rng.uniform(600, 3_600)
        if drifted:
            amount *= 1.8
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

    def label_for(self, event: dict[str, Any], mean_delay_s: float = 3 * 86_400.0) -> dict[str, Any]:
        """The late label of ``event``: its outcome, known after a log-normal delay."""
        delay = self.rng.lognormvariate(math.log(mean_delay_s), 0.6)
        ts = datetime.fromisoformat(event["event_time"]).timestamp() + delay
        return {
            "transaction_id": event["transaction_id"],
            "card_id": event["card_id"],
            "is_fraud": event["is_fraud"],
            "label_time": _rfc3339(ts),
        }


def malformed(rng: random.Random, good: dict[str, Any]) -> bytes:
    """A broken version of ``good``: the kinds of garbage a real topic sees now and then."""
    import orjson

    kind = rng.randrange(6)
    bad = dict(good)
    if kind == 0:
        return b"{not json" + good["transaction_id"].encode()
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


def write_jsonl(path: Any, count: int, seed: int = 0, drift_at: int | None = None) -> int:
    """Write ``count`` simulated transactions to ``path`` as JSON Lines; return the count."""
    import orjson

    sim = Simulator(SimConfig(drift_at=drift_at), seed=seed)
    with open(path, "wb") as f:
        for event in sim.events(count):
            f.write(orjson.dumps(event) + b"\n")
    return count
