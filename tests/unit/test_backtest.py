"""Backtest and score-file: file replay through the shared Scorer, rejects, report, label delay."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from stream_scorer import cli, simulate
from stream_scorer.backtest import (
    PLOTS,
    average_precision,
    backtest,
    parse_duration,
    roc_auc,
    rolling_average_precision,
    score_file,
)
from stream_scorer.config import Settings
from stream_scorer.events import Score
from stream_scorer.exceptions import CheckpointError, ConfigError
from stream_scorer.model import checkpoint
from stream_scorer.model.logistic import OnlineLogit
from stream_scorer.model.settings import ModelSettings

N = 4_000
UNTRAINED = OnlineLogit(ModelSettings()).score({})[0]  # the prior: about 0.01
KEY = "backtest-test-key-0123456789"
BAD = {  # line number (1-based, in the mixed file) -> bad line
    10: b"{not json",
    20: b"[1, 2, 3]",
    30: b'{"transaction_id": "x"}',
    40: b'{"transaction_id": "y", "event_time": "2026-01-01T00:00:00Z", "card_id": "c", '
    b'"merchant_id": "m", "amount": -5.0, "currency": "EUR"}',
    50: b'{"transaction_id": "z", "event_time": "2026-01-01T00:00:00Z", "card_id": "c", '
    b'"merchant_id": "m", "amount": 5.0, "currency": "XXY"}',
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> tuple[Path, list[dict]]:
    """N simulated transactions with BAD lines and one blank line mixed in."""
    d = tmp_path_factory.mktemp("sim")
    clean = d / "clean.jsonl"
    simulate.write_jsonl(clean, N, seed=5)
    good = clean.read_bytes().splitlines()
    lines: list[bytes] = []
    it = iter(good)
    while len(lines) < N + len(BAD):
        n = len(lines) + 1
        lines.append(BAD[n] if n in BAD else next(it))
    lines.insert(60, b"   ")  # blank: skipped, neither scored nor rejected
    mixed = d / "mixed.jsonl"
    mixed.write_bytes(b"\n".join(lines) + b"\n")
    return mixed, [orjson.loads(g) for g in good]


def settings(**kw) -> Settings:
    return Settings(checkpoint={"key": KEY}, **kw)


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_backtest_counts_rejects_scores_and_report(sim, tmp_path):
    mixed, good = sim
    scores, rejects, report = (
        tmp_path / "scores.jsonl",
        tmp_path / "rejects.jsonl",
        tmp_path / "report",
    )
    r = backtest(mixed, scores, settings(), report_dir=report, rejects_path=rejects, progress=False)
    assert (r.lines, r.scored, r.rejects) == (N + len(BAD), N, len(BAD))
    assert r.rejects_by_kind == {"not_json": 1, "not_object": 1, "schema": 1, "rule": 2}

    refused = read_jsonl(rejects)
    assert [x["line"] for x in refused] == sorted(BAD)
    assert all(x["reason"] and x["error_kind"] and x["raw"] for x in refused)
    assert "currency" in refused[-1]["reason"] and "amount" in refused[-2]["reason"]

    records = read_jsonl(scores)
    assert [x["transaction_id"] for x in records] == [g["transaction_id"] for g in good]
    for x in records:
        Score.model_validate(x)
    assert all(x["challenger_score"] is not None and x["label"] is not None for x in records)

    assert {p.name for p in report.iterdir()} >= {
        "metrics.json",
        "roc.png",
        "pr.png",
        "score_hist.png",
        "rolling_ap.png",
        "index.html",
    }
    m = json.loads((report / "metrics.json").read_text())
    assert (m["events"], m["scored"], m["rejects"], m["labelled"]) == (N + len(BAD), N, len(BAD), N)
    assert m["roc_auc"] > 0.6
    assert m["average_precision"] > 3 * m["fraud_rate"]
    assert m["throughput_events_per_s"] > 0 and 0 <= m["precision_at_review"] <= 1
    html = (report / "index.html").read_text()
    assert all(
        f'src="{p}"' in html for p in ("roc.png", "pr.png", "score_hist.png", "rolling_ap.png")
    )
    for p in ("roc.png", "pr.png"):
        assert (report / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_label_delay_holds_labels_until_their_time(sim, tmp_path):
    mixed, good = sim
    delay = 600.0  # the simulated world makes about 4,000 events in 25 minutes
    r = backtest(mixed, tmp_path / "s.jsonl", settings(), label_delay_s=delay, progress=False)
    ts = [datetime.fromisoformat(g["event_time"]).timestamp() for g in good]
    due = sum(t + delay <= ts[-1] for t in ts)
    assert 0 < due < N
    assert r.counters["learned"] == r.counters["delayed_labels_applied"] == due
    assert r.counters["delayed_labels_waiting"] == N - due
    records = read_jsonl(tmp_path / "s.jsonl")
    first_due = ts[0] + delay
    # Before the first label is due nothing was learned: every score is the untrained prior.
    early = [x["score"] for x, t in zip(records, ts, strict=True) if t < first_due]
    assert early and set(early) == {UNTRAINED}
    # ... and learning starts after it.
    assert any(x["score"] != UNTRAINED for x, t in zip(records, ts, strict=True) if t >= first_due)

    never = backtest(
        mixed,
        tmp_path / "n.jsonl",
        settings(),
        label_delay_s=parse_duration("1000d"),
        progress=False,
    )
    assert never.counters["learned"] == 0
    assert {x["score"] for x in read_jsonl(tmp_path / "n.jsonl")} == {UNTRAINED}
    assert {x["band"] for x in read_jsonl(tmp_path / "n.jsonl")} == {"approve"}

    now = backtest(mixed, tmp_path / "z.jsonl", settings(), label_delay_s=0.0, progress=False)
    assert now.counters["learned"] == N
    assert now.metrics["average_precision"] > r.metrics["average_precision"]


def test_score_file_uses_the_checkpoint_and_learns_nothing(sim, tmp_path):
    mixed, _ = sim
    ckpt = tmp_path / "m.ckpt"
    r = backtest(mixed, tmp_path / "s.jsonl", settings(), checkpoint_out=ckpt, progress=False)
    assert r.checkpoint_generation == 1
    a = score_file(
        mixed,
        ckpt,
        tmp_path / "a.jsonl",
        settings(),
        rejects_path=tmp_path / "rej.jsonl",
        progress=False,
    )
    score_file(mixed, ckpt, tmp_path / "b.jsonl", settings(), progress=False)
    assert a.scored == N and a.rejects == len(BAD) and a.counters["learned"] == 0
    ra, rb = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert [x["score"] for x in ra] == [x["score"] for x in rb]
    assert {x["model_version"] for x in ra} == {"logreg-sgd/1"}
    assert {x["challenger_version"] for x in ra} == {"logreg-sgd-slow/1"}
    assert a.metrics["roc_auc"] > 0.6


def test_checkpoints_need_a_key_and_the_right_one(sim, tmp_path):
    mixed, _ = sim
    with pytest.raises(ConfigError, match="STREAM_SCORER_CHECKPOINT__KEY"):
        backtest(
            mixed,
            tmp_path / "s.jsonl",
            Settings(),
            checkpoint_out=tmp_path / "m.ckpt",
            progress=False,
        )
    assert not (tmp_path / "s.jsonl").exists()  # refused before the replay
    backtest(
        mixed, tmp_path / "s.jsonl", settings(), checkpoint_out=tmp_path / "m.ckpt", progress=False
    )
    other = Settings(checkpoint={"key": "another-key-of-ours-0000"})
    with pytest.raises(CheckpointError, match="another key"):
        score_file(mixed, tmp_path / "m.ckpt", tmp_path / "o.jsonl", other, progress=False)


def test_the_cli(sim, tmp_path, monkeypatch, capsys):
    mixed, _ = sim
    monkeypatch.setenv("STREAM_SCORER_CHECKPOINT__KEY", KEY)
    monkeypatch.setenv("STREAM_SCORER_LOG_FORMAT", "text")
    rc = cli.main(
        [
            "backtest",
            str(mixed),
            "--scores-out",
            str(tmp_path / "s.jsonl"),
            "--label-delay",
            "12h",
            "--rejects",
            str(tmp_path / "r.jsonl"),
            "--report",
            str(tmp_path / "rep"),
            "--checkpoint-out",
            str(tmp_path / "m.ckpt"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert f"scored {N} of {N + len(BAD)} events ({len(BAD)} rejected)" in out
    assert "checkpoint generation 1" in out
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text())["label_delay_s"] == 43_200.0
    assert (
        cli.main(
            [
                "score-file",
                str(mixed),
                "--checkpoint",
                str(tmp_path / "m.ckpt"),
                "--out",
                str(tmp_path / "o.jsonl"),
            ]
        )
        == 0
    )
    data = bytearray((tmp_path / "m.ckpt").read_bytes())
    data[len(data) // 2] ^= 0x20
    (tmp_path / "bad.ckpt").write_bytes(bytes(data))
    assert (
        cli.main(
            [
                "score-file",
                str(mixed),
                "--checkpoint",
                str(tmp_path / "bad.ckpt"),
                "--out",
                str(tmp_path / "x.jsonl"),
            ]
        )
        == 2
    )
    assert "integrity check failed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["backtest", str(mixed), "--scores-out", "x", "--label-delay", "soon"])


def test_metrics_match_known_values():
    y = [0, 0, 1, 1, 0, 1]
    s = [0.1, 0.4, 0.35, 0.8, 0.8, 0.9]
    # Computed by hand: pairs (pos, neg) ranked right, ties half.
    assert roc_auc(y, s) == pytest.approx(6.5 / 9)
    assert average_precision(y, s) == pytest.approx(
        (1 / 3) * 1.0 + (1 / 3) * (2 / 3) + (1 / 3) * 0.6
    )
    assert roc_auc([1, 1], [0.2, 0.3]) != roc_auc([1, 1], [0.2, 0.3])  # NaN: one class
    mid, aps = rolling_average_precision(
        [0, 1, 2, 3], [1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2], n_windows=2
    )
    assert list(aps) == [1.0, 1.0] and len(mid) == 2
    with pytest.raises(ValueError):
        parse_duration("3 days")


def test_score_file_continues_from_the_checkpoints_feature_state(sim, tmp_path):
    _, good = sim
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(orjson.dumps(g) + b"\n" for g in good[:3_000]))
    second.write_bytes(b"".join(orjson.dumps(g) + b"\n" for g in good[3_000:]))
    ckpt = tmp_path / "m.ckpt"
    backtest(first, tmp_path / "s.jsonl", settings(), checkpoint_out=ckpt, progress=False)
    assert checkpoint.load(ckpt, KEY.encode()).features is not None
    warm = score_file(second, ckpt, tmp_path / "w.jsonl", settings(), progress=False)
    cold = score_file(
        second, ckpt, tmp_path / "c.jsonl", settings(), progress=False, fresh_features=True
    )
    assert warm.scored == cold.scored == N - 3_000
    w, c = read_jsonl(tmp_path / "w.jsonl"), read_jsonl(tmp_path / "c.jsonl")
    # The first event's card was seen in the first file: warm features know it, cold do not.
    assert w[0]["features"] != c[0]["features"]


def test_progress_bar_goes_to_stderr(sim, tmp_path, capsys):
    mixed, _ = sim
    backtest(mixed, tmp_path / "s.jsonl", settings(), progress=True)
    captured = capsys.readouterr()
    assert "backtest" in captured.err and "100%" in captured.err
    assert captured.out == ""


def test_a_short_key_is_refused_without_echoing_it(sim, tmp_path):
    mixed, _ = sim
    short = Settings(checkpoint={"key": "s3cr3t-short"})
    with pytest.raises(ConfigError, match="too short") as err:
        backtest(mixed, tmp_path / "s.jsonl", short, checkpoint_out=tmp_path / "m.ckpt")
    assert "s3cr3t" not in str(err.value)


def test_metrics_of_nothing_are_unavailable_not_an_error():
    from stream_scorer.backtest import average_precision, pr_curve, roc_auc, roc_curve

    assert math.isnan(roc_auc([], [])) and math.isnan(average_precision([], []))
    assert len(pr_curve([], [])[0]) == 1 and len(roc_curve([], [])[0]) == 2


# -- input that scores nothing, or has no labels: a clear summary, never a traceback ------------

ALL_BAD = [
    b'{"transaction_id": "a", "event_time": "2026-01-01T00:00:00Z", "card_id": "c", '
    b'"merchant_id": "m", "amount": 5.0, "currency": "EUR", "is_fraud": "yes"}',
    b'{"transaction_id": "b", "event_time": "2026-01-01T00:00:00Z", "card_id": "c", '
    b'"merchant_id": "m", "amount": 5.0, "currency": "EUR", "is_fraud": 2}',
    b'{"transaction_id": "c"}',
    b"{not json",
]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command as users run it: a process of its own, its exit code and its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_SCORER_")}
    env |= {"STREAM_SCORER_CHECKPOINT__KEY": KEY, "STREAM_SCORER_LOG_FORMAT": "text"}
    return subprocess.run(
        [sys.executable, "-m", "stream_scorer.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )


def test_a_backtest_of_an_all_rejected_file_fails_clearly(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b"\n".join(ALL_BAD) + b"\n")
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"an earlier checkpoint")
    proc = _cli(
        "backtest", str(src), "--scores-out", str(tmp_path / "s.jsonl"), "--rejects",
        str(tmp_path / "r.jsonl"), "--report", str(tmp_path / "rep"), "--checkpoint-out", str(ckpt),
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "scored 0 of 4 events (4 rejected)" in proc.stdout
    assert (
        "no line was scored: 4 lines, all rejected (not_json: 1, schema: 3); see "
        f"{tmp_path / 'r.jsonl'}" in proc.stderr
    )
    assert ckpt.read_bytes() == b"an earlier checkpoint", "an empty run must not replace a checkpoint"
    assert "no checkpoint written" in proc.stderr
    refused = read_jsonl(tmp_path / "r.jsonl")
    assert [x["error_kind"] for x in refused] == ["schema", "schema", "schema", "not_json"]
    assert all("is_fraud" in x["reason"] for x in refused[:2])
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["metrics_available"] is False and m["metrics_unavailable_reason"].startswith("no line was scored")
    assert m["roc_auc"] is m["average_precision"] is m["fraud_rate"] is None
    assert {p.name for p in (tmp_path / "rep").iterdir()} >= {"index.html", *PLOTS}
    assert "Metrics unavailable" in (tmp_path / "rep" / "index.html").read_text()


def test_a_backtest_without_labels_succeeds_with_metrics_unavailable(tmp_path):
    src = tmp_path / "unlabelled.jsonl"
    simulate.write_jsonl(src, 300, seed=3, inline_labels=False)
    proc = _cli(
        "backtest", str(src), "--scores-out", str(tmp_path / "s.jsonl"), "--report", str(tmp_path / "rep"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "scored 300 of 300 events (0 rejected)" in proc.stdout
    assert "no labels: none of the 300 scored events carries is_fraud" in proc.stdout
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert (m["scored"], m["labelled"], m["metrics_available"]) == (300, 0, False)
    assert m["metrics_unavailable_reason"].startswith("no labels")
    assert m["roc_auc"] is None and m["average_precision"] is None
    assert {p.name for p in (tmp_path / "rep").iterdir()} >= {"index.html", *PLOTS}


def test_an_empty_file_and_a_missing_one(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n  \n")
    r = backtest(empty, tmp_path / "s.jsonl", settings(), report_dir=tmp_path / "rep", progress=False)
    assert (r.lines, r.scored, r.metrics["metrics_available"]) == (0, 0, False)
    assert "no non-blank line" in r.metrics["metrics_unavailable_reason"]
    assert (tmp_path / "rep" / "score_hist.png").exists()
    assert cli.main(["backtest", str(empty), "--scores-out", str(tmp_path / "s.jsonl")]) == 1
    assert "no line was scored" in capsys.readouterr().err
    assert cli.main(["backtest", str(tmp_path / "nope.jsonl"), "--scores-out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "stream-scorer: error: backtest: No such file or directory" in err and "nope.jsonl" in err


def test_labels_of_one_class_leave_the_ranking_metrics_unavailable(tmp_path):
    src = tmp_path / "genuine.jsonl"
    simulate.write_jsonl(src, 200, seed=3, inline_labels=False)
    lines = [orjson.loads(line) for line in src.read_bytes().splitlines()]
    src.write_bytes(b"".join(orjson.dumps({**x, "is_fraud": 0}) + b"\n" for x in lines))
    r = backtest(src, tmp_path / "s.jsonl", settings(), report_dir=tmp_path / "rep", progress=False)
    assert (r.scored, r.labelled, r.metrics["frauds"]) == (200, 200, 0)
    assert r.metrics["metrics_available"] is False and "one class" in r.metrics["metrics_unavailable_reason"]
    assert r.metrics["roc_auc"] is None and r.metrics["fraud_rate"] == 0.0


def test_score_file_of_nothing_scored_exits_non_zero(sim, tmp_path, monkeypatch, capsys):
    mixed, _ = sim
    monkeypatch.setenv("STREAM_SCORER_CHECKPOINT__KEY", KEY)
    ckpt = tmp_path / "m.ckpt"
    backtest(mixed, tmp_path / "s.jsonl", settings(), checkpoint_out=ckpt, progress=False)
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b"\n".join(ALL_BAD) + b"\n")
    rc = cli.main(["score-file", str(src), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o.jsonl"),
                   "--report", str(tmp_path / "rep")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "stream-scorer score-file: no line was scored" in err and "--rejects FILE" in err
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text())["metrics_available"] is False


@pytest.mark.parametrize("missing", ["reject", "impute"])
def test_a_backtest_dead_letters_events_without_a_required_signal(tmp_path, missing):
    """With features.signal_missing=reject, an event without a named signal (absent or null) is a
    reject whose reason names the signal; with impute it is scored."""
    from stream_scorer.features.settings import FeatureSettings

    base = {"card_id": "c", "merchant_id": "m", "amount": 10.0, "currency": "EUR"}
    events = [
        {**base, "transaction_id": "ok", "event_time": "2026-01-01T00:00:00Z", "signals": {"r": 0.5}},
        {**base, "transaction_id": "absent", "event_time": "2026-01-01T00:01:00Z"},
        {**base, "transaction_id": "null", "event_time": "2026-01-01T00:02:00Z", "signals": {"r": None}},
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    fs = FeatureSettings(signals=("r",), signal_missing=missing)  # type: ignore[arg-type]
    result = backtest(
        src, tmp_path / "s.jsonl", settings(features=fs), rejects_path=tmp_path / "r.jsonl",
        progress=False,
    )
    if missing == "impute":
        assert (result.scored, result.rejects) == (3, 0)
        return
    assert (result.scored, result.rejects) == (1, 2) and result.rejects_by_kind == {"schema": 2}
    reasons = [x["reason"] for x in read_jsonl(tmp_path / "r.jsonl")]
    assert reasons[0].startswith("signals.r: required signal is missing")
    assert reasons[1].startswith("signals.r: required signal is null")
