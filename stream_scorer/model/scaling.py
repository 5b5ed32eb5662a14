"""River's StandardScaler, learned in one tight pass, with each feature's standard deviation kept.

The statistics are learned in a :data:`.kernels.Scaler`: with the C loops, arrays indexed by a
position per feature, found for the engine's fixed feature order without hashing a name. River's
own scaler (``counts``, ``means``, ``vars``) is brought up to date when read (:attr:`Scaling.scaler`),
so River's ``transform_one`` and a pipeline's ``predict_proba_one`` keep working and checkpoints
keep their format. :meth:`Scaling.learn` does what ``StandardScaler.learn_one`` then
``transform_one`` do, with the same arithmetic in the same order (so the same floats), in one loop
that also returns the scaled values; the standard deviation of each feature is kept up to date
there, so that scoring does not take a square root per feature per event.

Champion and challenger logistic regressions that started together see the same features in the
same order, so their scalers stay equal: they can share one :class:`Scaling` and learn it once per
event (see :meth:`stream_scorer.model.logistic.OnlineLogit.share_scaling`).

>>> s = Scaling()
>>> s.learn({"a": 1.0}), s.learn({"a": 3.0})
([0.0], [1.0])
>>> s.scaler.transform_one({"a": 3.0}) == {"a": 1.0}, s.std["a"]
(True, 1.0)
"""

from __future__ import annotations

import copy
from typing import Any

from river import preprocessing

from stream_scorer.model import kernels


class Scaling:
    """A River ``StandardScaler`` (no window, with std) whose statistics are learned in
    :data:`.kernels.Scaler` (arrays by feature position when the C loops are built).

    River's scaler lags behind until read: :attr:`scaler` brings it up to date first, as do
    :meth:`copy`, :meth:`same_state` and copying or pickling a ``Scaling``. After setting its
    state from outside, call :meth:`resync`.
    """

    def __init__(self, scaler: preprocessing.StandardScaler | None = None) -> None:
        self._scaler = scaler if scaler is not None else preprocessing.StandardScaler()
        if self._scaler.window_size is not None or not self._scaler.with_std:
            raise ValueError("Scaling supports a StandardScaler without window and with std only")
        self.owners = 1
        """How many models use this scaling; one that learns alone first takes its own copy."""
        self.state: Any = None
        """The :data:`.kernels.Scaler` that learns; replaced by :meth:`resync`."""
        self.resync()

    @property
    def scaler(self) -> preprocessing.StandardScaler:
        """River's scaler, brought up to date with what was learned."""
        self.sync()
        return self._scaler

    @property
    def std(self) -> dict[str, float | None]:
        """The kept standard deviation of each feature of the scaler (not per event: a copy)."""
        self.sync()
        return {k: self.state.std_of(k) for k in self._scaler.vars}

    def sync(self) -> None:
        """Write the statistics learned since the last sync into River's scaler."""
        st = self.state
        if st is not None and st.pending:
            sc = self._scaler
            st.sync(sc.counts, sc.means, sc.vars)

    def resync(self) -> None:
        """Take up River's scaler again (after its state was set from outside, for example by a
        checkpoint or by River's own ``learn_one``); what was learned before is kept."""
        self.sync()
        sc = self._scaler
        self.state = kernels.Scaler(sc.counts, sc.means, sc.vars)

    def copy(self) -> Scaling:
        """An independent copy (its own scaler state), owned by one model."""
        return Scaling(copy.deepcopy(self.scaler))

    def same_state(self, other: Scaling) -> bool:
        """Whether the two scalers hold equal statistics (and so would scale alike from now on)."""
        a, b = self.scaler, other.scaler
        return a.counts == b.counts and a.means == b.means and a.vars == b.vars

    def learn(self, x: dict[str, float]) -> list[float]:
        """Learn ``x`` as ``StandardScaler.learn_one`` does; return ``x`` scaled as
        ``transform_one`` then would, as a list in the order of ``x``.

        A feature without variance scales to 0, as in River.
        """
        out: list[float] = self.state.learn(x)
        return out

    def transform(self, x: dict[str, float]) -> list[float | None]:
        """``x`` scaled as ``transform_one`` would, as a list in the order of ``x``, with ``None``
        where a feature has no variance (River's 0, told apart from a value at its mean, so that
        scoring can skip it as :meth:`OnlineLogit.score` does). Reads only."""
        out: list[float | None] = self.state.transform(x)
        return out

    def __getstate__(self) -> dict[str, Any]:
        self.sync()
        d = dict(self.__dict__)
        d["state"] = None  # rebuilt from River's scaler: C state neither copies nor pickles
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        self.resync()
