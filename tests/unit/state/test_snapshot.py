"""Snapshot files: atomic writes, digests checked on read, foreign files refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_scorer.exceptions import StateError
from stream_scorer.features import FeatureEngine
from stream_scorer.state import read_snapshot, write_snapshot


def test_round_trip_with_offsets(tmp_path: Path) -> None:
    eng = FeatureEngine()
    eng.update_raw("c", "m", 12.0, 1_767_225_600.0)
    meta = {"offsets": {"transactions": {"0": 42, "3": 7}}, "written_at": "2026-01-01T00:00:00Z"}
    path = tmp_path / "features.snap"
    write_snapshot(path, eng.snapshot(), meta)
    body, got = read_snapshot(path)
    assert got == meta
    assert FeatureEngine.restore(body).snapshot() == eng.snapshot()
    assert [p.name for p in tmp_path.iterdir()] == ["features.snap"]  # no temporary file left


def test_overwrite_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_snapshot(path, b"a" * 1000, {"n": 1})
    write_snapshot(path, b"b", {"n": 2})
    assert read_snapshot(path) == (b"b", {"n": 2})


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=300), data=st.data())
def test_any_altered_byte_is_refused(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("snap") / "s"
    write_snapshot(path, body, {"offsets": {"t:0": 1}})
    raw = bytearray(path.read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    path.write_bytes(bytes(raw))
    with pytest.raises(StateError):
        read_snapshot(path)


@pytest.mark.parametrize("content", [b"", b"SSSNAP", b"not a snapshot at all" * 3, b"\x80\x04."])
def test_foreign_or_truncated_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "s"
    path.write_bytes(content)
    with pytest.raises(StateError):
        read_snapshot(path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_snapshot(path, b"x" * 100, {})
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(StateError):
        read_snapshot(path)


def test_missing_file_is_not_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_snapshot(tmp_path / "none")


def test_a_failed_write_leaves_the_old_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s"
    write_snapshot(path, b"old", {"v": 1})

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot(path, b"new", {"v": 2})
    monkeypatch.undo()
    assert read_snapshot(path) == (b"old", {"v": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
