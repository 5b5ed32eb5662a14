"""How fast is the feature engine per event, and how much memory does a card cost?

Three measurements, each printed on its own lines:

1. ``update`` cost per event, on a stream of ``--events`` transactions over ``--cards`` cards and
   ``--merchants`` merchants (a few minutes of traffic per card, some events out of order, some
   labels): wall and CPU microseconds per event, for ``update_raw`` and for ``update(txn)``
   (from a pydantic ``Transaction``, as the worker calls it).
2. State per card: the serialized size (``dump_key``) and the in-memory size measured with
   ``tracemalloc`` over ``--memory-cards`` fresh cards (buffer, dict entry and key string).
3. Resident memory (RSS) before and after loading ``--rss-cards`` cards (1,000,000 by default).

    .venv/bin/python benchmarks/bench_features.py
    .venv/bin/python benchmarks/bench_features.py --events 50000 --rss-cards 100000  # quick
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from datetime import UTC, datetime

from stream_scorer.events import Transaction
from stream_scorer.features import FeatureEngine

T0 = 1_767_225_600.0


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _stream(
    n: int, n_cards: int, n_merchants: int, seed: int
) -> list[tuple[str, str, float, float]]:
    """Transactions about 20 per second over the cards, 2% of them up to a minute out of order."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1) for _ in range(n_cards)]
    cards = rng.choices([f"card-{i:08d}" for i in range(n_cards)], weights, k=n)
    merchants = [f"merchant-{i:06d}" for i in range(n_merchants)]
    out = []
    for i, card in enumerate(cards):
        ts = T0 + i * 0.05
        if rng.random() < 0.02:
            ts -= rng.uniform(0, 60)
        out.append((card, rng.choice(merchants), round(rng.lognormvariate(3.5, 1.2), 2), ts))
    return out


def bench_update(n: int, n_cards: int, n_merchants: int, seed: int) -> None:
    events = _stream(n, n_cards, n_merchants, seed)
    eng = FeatureEngine()
    warm = events[: n // 5]
    for c, m, a, ts in warm:
        eng.update_raw(c, m, a, ts)
    timed = events[n // 5 :]
    label_every = 50
    w0, c0 = time.perf_counter(), time.process_time()
    update, observe = eng.update_raw, eng.observe_label
    for i, (c, m, a, ts) in enumerate(timed):
        update(c, m, a, ts)
        if i % label_every == 0:
            observe(m, False, ts, ts + 30.0)
    w1, c1 = time.perf_counter(), time.process_time()
    k = len(timed)
    print(
        f"update_raw: {(w1 - w0) / k * 1e6:.1f} us/event wall, {(c1 - c0) / k * 1e6:.1f} us CPU "
        f"({k} events, {len(eng.cards)} cards, {len(eng.merchants)} merchants, "
        f"{eng.late_events} late)"
    )

    txns = [
        Transaction(
            transaction_id=f"t{i}",
            event_time=datetime.fromtimestamp(ts, UTC),
            card_id=c,
            merchant_id=m,
            amount=a,
            currency="EUR",
            is_fraud=None,
        )
        for i, (c, m, a, ts) in enumerate(timed[: min(k, 50_000)])
    ]
    eng2 = FeatureEngine()
    for c, m, a, ts in warm:
        eng2.update_raw(c, m, a, ts)
    w0, c0 = time.perf_counter(), time.process_time()
    for txn in txns:
        eng2.update(txn)
    w1, c1 = time.perf_counter(), time.process_time()
    print(
        f"update(txn): {(w1 - w0) / len(txns) * 1e6:.1f} us/event wall, "
        f"{(c1 - c0) / len(txns) * 1e6:.1f} us CPU ({len(txns)} events)"
    )

    w0 = time.perf_counter()
    snap = eng.snapshot()
    w1 = time.perf_counter()
    FeatureEngine.restore(snap)
    w2 = time.perf_counter()
    print(
        f"snapshot: {len(snap) / 1e6:.1f} MB for {eng.n_entities()} entities, "
        f"{w1 - w0:.2f} s to write, {w2 - w1:.2f} s to restore"
    )


def bench_memory(n_cards: int) -> None:
    eng = FeatureEngine()
    eng.update_raw("card-warm", "m", 10.0, T0)
    keys = [
        f"card-{i:08d}" for i in range(n_cards)
    ]  # the keys exist anyway (they arrive in events)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, key in enumerate(keys):
        eng.update_raw(key, "m", 10.0 + i % 7, T0 + i * 0.01)
        if i % 500 == 0:
            eng.clear_dirty()  # per batch, as the worker does after writing the changelog
    eng.clear_dirty()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    value = eng.dump_key("c:card-00000000")
    assert value is not None
    print(
        f"card state: {len(value)} bytes serialized (changelog value, with a 6-byte header), "
        f"{eng._card.size} bytes of buffer"
    )
    print(
        f"card in memory (tracemalloc, {n_cards} cards, keys excluded): "
        f"{(after - before) / n_cards:.0f} bytes per card"
    )


def bench_rss(n_cards: int, n_merchants: int) -> None:
    gc.collect()
    rss0 = _rss_bytes()
    eng = FeatureEngine()
    rng = random.Random(3)
    for i in range(n_cards):
        if i % 500 == 0:
            eng.clear_dirty()
        eng.update_raw(
            f"card-{i:08d}",
            f"merchant-{rng.randrange(n_merchants):06d}",
            10.0 + i % 97,
            T0 + i * 0.001,
        )
    gc.collect()
    eng.clear_dirty()
    gc.collect()
    rss1 = _rss_bytes()
    print(
        f"RSS: {rss0 / 2**20:.0f} MiB -> {rss1 / 2**20:.0f} MiB with {len(eng.cards)} cards and "
        f"{len(eng.merchants)} merchants: {(rss1 - rss0) / n_cards:.0f} bytes per card "
        f"(all included: keys, dict, merchants)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--cards", type=int, default=50_000)
    ap.add_argument("--merchants", type=int, default=5_000)
    ap.add_argument("--memory-cards", type=int, default=100_000)
    ap.add_argument("--rss-cards", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    bench_rss(args.rss_cards, args.merchants)  # first: freed memory would hide later growth
    bench_update(args.events, args.cards, args.merchants, args.seed)
    bench_memory(args.memory_cards)


if __name__ == "__main__":
    main()
