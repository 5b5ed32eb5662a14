"""Checkpoints: identical scores after a round trip; altered, foreign, truncated files refused."""

from __future__ import annotations

import pickle

import pytest

from stream_scorer.exceptions import CheckpointError, StreamScorerError
from stream_scorer.model import checkpoint
from stream_scorer.model.logistic import OnlineLogit
from stream_scorer.model.settings import ModelSettings, TreeSettings
from stream_scorer.model.tree import OnlineTree

KEY = b"k" * 32
OTHER = b"o" * 32


def trained(stream, challenger):
    champion = OnlineLogit(ModelSettings(l2=0.001))
    for x, y in stream[:1_500]:
        champion.learn(x, y)
        if challenger is not None:
            challenger.learn(x, y)
    return champion, challenger


@pytest.mark.parametrize(
    "make_challenger",
    [
        lambda: None,
        lambda: OnlineLogit(ModelSettings(name="fast", learning_rate=0.05)),
        lambda: OnlineTree(TreeSettings(grace_period=50)),
    ],
    ids=["no-challenger", "logreg", "tree"],
)
def test_round_trip_gives_identical_scores(tmp_path, stream, make_challenger):
    champion, challenger = trained(stream, make_challenger())
    path = tmp_path / "m.ckpt"
    assert checkpoint.save(path, champion, challenger, KEY, meta={"why": "test"}) == 1
    ck = checkpoint.load(path, KEY)
    assert ck.generation == 1 and ck.meta == {"why": "test"}
    assert ck.champion.version == champion.version == "logreg-sgd/1"
    for x, y in stream[1_500:]:
        assert ck.champion.score(x) == champion.score(x)
        if challenger is not None:
            assert ck.challenger is not None
            assert ck.challenger.score(x) == challenger.score(x)
        champion.learn(x, y)
        ck.champion.learn(x, y)
    assert (ck.challenger is None) == (challenger is None)


def test_generations_increase(tmp_path):
    m = OnlineLogit(ModelSettings())
    path = tmp_path / "m.ckpt"
    assert [checkpoint.save(path, m, None, KEY) for _ in range(3)] == [1, 2, 3]
    loaded = checkpoint.load(path, KEY)
    assert loaded.generation == 3 and loaded.champion.version == "logreg-sgd/3"
    assert checkpoint.save(path, loaded.champion, None, KEY) == 4


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    m = OnlineLogit(ModelSettings())
    checkpoint.save(tmp_path / "sub" / "m.ckpt", m, None, KEY)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.ckpt"]


@pytest.fixture
def signed(stream):
    champion, challenger = trained(stream, OnlineTree(TreeSettings(grace_period=50)))
    return checkpoint.encode(champion, challenger, KEY, generation=7)


def test_a_foreign_key_is_refused(signed):
    with pytest.raises(CheckpointError, match="signed with another key"):
        checkpoint.decode(signed, OTHER)


@pytest.mark.parametrize("cut", [1, 31, 32, 500])
def test_a_truncated_checkpoint_is_refused(signed, cut):
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.decode(signed[:-cut], KEY)


def test_bytes_appended_are_refused(signed):
    with pytest.raises(CheckpointError, match="unexpected bytes"):
        checkpoint.decode(signed + b"\n", KEY)


@pytest.mark.parametrize("where", [0.3, 0.6, 0.95, -1])
def test_an_altered_checkpoint_is_refused_before_anything_is_unpickled(signed, where, monkeypatch):
    def no_unpickling(*args, **kwargs):
        raise AssertionError("unpickled unverified bytes")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    i = int(len(signed) * where) if where >= 0 else len(signed) - 1
    if i < signed.index(b"\n"):
        i = signed.index(b"\n") + 5
    tampered = bytearray(signed)
    tampered[i] ^= 0x01
    with pytest.raises(CheckpointError, match="integrity check failed"):
        checkpoint.decode(bytes(tampered), KEY)


@pytest.mark.parametrize(
    "data", [b"", b"hello", b"SSCKPT 1 abc\n{}", b"SSCKPT x y z\n", b"\x80\x04\x95" + b"\0" * 50]
)
def test_other_files_are_refused(data):
    with pytest.raises(CheckpointError, match="not a stream-scorer checkpoint"):
        checkpoint.decode(data, KEY)


def test_a_header_claiming_another_length_is_refused(signed):
    head, _, rest = signed.partition(b"\n")
    parts = head.split(b" ")
    forged = b" ".join([*parts[:3], str(int(parts[3]) - 10).encode()]) + b"\n" + rest
    with pytest.raises(CheckpointError):
        checkpoint.decode(forged, KEY)


def test_missing_file_and_empty_key(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        checkpoint.load(tmp_path / "nope.ckpt", KEY)
    with pytest.raises(CheckpointError, match="non-empty key"):
        checkpoint.encode(OnlineLogit(ModelSettings()), None, b"", 1)
    assert issubclass(CheckpointError, StreamScorerError)


def test_checkpointer_saves_when_due(tmp_path):
    c = checkpoint.Checkpointer(tmp_path / "m.ckpt", KEY, interval_s=3_600)
    m = OnlineLogit(ModelSettings())
    assert c.maybe_save(m, None) is None
    assert c.save(m, None) == 1
    assert c.due(now=c.last_save + 3_601)
