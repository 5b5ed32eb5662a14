"""Quantile sketches of the binned features over every worker's transactions.

The bin indicators (``<feature>_ge_q<level>``, :mod:`stream_scorer.features.bins`) read a feature
against the edges of a streaming quantile sketch. Kept per partition, each sketch sees a 1/N
share of the stream: it warms up N times slower and its top edges (the 99.9th percentile) are
estimated from N times fewer values, so the same amount reads differently in different
partitions. Here the sketches are global, like the merchants: each transaction's binned values
ride with its by-merchant record; each stage partition counts them (:class:`SketchSet`) and
publishes its counts with its merchants; every worker sums the partitions' counts
(:class:`MergedSketches`: the sketch is a histogram, so the sum is the sketch of the whole stream)
and recomputes the edges each ``bin_refresh_every`` values, as a single sketch would.
"""

from __future__ import annotations

import struct
import zlib

from stream_scorer.exceptions import StateError
from stream_scorer.features.bins import QuantileBins
from stream_scorer.features.settings import FeatureSettings

_HEADER = struct.Struct("<cBI")
_LEN = struct.Struct("<I")
FORMAT_VERSION = 1


def _sketches(s: FeatureSettings) -> tuple[QuantileBins, ...]:
    return tuple(
        QuantileBins(f, tuple(s.bin_levels), refresh_every=s.bin_refresh_every, min_count=s.bin_min_count)
        for f in s.bins
    )


def _fingerprint(bins: tuple[QuantileBins, ...]) -> int:
    return zlib.crc32("|".join(b.describe() for b in bins).encode())


class SketchSet:
    """The sketches of one stage partition (or of a whole stream)."""

    def __init__(self, settings: FeatureSettings) -> None:
        self.bins = _sketches(settings)
        self.fingerprint = _fingerprint(self.bins)

    def fold(self, values: tuple[float, ...]) -> bool:
        """Count one transaction's binned values; False (nothing counted) if they do not fit."""
        if len(values) != len(self.bins):
            return False
        for b, v in zip(self.bins, values, strict=True):
            b.update(v)
        return True

    def dumps(self) -> bytes:
        parts = [_HEADER.pack(b"G", FORMAT_VERSION, self.fingerprint)]
        for b in self.bins:
            data = b.dumps()
            parts.append(_LEN.pack(len(data)))
            parts.append(data)
        return b"".join(parts)

    def loads(self, value: bytes) -> None:
        """Take :meth:`dumps`'s bytes; StateError when they were written with other settings."""
        try:
            kind, version, fingerprint = _HEADER.unpack_from(value, 0)
            if kind != b"G" or version != FORMAT_VERSION or fingerprint != self.fingerprint:
                raise StateError("quantile sketches written with other bin settings or format")
            at = _HEADER.size
            for b in self.bins:
                (n,) = _LEN.unpack_from(value, at)
                at += _LEN.size
                b.loads(value[at : at + n])
                at += n
        except (struct.error, ValueError) as exc:
            raise StateError(f"quantile sketches are corrupt: {exc}") from exc
        if at != len(value):
            raise StateError("quantile sketches have trailing bytes")


class MergedSketches:
    """A worker's sketches: the sum of every stage partition's, with edges of their own."""

    def __init__(self, settings: FeatureSettings) -> None:
        self.settings = settings
        self.bins = _sketches(settings)
        self._parts: dict[int, SketchSet] = {}
        self._refreshed_at = 0
        self.refused = 0

    def apply(self, partition: int, value: bytes | None) -> None:
        """Partition ``partition``'s sketches as now published (counts replace its previous ones)."""
        new = SketchSet(self.settings)
        if value is not None:
            try:
                new.loads(value)
            except StateError:
                self.refused += 1
                return
        old = self._parts.get(partition)
        for j, merged in enumerate(self.bins):
            cells = merged.cells
            if old is not None:
                for c, k in old.bins[j].cells.items():
                    left = cells[c] - k
                    if left:
                        cells[c] = left
                    else:
                        del cells[c]
                merged.n -= old.bins[j].n
            for c, k in new.bins[j].cells.items():
                cells[c] = cells.get(c, 0) + k
            merged.n += new.bins[j].n
        self._parts[partition] = new
        n = self.bins[0].n if self.bins else 0
        if n - self._refreshed_at >= self.settings.bin_refresh_every and n >= self.settings.bin_min_count:
            for b in self.bins:
                b.refresh()
            self._refreshed_at = n

