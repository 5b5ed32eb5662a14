"""The progress bar of the long commands (backtest, score-file, backfill): tqdm on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(total: int, desc: str, unit: str = "B", show: bool | None = None) -> Iterator[Any]:
    """A tqdm bar on stderr when ``show`` (``None``: when stderr is a terminal); else ``None``.

    Callers update it in steps of many events, never once per event.
    """
    if not (sys.stderr.isatty() if show is None else show):
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit=unit, unit_scale=True, desc=desc, file=sys.stderr) as bar:
        yield bar
