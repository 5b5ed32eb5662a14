"""Snapshot/restore and the per-key changelog give the same features as an uninterrupted engine."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_scorer.exceptions import StateError
from stream_scorer.features import FeatureEngine
from stream_scorer.features.merchant import MerchantLayout
from stream_scorer.features.settings import FeatureSettings
from tests.unit.features.strategies import T0, run, settings_st, streams


@st.composite
def with_evictions(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """A stream with eviction sweeps now and then, at a watermark that never goes back.

    With ``evict_interval_s`` tiny and few keys, every call is one whole sweep, so an engine
    restored in between evicts exactly what the uninterrupted one does.
    """
    stream = draw(streams(max_items=80))
    out: list[tuple[Any, ...]] = []
    watermark = T0
    for item in stream:
        out.append(item)
        if item[0] == "txn" and draw(st.integers(0, 6)) == 0:
            ahead = draw(st.sampled_from([0, 8 * 86_400, 40 * 86_400]))
            watermark = max(watermark + 1, item[4] + ahead)
            out.append(("evict", watermark))
    return out


@settings(max_examples=150, deadline=None)
@given(stream=with_evictions(), fs=settings_st, data=st.data())
def test_snapshot_restore_continues_identically(
    stream: list[Any], fs: FeatureSettings, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(stream)))
    whole = FeatureEngine(fs)
    expected = run(whole, stream)
    first = FeatureEngine(fs)
    head = run(first, stream[:cut])
    second = FeatureEngine.restore(first.snapshot(), fs)
    assert second.snapshot() == first.snapshot()
    assert head + run(second, stream[cut:]) == expected
    assert second.late_events == whole.late_events
    assert second.n_entities() == whole.n_entities()


@settings(max_examples=150, deadline=None)
@given(stream=with_evictions(), fs=settings_st, data=st.data())
def test_changelog_replay_continues_identically(
    stream: list[Any], fs: FeatureSettings, data: st.DataObject
) -> None:
    """Flush dirty keys to a compacted 'topic' now and then; a new engine loads it and goes on."""
    cut = data.draw(st.integers(0, len(stream)))
    expected = run(FeatureEngine(fs), stream)
    first = FeatureEngine(fs)
    topic: dict[str, bytes | None] = {}
    got: list[dict[str, float]] = []
    for i, item in enumerate(stream[:cut]):
        got += run(first, [item])
        if i == cut - 1 or data.draw(st.booleans()):
            want = {key: first.dump_key(key) for key in first.dirty_keys()}
            drained = first.drain_changes()  # what a commit writes: the same keys and bytes
            assert dict(drained) == want and len(drained) == len(want)
            topic.update(drained)
    assert not first.dirty_keys()
    second = FeatureEngine(fs)
    for key, value in topic.items():
        second.load_key(key, value)
    held = {f"c:{c}" for c in first.cards} | {f"m:{m}" for m in first.merchants}
    held |= {f"k:{k}" for k in first.categories}
    if fs.bins and any(item[0] == "txn" for item in stream[:cut]):
        held.add("g:bins")
    assert {k for k, v in topic.items() if v is not None} == held
    assert not second.dirty_keys()
    assert state_of(second) == state_of(first)  # cards, merchants, categories and sketches
    got += run(second, stream[cut:])
    assert got == expected


def state_of(eng: FeatureEngine) -> dict[str, bytes | None]:
    """Every key's bytes, whatever the order the engine holds them in."""
    keys = [f"c:{c}" for c in eng.cards] + [f"m:{m}" for m in eng.merchants]
    keys += [f"k:{k}" for k in eng.categories] + ["g:bins"]
    return {key: eng.dump_key(key) for key in keys}


def _busy_engine(fs: FeatureSettings | None = None) -> FeatureEngine:
    rng = random.Random(7)
    eng = FeatureEngine(fs)
    for i in range(300):
        eng.update_raw(f"c{rng.randrange(40)}", f"m{rng.randrange(9)}", rng.uniform(1, 500), T0 + i)
        if i % 10 == 0:
            eng.observe_label(f"m{rng.randrange(9)}", rng.random() < 0.3, T0 + i, T0 + i + 50)
    return eng


def test_every_single_byte_change_of_a_snapshot_is_refused() -> None:
    data = bytearray(_busy_engine().snapshot())
    rng = random.Random(1)
    for at in [*range(0, 40), *rng.sample(range(40, len(data)), 200), len(data) - 1]:
        bad = bytearray(data)
        bad[at] ^= 1 << rng.randrange(8)
        with pytest.raises(StateError):
            FeatureEngine.restore(bytes(bad))


@pytest.mark.parametrize("cut", [0, 3, 10, 31, -1])
def test_truncated_snapshot_is_refused(cut: int) -> None:
    data = _busy_engine().snapshot()
    with pytest.raises(StateError):
        FeatureEngine.restore(data[:cut])


@pytest.mark.parametrize("data", [b"", b"garbage", b"PK\x03\x04" + bytes(100), b"\x80\x04K\x01."])
def test_foreign_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(StateError):
        FeatureEngine.restore(data)


def test_snapshot_of_other_settings_is_refused() -> None:
    data = _busy_engine(FeatureSettings(grace_s=60)).snapshot()
    with pytest.raises(StateError, match="other feature settings"):
        FeatureEngine.restore(data, FeatureSettings(grace_s=120))
    assert FeatureEngine.restore(data, FeatureSettings(grace_s=60)).n_entities() == 49


def test_bad_changelog_values_are_refused() -> None:
    eng = _busy_engine()
    card, merchant = eng.dump_key("c:c1"), eng.dump_key("m:m1")
    assert card is not None and merchant is not None
    other = FeatureEngine(FeatureSettings(card_merchant_slots=4))
    fresh = FeatureEngine()
    for key, value in [
        ("c:x", card[:-1]),
        ("c:x", merchant),
        ("m:x", card),
        ("m:x", merchant[:-3]),
        ("m:x", b""),
        ("c:x", b"\x00"),
        ("x:y", card),
        ("c:", card),
        ("nocolon", card),
    ]:
        with pytest.raises(StateError):
            fresh.load_key(key, value)
    with pytest.raises(StateError, match="other feature settings"):
        other.load_key("c:c1", card)
    fresh.load_key("c:c1", card)
    fresh.load_key("m:m1", merchant)
    assert fresh.dump_key("c:c1") == card and fresh.dump_key("m:m1") == merchant
    fresh.load_key("c:c1", None)
    assert fresh.dump_key("c:c1") is None and fresh.n_entities() == 1


def test_state_of_an_older_format_version_is_refused_by_name() -> None:
    """A card or merchant written by an engine with another byte layout is never mis-read: the
    value header and the snapshot header carry the format version, checked before anything else."""
    import struct

    from stream_scorer.features.engine import SNAPSHOT_VERSION

    eng = _busy_engine()
    card = eng.dump_key("c:c1")
    assert card is not None
    old = bytearray(card)
    old[1] = SNAPSHOT_VERSION - 1  # the value header: kind, format version, fingerprint
    with pytest.raises(StateError, match=f"format version {SNAPSHOT_VERSION - 1}"):
        FeatureEngine().load_key("c:c1", bytes(old))
    snap = bytearray(eng.snapshot())
    struct.pack_into("<H", snap, 4, SNAPSHOT_VERSION - 1)  # after the magic
    with pytest.raises(StateError, match=f"format version {SNAPSHOT_VERSION - 1}"):
        FeatureEngine.restore(bytes(snap))


@pytest.mark.parametrize("grace", [0.0, 300.0, 3_600.0])
def test_merchant_state_roundtrips_and_continues_bit_for_bit(grace: float) -> None:
    """A merchant's bytes: ``max_ts``, ``seen_ts`` (two float64), then its counts and sums; a
    merchant loaded from them (its caches recomputed) goes on exactly like the one never saved."""
    import struct

    layout = MerchantLayout(FeatureSettings(grace_s=grace))
    rng = random.Random(3)
    m = layout.new(7)
    for i in range(400):
        layout.update(m, rng.uniform(1, 500), T0 + i * 97 - rng.choice([0, 50, 400, 5_000]), {})
    layout.touch(m, m.max_ts + 86_400)
    data = layout.dumps(m)
    assert len(data) == 16 + 16 * layout.n_buckets
    assert struct.unpack_from("<dd", data) == (m.max_ts, m.seen_ts)
    back = layout.loads(data, 7)
    assert layout.dumps(back) == data and back.mhash == 7
    for i in range(300):
        amount, ts = rng.uniform(1, 500), m.max_ts + rng.choice([-4_000, -100, 0, 30, 3_600])
        x1: dict[str, float] = {}
        x2: dict[str, float] = {}
        assert layout.update(m, amount, ts, x1) == layout.update(back, amount, ts, x2)
        assert x1 == x2, i
    assert layout.dumps(back) == layout.dumps(m)
    for bad in (data[:-1], data + b"\x00", data[:16], b""):
        with pytest.raises(ValueError, match="wrong size"):
            layout.loads(bad, 7)
