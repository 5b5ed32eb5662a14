"""Replay a JSON Lines file of transactions through the live scoring path, and measure it.

The backtest reads events in file order and gives each to the same :class:`Scorer` the worker
uses: features from state before the event, score, then learn. Inline labels are learned only once
``label_delay_s`` of event time has passed since their event, the way late labels reach the live
worker. Lines that fail the contract go to a rejects file with their reason; they never stop a run.
"""

from __future__ import annotations

import html
import math
import os
import re
import textwrap
import time
from array import array
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import ArrayLike

from stream_scorer.config import Settings, load_settings
from stream_scorer.decode import Decoder, Rejection
from stream_scorer.exceptions import CheckpointError, StreamScorerError
from stream_scorer.model import checkpoint
from stream_scorer.pipeline import (
    FeatureEngineLike,
    Scorer,
    default_feature_engine,
    scorer_from_checkpoint,
    scorer_settings,
)
from stream_scorer.progress import progress_bar


def _ranked(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest score first."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=float)
    if y.size == 0:  # nothing scored, or nothing labelled: no curve, metrics unavailable
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return tps.astype(float), fps.astype(float)


def roc_curve(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at each distinct threshold, from (0, 0)."""
    tps, fps = _ranked(y_true, y_score)
    if tps.size == 0 or tps[-1] == 0 or fps[-1] == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve (ties count half); NaN when a class is missing.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    tps, fps = _ranked(y_true, y_score)
    if tps.size == 0 or tps[-1] == 0 or fps[-1] == 0:
        return float("nan")
    fpr, tpr = np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def pr_curve(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each distinct threshold, highest threshold first."""
    tps, fps = _ranked(y_true, y_score)
    if tps.size == 0 or tps[-1] == 0:
        return np.array([1.0]), np.array([0.0])
    return tps / (tps + fps), tps / tps[-1]


def average_precision(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Average precision (the step-wise area under the PR curve, as scikit-learn computes it).

    >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    """
    tps, fps = _ranked(y_true, y_score)
    if tps.size == 0 or tps[-1] == 0:
        return float("nan")
    precision, recall = tps / (tps + fps), tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def rolling_average_precision(
    event_ts: ArrayLike, y_true: ArrayLike, y_score: ArrayLike, n_windows: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Average precision in ``n_windows`` equal spans of event time: (span middles, AP or NaN)."""
    t = np.asarray(event_ts, dtype=float)
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=float)
    if t.size == 0:
        return np.array([]), np.array([])
    edges = np.linspace(t.min(), t.max(), n_windows + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_windows - 1)
    aps = np.full(n_windows, np.nan)
    for i in range(n_windows):
        sel = which == i
        if y[sel].any():
            aps[i] = average_precision(y[sel], s[sel])
    return (edges[:-1] + edges[1:]) / 2.0, aps


# -- the replay ---------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3_600.0, "d": 86_400.0, "w": 604_800.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit (ms, s, m, h, d, w; seconds if none).

    >>> parse_duration("3d"), parse_duration("12h"), parse_duration("90s"), parse_duration("0")
    (259200.0, 43200.0, 90.0, 0.0)
    """
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (examples: 0, 90s, 15m, 12h, 3d)")
    return float(m.group(1)) * _UNIT_S[m.group(2) or "s"]


@dataclass
class BacktestResult:
    """What a replay did and measured."""

    lines: int = 0
    scored: int = 0
    rejects: int = 0
    rejects_by_kind: dict[str, int] = field(default_factory=dict)
    labelled: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint_generation: int | None = None

    @property
    def throughput(self) -> float:
        """Scored events per second of wall clock (decoding and writing included)."""
        return self.scored / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Columns:
    """Per-event results kept for the metrics: compact arrays, 8 bytes a value."""

    ts: array[float] = field(default_factory=lambda: array("d"))
    score: array[float] = field(default_factory=lambda: array("d"))
    challenger: array[float] = field(default_factory=lambda: array("d"))
    label: array[int] = field(default_factory=lambda: array("b"))


def replay(
    input_path: str | os.PathLike[str],
    scores_out: str | os.PathLike[str],
    scorer: Scorer,
    *,
    learn: bool = True,
    rejects_path: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    decoder: Decoder | None = None,
    progress: bool | None = None,
) -> BacktestResult:
    """Score every line of ``input_path`` in file order with ``scorer``; write one record a line.

    Each valid line gives one score record (the same dict the live worker produces) in
    ``scores_out``. An invalid line is counted and, with ``rejects_path``, written there with its
    line number and reason. With ``learn`` the scorer learns each inline label once the scorer's
    ``label_delay_s`` of event time has passed. Wall-clock skew rules do not apply to a replay:
    the file's events may be dated anywhere after the decoder's ``min_event_time``.
    """
    decode = (decoder or Decoder()).decode
    score = scorer.score
    result = BacktestResult()
    cols = _Columns()
    rejects: dict[str, int] = {}
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    size = os.path.getsize(input_path)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    with ExitStack() as stack:
        src = stack.enter_context(open(input_path, "rb"))
        out = stack.enter_context(open(scores_out, "wb"))
        rej = stack.enter_context(open(rejects_path, "wb")) if rejects_path is not None else None
        bar = stack.enter_context(progress_bar(size, "backtest", show=progress))
        pending_bytes = 0
        for lineno, raw in enumerate(src, 1):
            pending_bytes += len(raw)
            if lineno % 4096 == 0 and bar is not None:
                bar.update(pending_bytes)
                pending_bytes = 0
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            result.lines += 1
            txn = decode(line, math.inf)
            if isinstance(txn, Rejection):
                rejects[txn.kind] = rejects.get(txn.kind, 0) + 1
                if rej is not None:
                    rej.write(dumps(_reject_record(lineno, txn, line), option=newline))
                continue
            record = score(txn, 0, learn=learn)
            out.write(dumps(record, option=newline))
            cols.ts.append(txn.event_time.timestamp())
            cols.score.append(record["score"])
            ch = record["challenger_score"]
            cols.challenger.append(ch if ch is not None else math.nan)
            cols.label.append(-1 if txn.is_fraud is None else int(txn.is_fraud))
        if bar is not None:
            bar.update(pending_bytes)
    result.seconds = time.perf_counter() - t_start
    result.cpu_seconds = time.process_time() - cpu_start
    result.scored = len(cols.score)
    result.rejects = sum(rejects.values())
    result.rejects_by_kind = dict(sorted(rejects.items()))
    result.counters = scorer.counters()
    result.metrics = _metrics(result, cols, scorer)
    result.labelled = int(result.metrics["labelled"])
    if report_dir is not None:
        write_report(Path(report_dir), result, cols, scorer)
    return result


def _reject_record(lineno: int, rejection: Rejection, line: bytes) -> dict[str, Any]:
    return {
        "line": lineno,
        "error_kind": rejection.kind,
        "reason": rejection.reason,
        "errors": list(rejection.errors),
        "raw": line[:2_000].decode("utf-8", "replace"),
    }


def _metrics(result: BacktestResult, cols: _Columns, scorer: Scorer) -> dict[str, Any]:
    labels = np.frombuffer(cols.label, dtype=np.int8)
    known = labels >= 0
    y = labels[known].astype(bool)
    s = np.frombuffer(cols.score, dtype=float)[known]
    c = np.frombuffer(cols.challenger, dtype=float)[known]
    review = scorer.settings.review_threshold
    flagged = s >= review
    reason = unavailable_reason(result.lines, len(cols.score), result.rejects_by_kind, y)
    m: dict[str, Any] = {
        "metrics_available": reason is None,
        "metrics_unavailable_reason": reason,
        "events": result.lines,
        "scored": len(cols.score),
        "rejects": result.rejects,
        "rejects_by_kind": result.rejects_by_kind,
        "labelled": int(known.sum()),
        "frauds": int(y.sum()),
        "fraud_rate": float(y.mean()) if y.size else None,
        "roc_auc": _num(roc_auc(y, s)),
        "average_precision": _num(average_precision(y, s)),
        "review_threshold": review,
        "flagged_at_review": int(flagged.sum()),
        "precision_at_review": _num(float(y[flagged].mean())) if flagged.any() else None,
        "recall_at_review": _num(float(flagged[y].mean())) if y.any() else None,
        "champion_version": scorer.champion.version,
        "challenger_version": scorer.challenger.version if scorer.challenger is not None else None,
        "challenger_roc_auc": None,
        "challenger_average_precision": None,
        "label_delay_s": scorer.label_delay_s,
        "seconds": round(result.seconds, 3),
        "throughput_events_per_s": round(len(cols.score) / result.seconds, 1)
        if result.seconds > 0
        else None,
        "cpu_seconds": round(result.cpu_seconds, 3),
        "events_per_cpu_s": round(len(cols.score) / result.cpu_seconds, 1)
        if result.cpu_seconds > 0
        else None,
        "counters": result.counters,
    }
    if scorer.challenger is not None and c.size and not np.isnan(c).all():
        m["challenger_roc_auc"] = _num(roc_auc(y, c))
        m["challenger_average_precision"] = _num(average_precision(y, c))
    return m


def unavailable_reason(
    lines: int, scored: int, rejects_by_kind: dict[str, int], labels: np.ndarray
) -> str | None:
    """Why a replay's quality metrics (ROC AUC, average precision) cannot be computed, or None.

    >>> unavailable_reason(12, 0, {"schema": 12}, np.zeros(0, dtype=bool))
    'no line was scored: 12 lines, all rejected (schema: 12)'
    >>> unavailable_reason(5, 5, {}, np.zeros(0, dtype=bool))
    'no labels: none of the 5 scored events carries is_fraud, quality metrics unavailable'
    """
    if scored == 0:
        if lines == 0:
            return "no line was scored: the file has no transactions (no non-blank line)"
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(rejects_by_kind.items()))
        return f"no line was scored: {lines} line{'s' if lines != 1 else ''}, all rejected ({kinds})"
    if labels.size == 0:
        return (
            f"no labels: none of the {scored} scored events carries is_fraud,"
            " quality metrics unavailable"
        )
    frauds = int(labels.sum())
    if frauds == 0 or frauds == labels.size:
        which = "no fraud" if frauds == 0 else "only frauds"
        return (
            f"labels of one class only ({labels.size} labelled, {which}):"
            " ROC AUC and average precision need both"
        )
    return None


def _num(v: float) -> float | None:
    """JSON has no NaN: a metric that cannot be computed (one class only) is null."""
    return None if v is None or math.isnan(v) else float(v)


# -- the report ---------------------------------------------------------------------------------

PLOTS = ("roc.png", "pr.png", "score_hist.png", "rolling_ap.png")


def write_report(
    directory: Path, result: BacktestResult, cols: _Columns, scorer: Scorer
) -> list[Path]:
    """metrics.json, four PNG plots and an index.html that shows them, in ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    labels = np.frombuffer(cols.label, dtype=np.int8)
    known = labels >= 0
    y = labels[known].astype(bool)
    s = np.frombuffer(cols.score, dtype=float)[known]
    c = np.frombuffer(cols.challenger, dtype=float)[known]
    t = np.frombuffer(cols.ts, dtype=float)[known]
    has_ch = scorer.challenger is not None and c.size > 0 and not np.isnan(c).all()
    m = result.metrics
    why = m.get("metrics_unavailable_reason")
    written = [directory / "metrics.json"]
    written[0].write_bytes(orjson.dumps(m, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))

    def save(fig: Any, name: str, empty: bool = False) -> None:
        if empty and why:  # say on the plot why it shows nothing, rather than crash or mislead
            fig.axes[0].text(
                0.5, 0.5, "\n".join(_wrap(why, 48)), ha="center", va="center",
                transform=fig.axes[0].transAxes, fontsize=9, color="dimgrey",
                bbox={"facecolor": "white", "edgecolor": "lightgrey"},
            )
        fig.tight_layout()
        fig.savefig(directory / name, dpi=100)
        plt.close(fig)
        written.append(directory / name)

    series = [("champion " + scorer.champion.version, s)]
    if has_ch:
        assert scorer.challenger is not None
        series.append(("challenger " + scorer.challenger.version, c))

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, v in series:
        fpr, tpr = roc_curve(y, v)
        ax.plot(fpr, tpr, label=f"{name} (AUC {_fmt(roc_auc(y, v))})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    save(fig, "roc.png", empty=y.size == 0)

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, v in series:
        precision, recall = pr_curve(y, v)
        ax.step(
            np.r_[0.0, recall],
            np.r_[precision[:1], precision],
            where="pre",
            label=f"{name} (AP {_fmt(average_precision(y, v))})",
        )
    if y.size:
        ax.axhline(y.mean(), color="grey", linestyle=":", linewidth=1, label="fraud rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize=8)
    save(fig, "pr.png", empty=y.size == 0)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    unlabelled = np.frombuffer(cols.score, dtype=float)[~known]
    classes = [("genuine", s[~y], None), ("fraud", s[y], None), ("unlabelled", unlabelled, "grey")]
    for name, v, color in classes:
        if v.size:  # an empty class has no density (and nothing to draw on a log scale)
            ax.hist(
                v, bins=50, range=(0.0, 1.0), alpha=0.6 if color is None else 0.4, density=True,
                color=color, label=f"{name} ({v.size})",
            )
    ax.axvline(
        scorer.settings.review_threshold,
        color="orange",
        linestyle="--",
        linewidth=1,
        label="review",
    )
    ax.axvline(
        scorer.settings.decline_threshold, color="red", linestyle="--", linewidth=1, label="decline"
    )
    ax.set(xlabel="champion score", ylabel="density", title="Scores by class")
    if len(cols.score):
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    save(fig, "score_hist.png", empty=len(cols.score) == 0)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, v in series:
        mid, aps = rolling_average_precision(t, y, v)
        ax.plot((mid * 1000).astype("datetime64[ms]"), aps, marker=".", label=name)
    ax.set(
        xlabel="event time",
        ylabel="average precision",
        title="Average precision over event time",
        ylim=(0, 1),
    )
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    save(fig, "rolling_ap.png", empty=y.size == 0)

    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in m.items()
        if k != "counters"
    )
    imgs = "".join(f'<figure><img src="{p}" alt="{p}"></figure>' for p in PLOTS)
    index = directory / "index.html"
    index.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>stream-scorer backtest</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
        "figure{display:inline-block;margin:0 1em 1em 0}</style></head><body>"
        "<h1>Backtest</h1>"
        + (f"<p><strong>Metrics unavailable:</strong> {html.escape(why)}</p>" if why else "")
        + f"<table>{rows}</table>{imgs}"
        "<p>Details, including the pending-store counts, are in "
        "<a href='metrics.json'>metrics.json</a>.</p>"
        "</body></html>",
        encoding="utf-8",
    )
    written.append(index)
    return written


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width) or [text]


def _fmt(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.3f}"


# -- entry points (the CLI's backtest and score-file) -------------------------------------------


def decoder_of(settings: Settings) -> Decoder:
    """The replay's decoder: the worker's rules (:meth:`Decoder.from_settings`: size, earliest
    event time, required signals); the replay itself lifts the wall-clock skew rule."""
    return Decoder.from_settings(settings)


def checkpoint_key(settings: Settings) -> bytes:
    """The checkpoint signing key, or a :class:`ConfigError` that says how to set it."""
    return settings.checkpoint.key_bytes()


def backtest(
    input_path: str | os.PathLike[str],
    scores_out: str | os.PathLike[str],
    settings: Settings | None = None,
    *,
    label_delay_s: float = 0.0,
    report_dir: str | os.PathLike[str] | None = None,
    rejects_path: str | os.PathLike[str] | None = None,
    checkpoint_out: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    feature_engine_factory: Callable[[], FeatureEngineLike] = default_feature_engine,
) -> BacktestResult:
    """Replay ``input_path`` with fresh models that learn as they go; optionally save them.

    The checkpoint key is checked before the replay, so a missing key fails fast. The checkpoint
    also holds the feature engine's state at the end of the file (when the engine can snapshot),
    so that ``score-file`` on a later file starts from the same card and merchant histories.
    """
    settings = settings or load_settings()
    key = checkpoint_key(settings) if checkpoint_out is not None else None
    scorer = Scorer(scorer_settings(settings, label_delay_s), feature_engine_factory)
    result = replay(
        input_path,
        scores_out,
        scorer,
        learn=True,
        rejects_path=rejects_path,
        report_dir=report_dir,
        decoder=decoder_of(settings),
        progress=progress,
    )
    # A replay that scored nothing learned nothing: writing its models would replace a checkpoint
    # that may exist at ``checkpoint_out`` by untrained ones, so it writes none.
    if checkpoint_out is not None and key is not None and result.scored > 0:
        snapshot = getattr(scorer.partition(0).engine, "snapshot", None)
        result.checkpoint_generation = checkpoint.save(
            checkpoint_out,
            scorer.champion,
            scorer.challenger,
            key,
            meta={"source": "backtest", "input": os.fspath(input_path), "scored": result.scored},
            features=snapshot() if snapshot is not None else None,
        )
    return result


def score_file(
    input_path: str | os.PathLike[str],
    checkpoint_path: str | os.PathLike[str],
    scores_out: str | os.PathLike[str],
    settings: Settings | None = None,
    *,
    rejects_path: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    fresh_features: bool = False,
    label_delay_s: float = 0.0,
    use_labels: bool = True,
    feature_engine_factory: Callable[[], FeatureEngineLike] = default_feature_engine,
) -> BacktestResult:
    """Score ``input_path`` with the models of a verified checkpoint, learning nothing.

    The models stay frozen; the feature engine still folds each event in (features are history)
    and, unless ``use_labels`` is off, hears each inline label ``label_delay_s`` after its event,
    as the live engine hears the labels topic (its merchant risk features need them). It starts
    from the checkpoint's feature state when there is one, unless ``fresh_features``: from empty
    state, early events look like first purchases at unknown merchants.
    """
    settings = settings or load_settings()
    ckpt = checkpoint.load(checkpoint_path, checkpoint_key(settings))
    scorer = scorer_from_checkpoint(
        ckpt, scorer_settings(settings, label_delay_s), feature_engine_factory, frozen=True
    )
    if ckpt.features is not None and not fresh_features:
        state = scorer.partition(0)
        restore = getattr(type(state.engine), "restore", None)
        if restore is not None:
            try:
                state.engine = restore(ckpt.features)
            except (StreamScorerError, ValueError) as exc:
                raise CheckpointError(
                    f"{checkpoint_path}: its feature state does not fit this feature engine "
                    f"({exc}); score with --fresh-features to start from empty state"
                ) from exc
    return replay(
        input_path,
        scores_out,
        scorer,
        learn=use_labels,
        rejects_path=rejects_path,
        report_dir=report_dir,
        decoder=decoder_of(settings),
        progress=progress,
    )
