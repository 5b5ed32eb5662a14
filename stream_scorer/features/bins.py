"""Quantile thresholds of key numerics, learned online: shapes a linear model cannot draw itself.

A logistic regression on ``log_amount`` can only say "the larger, the riskier, at one rate"; it
cannot say "above 220 is fraud" or "more than 8 purchases in a day". For each binned feature the
engine keeps a streaming quantile sketch of its values, and each event gets one indicator per
quantile level: ``1`` when the value is at or above that quantile's current edge (a thermometer
code). The model can then put a weight on "above the 99th percentile" alone.

The sketch is a log-bucketed histogram (as in DDSketch): a value ``v`` falls into the cell
``floor(g(v) / resolution)`` with ``g(v) = sign(v) log1p(|v|)``, so cells are narrow near zero and
about ``resolution`` relative width beyond. Edges are recomputed from the counts every
``refresh_every`` values, not per event, so an edge stays put between refreshes and the weights
learned on an indicator keep their meaning. Until ``min_count`` values are seen, every indicator
reads 0.

The state (counts per non-empty cell, the edges, the count since the last refresh) is plain and
deterministic: it serializes to bytes and a restored sketch continues bit for bit.

>>> b = QuantileBins("log_amount", levels=(0.5, 0.9), refresh_every=10, min_count=10)
>>> for i in range(100):
...     b.update(float(i % 10))
>>> x = {}; b.read(9.0, x); x
{'log_amount_ge_q50': 1.0, 'log_amount_ge_q90': 1.0}
>>> x = {}; b.read(2.0, x); x["log_amount_ge_q50"]
0.0
"""

from __future__ import annotations

import math
import struct
from array import array
from bisect import bisect_right

from stream_scorer.features.catalog import level_tag

_HEAD = struct.Struct("<QII")  # values seen, since last refresh, non-empty cells
_CELL = struct.Struct("<iI")


def _g(v: float) -> float:
    return math.log1p(v) if v >= 0.0 else -math.log1p(-v)


def _g_inv(u: float) -> float:
    return math.expm1(u) if u >= 0.0 else -math.expm1(-u)


class QuantileBins:
    """A streaming quantile sketch of one feature and its thermometer indicators."""

    def __init__(
        self,
        feature: str,
        levels: tuple[float, ...],
        resolution: float = 0.005,
        refresh_every: int = 1_000,
        min_count: int = 500,
    ) -> None:
        if not levels or not all(0.0 < q < 1.0 for q in levels):
            raise ValueError("quantile levels are in (0, 1)")
        self.feature = feature
        self.levels = tuple(sorted(levels))
        self.resolution = resolution
        self.refresh_every = refresh_every
        self.min_count = min_count
        self.names = tuple(f"{feature}_ge_q{level_tag(q)}" for q in self.levels)
        self._thermometer = tuple(
            {name: (1.0 if i < j else 0.0) for i, name in enumerate(self.names)}
            for j in range(len(self.names) + 1)
        )
        self.cells: dict[int, int] = {}
        self.n = 0
        self.since = 0
        self.edges: array[float] = array("d", [math.inf] * len(self.levels))

    def describe(self) -> str:
        """A string that changes whenever the sketch's meaning does (part of the fingerprint)."""
        q = ",".join(level_tag(x) for x in self.levels)
        return f"bins[{self.feature}:{q}/{self.resolution:g}/{self.refresh_every}/{self.min_count}]"

    def read(self, v: float, x: dict[str, float]) -> None:
        """Write the indicators of ``v`` against the current edges into ``x`` (reads only).

        The edges never decrease with the level, so the indicators at 1 are a prefix: its length
        is one bisection, and the indicators one prepared dict per length.
        """
        x.update(self._thermometer[bisect_right(self.edges, v)])

    def update(self, v: float) -> None:
        """Count ``v`` in the sketch; every ``refresh_every`` values, recompute the edges."""
        cell = math.floor(_g(v) / self.resolution)
        cells = self.cells
        cells[cell] = cells.get(cell, 0) + 1
        self.n += 1
        self.since += 1
        if self.since >= self.refresh_every and self.n >= self.min_count:
            self.refresh()

    def refresh(self) -> None:
        """Set each edge to the lower bound of the cell that holds its quantile."""
        self.since = 0
        n = self.n
        order = sorted(self.cells.items())
        edges = self.edges
        i, acc = 0, 0
        for j, q in enumerate(self.levels):
            target = q * n
            while i < len(order) - 1 and acc + order[i][1] <= target:
                acc += order[i][1]
                i += 1
            edges[j] = _g_inv(order[i][0] * self.resolution)

    def edge_text(self, name: str) -> str | None:
        """``"log_amount >= 5.4 (top 1%)"`` for one of this sketch's indicator names, else None."""
        try:
            j = self.names.index(name)
        except ValueError:
            return None
        q = self.levels[j]
        return f"{self.feature} >= {self.edges[j]:.4g} (top {100 * (1 - q):.3g}%)"

    # -- bytes --------------------------------------------------------------------------------

    def dumps(self) -> bytes:
        """The sketch as bytes: counts, the cells in order, the edges."""
        parts = [_HEAD.pack(self.n, self.since, len(self.cells))]
        parts += [_CELL.pack(c, k) for c, k in sorted(self.cells.items())]
        parts.append(self.edges.tobytes())
        return b"".join(parts)

    def loads(self, data: bytes | memoryview) -> None:
        """Take the state :meth:`dumps` wrote; ``ValueError`` when the bytes do not fit."""
        n, since, n_cells = _HEAD.unpack_from(data, 0)
        at = _HEAD.size
        if len(data) != at + _CELL.size * n_cells + 8 * len(self.levels):
            raise ValueError(f"quantile sketch of {self.feature!r} has the wrong size")
        cells = {}
        for _ in range(n_cells):
            c, k = _CELL.unpack_from(data, at)
            cells[c] = k
            at += _CELL.size
        edges = array("d")
        edges.frombytes(bytes(data[at:]))
        self.cells, self.n, self.since, self.edges = cells, n, since, edges

