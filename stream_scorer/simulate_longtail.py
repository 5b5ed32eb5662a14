"""A long-tail world: many cards and tens of thousands of terminals, each seen about once a day.

Beside :class:`~stream_scorer.simulate.Simulator` (a few hundred busy merchants), this world is
shaped after the transaction simulator of Le Borgne et al., *Reproducible Machine Learning for
Credit Card Fraud Detection*: 5,000 cards make a few purchases a day (each around its own mean
amount) at a pool of 50-100 usual terminals of their home country, drawn from 20,000; a card has
one or two usual devices, a usual channel and a few usual merchant categories; terminals have a
fixed MCC and country. Over 60 days that is about 900,000 transactions.

Genuine cards are not confined to home, so that "abroad" and "new device" are signals, not
verdicts: each day about 0.3% of the cards start a trip of 2-10 days in another country, during
which their card-present purchases are at a few terminals there; about 2% of genuine online
purchases are at a foreign e-commerce merchant; and about one card in 200 a month gets a new
phone, which replaces its main device from then on. Fraud comes as

1. ``compromised_terminal``: each day a few terminals are compromised for the next 28 days; every
   transaction there in that time is fraud (its amount looks normal);
2. ``stolen_card``: each day a few card numbers are stolen; for 14 days, a third of the card's
   purchases are fraud, about 5x its usual amount, at terminals new to the card;
3. ``amount_over_line``: every purchase above a fixed line (220) is fraud: a rule only a
   non-linear model can draw, since genuine amounts come close to it;
4. ``card_testing``: a burst of tiny purchases (0 to 2, some exactly 0) minutes apart at
   e-commerce merchants, from an unknown device, sometimes followed by one large purchase;
5. ``account_takeover``: for a day or two, online purchases from a device and a country the card
   has never used.

Together about 0.5-1% of transactions are fraud. ``last_scenario`` names the last event's kind
(``None`` when genuine) and ``scenario_counts`` counts them; the scenario is not written into the
event. Labels come at least a week late (:meth:`LongTailSimulator.label_delay`), from a separate
generator. Everything is reproducible from ``seed``.

>>> sim = LongTailSimulator(LongTailConfig(n_cards=50, n_terminals=400), seed=1)
>>> [e["card_id"][:8] for e in sim.take(2)]
['lt-card-', 'lt-card-']
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stream_scorer.simulate import _LABEL_DELAY_SIGMA, _accumulate, _rfc3339, label_of

DAY_S = 86_400.0
LABEL_DELAY_MIN_S = 7 * DAY_S
"""No label comes earlier than a week after its transaction (chargebacks take time)."""
LABEL_DELAY_MEAN_S = 10 * DAY_S
"""Default mean label delay: a week plus a log-normal extra of three days on average."""

# Home countries and their share of cards and terminals; each has its currency.
_COUNTRIES = ("FR", "DE", "ES", "IT", "NL", "BE", "PT", "AT", "IE", "GB")
_COUNTRY_WEIGHTS = (0.2, 0.22, 0.13, 0.13, 0.07, 0.06, 0.05, 0.05, 0.03, 0.06)
_CURRENCY = {c: ("GBP" if c == "GB" else "EUR") for c in _COUNTRIES}
# Physical shops (groceries, restaurants, fuel, pharmacies, ...) and e-commerce merchants.
_POS_MCCS = ("5411", "5812", "5541", "5912", "5311", "5651", "5732", "7011", "4111", "5814")
_POS_MCC_WEIGHTS = (0.25, 0.14, 0.12, 0.08, 0.08, 0.08, 0.05, 0.04, 0.08, 0.08)
_ECOM_MCCS = ("5999", "5815", "5818", "5942")
_ECOM_SHARE = 0.15
"""Share of terminals that are e-commerce merchants."""
# Hourly rhythm of purchases (quiet nights, busy midday and evening), normalized to a mean of 1.
_RHYTHM_RAW = (
    0.15, 0.08, 0.05, 0.04, 0.05, 0.1, 0.3, 0.6, 0.9, 1.1, 1.3, 1.5,
    1.7, 1.6, 1.4, 1.35, 1.45, 1.6, 1.7, 1.6, 1.3, 0.9, 0.55, 0.3,
)  # fmt: skip
_RHYTHM = tuple(24 * r / sum(_RHYTHM_RAW) for r in _RHYTHM_RAW)

# What a scheduled (non-regular) event is: card testing or account takeover.
_TESTING, _TAKEOVER = 0, 1


@dataclass(slots=True)
class LongTailConfig:
    """Knobs of the long-tail world. The defaults give about 900,000 events over 60 days."""

    n_cards: int = 5_000
    n_terminals: int = 20_000
    purchases_per_card_day: float = 3.0
    """Mean purchases a day per card (each card's own rate lies between 0.4x and 1.6x this)."""
    days: float = 60.0
    """Event-time span of the world: ``events()`` without a count stops there."""
    pool_min: int = 50
    pool_max: int = 100
    """Each card's pool of usual terminals has between ``pool_min`` and ``pool_max`` of them."""
    explore_share: float = 0.03
    """Share of genuine purchases at a terminal of the home country outside the card's pool."""
    amount_line: float = 220.0
    """Every purchase above this amount is fraud (``amount_over_line``)."""
    amount_sigma: float = 0.35
    """Spread (log-normal sigma) of a card's amounts around its mean."""
    compromised_terminals_per_day: float = 2.0
    compromise_days: float = 28.0
    stolen_cards_per_day: float = 3.0
    stolen_days: float = 14.0
    stolen_fraud_share: float = 1 / 3
    stolen_amount_factor: float = 5.0
    card_testing_per_day: float = 1.5
    takeovers_per_day: float = 2.0
    trip_share_per_day: float = 0.003
    """Share of the cards that start a trip abroad each day (none starts while on a trip)."""
    trip_days_min: float = 2.0
    trip_days_max: float = 10.0
    foreign_ecom_share: float = 0.02
    """Share of genuine online purchases at an e-commerce merchant of another country."""
    device_switches_per_card_day: float = 1 / 6_000
    """New phones a day per card (one card in 200 a month): the new device replaces the main one."""
    start: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    @property
    def events_per_second(self) -> float:
        """Mean event-time rate of genuine-looking purchases (fraud bursts come on top)."""
        return self.n_cards * self.purchases_per_card_day / DAY_S

    @property
    def expected_events(self) -> int:
        """About how many events ``days`` hold."""
        return int(self.n_cards * self.purchases_per_card_day * self.days)


@dataclass(slots=True)
class _Card:
    card_id: str
    country: str
    currency: str
    mean_amount: float
    pool: list[int]
    """Usual terminals (may repeat: a repeated terminal is a favourite)."""
    pool_channel: list[str]
    """The channel of a purchase at each pool terminal."""
    shop_channel: str
    """The channel of its purchases in shops (the usual channel, or "pos" for online cards)."""
    devices: tuple[str, ...]
    pool_set: frozenset[int]
    visited: set[int] = field(default_factory=set)
    """Terminals outside the pool that the card has used."""
    countries: set[str] = field(default_factory=set)
    """Every country the card has made a purchase in."""
    stolen_from: float = math.inf
    stolen_until: float = -math.inf
    takeover_until: float = -math.inf
    trip_from: float = math.inf
    trip_until: float = -math.inf
    trip_pool: list[int] = field(default_factory=list)
    """The terminals of the current (or last) trip's country that the card buys at there."""
    switch_at: float = math.inf
    """When the card's pending new device (``switch_device``) replaces its main one."""
    switch_device: str = ""
    n_devices: int = 0
    """How many devices the card has had (names its next one)."""


class LongTailSimulator:
    """An endless, reproducible stream of transaction dicts of the long-tail world, in event-time
    order, with inline labels (``is_fraud``); the same surface as
    :class:`~stream_scorer.simulate.Simulator`.

    Regular purchases come from one Poisson process over all cards (each card weighted by its own
    rate, the rate following a daily rhythm); card-testing bursts and takeovers are scheduled at
    the start of each day into a heap and merged with it by time. ``compromises`` lists every
    compromised terminal as ``(merchant_id, start, end)`` (epoch seconds), for tests.
    """

    def __init__(self, config: LongTailConfig | None = None, seed: int = 0) -> None:
        self.config = c = config or LongTailConfig()
        if c.n_cards < 1 or c.n_terminals < len(_COUNTRIES) * 4 or not 1 <= c.pool_min <= c.pool_max:
            raise ValueError("need at least one card, 40 terminals and 1 <= pool_min <= pool_max")
        self.rng = rng = random.Random(seed)
        # Label delays draw from their own generator, so that asking for labels (or not) never
        # changes the transactions a seed gives.
        self.label_rng = random.Random(f"longtail-labels-{seed}")
        self.scenario_counts: Counter[str] = Counter()
        self.last_scenario: str | None = None
        self.compromises: list[tuple[str, float, float]] = []
        self._build_terminals(rng)
        self._build_cards(rng)
        self._compromised: dict[int, tuple[float, float]] = {}
        self._heap: list[tuple[float, int, int, int, list[Any]]] = []
        self._seq = 0
        self._fraud_devices = 0
        self._t0 = c.start.timestamp()
        self._day_end = self._t0  # days are scheduled up to here
        self._rate = sum(self._card_rates) / DAY_S
        self._next_regular = self._t0 + rng.expovariate(self._rate * _RHYTHM[0])
        self.t = self._t0
        self.index = 0
        self._minute = -1
        self._minute_prefix = ""

    # --- the world -------------------------------------------------------------------------

    def _build_terminals(self, rng: random.Random) -> None:
        c = self.config
        countries = rng.choices(_COUNTRIES, _COUNTRY_WEIGHTS, k=c.n_terminals)
        # Every country gets a few terminals of each kind (takeovers buy online abroad).
        for i, country in enumerate(_COUNTRIES):
            countries[4 * i : 4 * i + 4] = [country] * 4
        self.merchant_ids = [f"lt-t-{j:05d}" for j in range(c.n_terminals)]
        self.merchant_country = countries
        self.merchant_ecom = [j % 4 == 0 if j < 4 * len(_COUNTRIES) else rng.random() < _ECOM_SHARE
                              for j in range(c.n_terminals)]
        self.merchant_mcc = [
            rng.choice(_ECOM_MCCS) if ecom else rng.choices(_POS_MCCS, _POS_MCC_WEIGHTS)[0]
            for ecom in self.merchant_ecom
        ]
        self._by_country_mcc: dict[tuple[str, str], list[int]] = {}
        self._by_country: dict[str, list[int]] = {}
        self._ecom_by_country: dict[str, list[int]] = {}
        for j in range(c.n_terminals):
            country = countries[j]
            self._by_country_mcc.setdefault((country, self.merchant_mcc[j]), []).append(j)
            self._by_country.setdefault(country, []).append(j)
            if self.merchant_ecom[j]:
                self._ecom_by_country.setdefault(country, []).append(j)
        self._ecom = [j for j in range(c.n_terminals) if self.merchant_ecom[j]]
        self._pos_by_country = {
            country: [j for j in group if not self.merchant_ecom[j]] or group
            for country, group in self._by_country.items()
        }
        # Where a card of each country goes abroad (trips, foreign shops): by size, never home.
        self._abroad = {
            home: (
                [x for x in _COUNTRIES if x != home],
                list(_accumulate(w for x, w in zip(_COUNTRIES, _COUNTRY_WEIGHTS, strict=True) if x != home)),
            )
            for home in _COUNTRIES
        }

    def _build_cards(self, rng: random.Random) -> None:
        c = self.config
        self.cards: list[_Card] = []
        for i in range(c.n_cards):
            country = rng.choices(_COUNTRIES, _COUNTRY_WEIGHTS)[0]
            channel = rng.choices(("pos", "contactless", "ecom"), (0.55, 0.2, 0.25))[0]
            shop_channel = "pos" if channel == "ecom" else channel
            ecom_share = 0.7 if channel == "ecom" else 0.05
            # dict.fromkeys, not a set: the order must not hang on the hash seed of str
            mccs = list(dict.fromkeys(rng.choices(_POS_MCCS, _POS_MCC_WEIGHTS)[0] for _ in range(rng.randint(2, 4))))
            ecom_mccs = rng.sample(_ECOM_MCCS, rng.randint(1, 2))
            # The terminals of the home country in each of the card's categories (or any there).
            home = self._by_country[country]
            shops = [self._by_country_mcc.get((country, m)) or home for m in mccs]
            online = [self._by_country_mcc.get((country, m)) or home for m in ecom_mccs]
            pool: list[int] = []
            rand = rng.random
            for _ in range(rng.randint(c.pool_min, c.pool_max)):
                groups = online if rand() < ecom_share else shops
                group = groups[int(rand() * len(groups))]
                pool.append(group[int(rand() * len(group))])
            n_devices = rng.randint(1, 2)
            self.cards.append(
                _Card(
                    card_id=f"lt-card-{i:05d}",
                    country=country,
                    currency=_CURRENCY[country],
                    mean_amount=rng.uniform(10.0, 100.0),
                    pool=pool,
                    pool_channel=["ecom" if self.merchant_ecom[j] else shop_channel for j in pool],
                    shop_channel=shop_channel,
                    devices=tuple(f"lt-dev-{i:05d}-{k}" for k in range(n_devices)),
                    pool_set=frozenset(pool),
                    countries={country},
                    n_devices=n_devices,
                )
            )
        self._card_rates = [c.purchases_per_card_day * rng.uniform(0.4, 1.6) for _ in range(c.n_cards)]
        self._card_cdf = list(_accumulate(self._card_rates))

    def _count(self, per_day: float) -> int:
        """How many of a daily thing happen today: ``per_day`` on average, never more than +1."""
        whole = int(per_day)
        return whole + (self.rng.random() < per_day - whole)

    def _schedule_day(self) -> None:
        """Draw the day starting at ``_day_end``: compromised terminals, stolen cards, card-testing
        bursts and takeovers. Runs before any event of that day is emitted."""
        rng, c = self.rng, self.config
        day = self._day_end
        self._day_end = day + DAY_S
        for _ in range(self._count(c.compromised_terminals_per_day)):
            j = rng.randrange(c.n_terminals)
            window = self._compromised.get(j)
            if window is not None and window[1] > day:
                continue  # already compromised: its window goes on
            start = day + rng.uniform(0.0, DAY_S)
            end = start + c.compromise_days * DAY_S
            self._compromised[j] = (start, end)
            self.compromises.append((self.merchant_ids[j], start, end))
        for _ in range(self._count(c.stolen_cards_per_day)):
            card = self.cards[rng.randrange(c.n_cards)]
            if card.stolen_until > day:
                continue
            card.stolen_from = day + rng.uniform(0.0, DAY_S)
            card.stolen_until = card.stolen_from + c.stolen_days * DAY_S
        for _ in range(self._count(c.card_testing_per_day)):
            card_i = rng.randrange(c.n_cards)
            t = day + rng.uniform(0.0, DAY_S)
            burst: list[Any] = [self._new_fraud_device(), None]
            for _ in range(rng.randint(8, 25)):
                self._push(t, _TESTING, card_i, burst)
                t += rng.uniform(20.0, 300.0)
            if rng.random() < 0.5:  # then one large purchase with the tested card
                self._push(t + rng.uniform(60.0, 1_800.0), _TESTING, card_i, [burst[0], "large"])
        for _ in range(self._count(c.takeovers_per_day)):
            card_i = rng.randrange(c.n_cards)
            card = self.cards[card_i]
            if card.takeover_until > day:
                continue
            start = day + rng.uniform(0.0, DAY_S)
            card.takeover_until = end = start + rng.uniform(1.0, 2.0) * DAY_S
            # The device is new; the country is chosen at the first purchase (new by then).
            episode: list[Any] = [self._new_fraud_device(), None]
            for t in sorted(rng.uniform(start, end) for _ in range(rng.randint(3, 8))):
                self._push(t, _TAKEOVER, card_i, episode)
        self._schedule_genuine(day)

    def _abroad_country(self, card: _Card) -> str:
        """A country other than the card's home, the bigger ones more often."""
        countries, cdf = self._abroad[card.country]
        return countries[bisect.bisect_right(cdf, self.rng.random() * cdf[-1])]

    def _schedule_genuine(self, day: float) -> None:
        """Today's trips abroad and new phones of genuine cards."""
        rng, c = self.rng, self.config
        for _ in range(self._count(c.n_cards * c.trip_share_per_day)):
            card = self.cards[rng.randrange(c.n_cards)]
            if card.trip_until > day:
                continue  # already away (or still to leave)
            group = self._pos_by_country[self._abroad_country(card)]
            card.trip_pool = [group[rng.randrange(len(group))] for _ in range(rng.randint(5, 20))]
            card.trip_from = day + rng.uniform(0.0, DAY_S)
            card.trip_until = card.trip_from + rng.uniform(c.trip_days_min, c.trip_days_max) * DAY_S
        for _ in range(self._count(c.n_cards * c.device_switches_per_card_day)):
            card_i = rng.randrange(c.n_cards)
            card = self.cards[card_i]
            if card.switch_at < math.inf:
                continue  # a new phone is already on its way
            card.switch_at = day + rng.uniform(0.0, DAY_S)
            card.switch_device = f"lt-dev-{card_i:05d}-{card.n_devices}"
            card.n_devices += 1

    def _new_fraud_device(self) -> str:
        self._fraud_devices += 1
        return f"lt-fdev-{self._fraud_devices:06d}"

    def _push(self, t: float, kind: int, card_i: int, info: list[Any]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, card_i, info))

    def _new_terminal(self, card: _Card) -> int:
        """A terminal the card has never used (anywhere), remembered as used."""
        randrange, n = self.rng.randrange, self.config.n_terminals
        while True:
            j = randrange(n)
            if j not in card.pool_set and j not in card.visited:
                card.visited.add(j)
                return j

    def _foreign(self, card: _Card, j: int) -> str:
        """Record a genuine purchase of ``card`` at foreign terminal ``j``; its country."""
        if j not in card.pool_set:
            card.visited.add(j)
        country = self.merchant_country[j]
        card.countries.add(country)
        return country

    def _time(self, ts: float) -> str:
        """``_rfc3339(ts)``, cheaply: the date and minute are formatted once per minute."""
        ms = int(ts * 1000)
        minute, rest = divmod(ms, 60_000)
        if minute != self._minute:
            self._minute = minute
            self._minute_prefix = _rfc3339(minute * 60.0)[:17]
        return f"{self._minute_prefix}{rest // 1000:02d}.{rest % 1000:03d}Z"

    # --- the stream ------------------------------------------------------------------------

    def next_event(self) -> dict[str, Any]:
        """The next transaction in event time, as a producer would write it (``is_fraud`` is the
        inline label)."""
        rng, c = self.rng, self.config
        heap = self._heap
        while True:
            ts = heap[0][0] if heap and heap[0][0] < self._next_regular else self._next_regular
            if ts < self._day_end:
                break
            self._schedule_day()  # may push events of the new day into the heap
        self.index += 1
        scenario: str | None = None
        if heap and heap[0][0] == ts and ts < self._next_regular:
            _, _, kind, card_i, info = heapq.heappop(heap)
            card = self.cards[card_i]
            device = info[0]
            if kind == _TESTING:
                scenario = "card_testing"
                j = self._ecom[rng.randrange(len(self._ecom))]
                if info[1] == "large":
                    amount = round(rng.uniform(c.amount_line + 30.0, 1_500.0), 2)
                else:
                    amount = 0.0 if rng.random() < 0.2 else round(rng.uniform(0.01, 2.0), 2)
            else:
                scenario = "account_takeover"
                if info[1] is None:
                    info[1] = rng.choice([x for x in _COUNTRIES if x not in card.countries] or _COUNTRIES)
                group = self._ecom_by_country[info[1]]
                j = group[rng.randrange(len(group))]
                amount = round(card.mean_amount * rng.uniform(1.0, 3.0), 2)
            if j not in card.pool_set:
                card.visited.add(j)
            channel = "ecom"
            country = self.merchant_country[j]
            card.countries.add(country)
        else:
            # A regular purchase; then the next one's time (an exponential gap at today's rhythm).
            t = self._next_regular
            self._next_regular = t + rng.expovariate(self._rate * _RHYTHM[int(t % DAY_S) // 3_600])
            card = self.cards[bisect.bisect_right(self._card_cdf, rng.random() * self._card_cdf[-1])]
            amount = card.mean_amount * rng.lognormvariate(0.0, c.amount_sigma)
            if ts >= card.switch_at:  # the new phone replaces the main device, for good
                card.devices = (card.switch_device, *card.devices[1:])
                card.switch_at = math.inf
            devices = card.devices
            device = devices[0] if len(devices) == 1 or rng.random() < 0.8 else devices[1]
            if card.stolen_from <= ts < card.stolen_until and rng.random() < c.stolen_fraud_share:
                scenario = "stolen_card"
                j = self._new_terminal(card)
                amount *= c.stolen_amount_factor
                channel = "ecom" if self.merchant_ecom[j] else "pos"
                country = self.merchant_country[j]
                card.countries.add(country)
            elif rng.random() < c.explore_share:
                group = self._by_country[card.country]
                j = group[rng.randrange(len(group))]
                if j not in card.pool_set:
                    card.visited.add(j)
                channel = "ecom" if self.merchant_ecom[j] else card.shop_channel
                country = card.country
            else:
                k = rng.randrange(len(card.pool))
                j = card.pool[k]
                channel = card.pool_channel[k]
                country = card.country
            if scenario is None:
                if channel == "ecom":
                    if rng.random() < c.foreign_ecom_share:  # an online shop abroad
                        group = self._ecom_by_country[self._abroad_country(card)]
                        j = group[rng.randrange(len(group))]
                        country = self._foreign(card, j)
                elif card.trip_from <= ts < card.trip_until:  # in a shop abroad, on a trip
                    trip_pool = card.trip_pool
                    j = trip_pool[rng.randrange(len(trip_pool))]
                    country = self._foreign(card, j)
            amount = round(amount, 2)
        window = self._compromised.get(j)
        if scenario is None:
            if window is not None and window[0] <= ts < window[1]:
                scenario = "compromised_terminal"
            elif amount > c.amount_line:
                scenario = "amount_over_line"
        self.t = ts
        self.last_scenario = scenario
        if scenario is not None:
            self.scenario_counts[scenario] += 1
        return {
            "transaction_id": f"lt-{self.index:010d}",
            "event_time": self._time(ts),
            "card_id": card.card_id,
            "merchant_id": self.merchant_ids[j],
            "amount": amount,
            "currency": card.currency,
            "mcc": self.merchant_mcc[j],
            "channel": channel,
            "country": country,
            "device_id": device,
            "is_fraud": scenario is not None,
        }

    def events(self, n: int | None = None) -> Iterator[dict[str, Any]]:
        """``n`` events; without ``n``, every event of the configured ``days``."""
        if n is None:
            end = self._t0 + self.config.days * DAY_S
            while min(self._next_regular, self._heap[0][0] if self._heap else math.inf) < end:
                yield self.next_event()
            return
        for _ in range(n):
            yield self.next_event()

    def take(self, n: int) -> list[dict[str, Any]]:
        return list(self.events(n))

    # --- labels ----------------------------------------------------------------------------

    def label_delay(self, mean_delay_s: float = LABEL_DELAY_MEAN_S) -> float:
        """A label delay in seconds: a week (:data:`LABEL_DELAY_MIN_S`) plus a log-normal extra,
        right-skewed, so that the mean is ``mean_delay_s`` (at least a week)."""
        if mean_delay_s < LABEL_DELAY_MIN_S:
            raise ValueError(f"mean_delay_s must be at least {LABEL_DELAY_MIN_S:.0f} s (7 days)")
        extra = mean_delay_s - LABEL_DELAY_MIN_S
        if extra <= 0:
            return LABEL_DELAY_MIN_S
        mu = math.log(extra) - _LABEL_DELAY_SIGMA**2 / 2
        return LABEL_DELAY_MIN_S + self.label_rng.lognormvariate(mu, _LABEL_DELAY_SIGMA)

    def label_for(self, event: dict[str, Any], mean_delay_s: float = LABEL_DELAY_MEAN_S) -> dict[str, Any]:
        """The late label of ``event`` (an :class:`~stream_scorer.events.Label` as a dict)."""
        return label_of(event, self.label_delay(mean_delay_s))

    @property
    def clock(self) -> float:
        """The stream's event time (epoch seconds) of the last event."""
        return self.t
