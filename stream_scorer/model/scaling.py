"""River's StandardScaler, learned in one tight pass, with each feature's standard deviation kept.

The state stays in River's own scaler (``counts``, ``means``, ``vars``), so River's
``transform_one`` and a pipeline's ``predict_proba_one`` keep working and checkpoints keep their
format. :meth:`Scaling.learn` does what ``StandardScaler.learn_one`` then ``transform_one`` do, with
the same arithmetic in the same order (so the same floats), in one loop that also returns the
scaled values; the standard deviation of each feature is kept up to date there, so that scoring
does not take a square root per feature per event. The loops are :mod:`.kernels`' (in C when built).

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

from river import preprocessing

from stream_scorer.model import kernels


class Scaling:
    """A River ``StandardScaler`` (no window, with std) and the std of each feature it has seen."""

    def __init__(self, scaler: preprocessing.StandardScaler | None = None) -> None:
        self.scaler = scaler if scaler is not None else preprocessing.StandardScaler()
        if self.scaler.window_size is not None or not self.scaler.with_std:
            raise ValueError("Scaling supports a StandardScaler without window and with std only")
        self.std: dict[str, float] = {}
        self.owners = 1
        """How many models use this scaling; one that learns alone first takes its own copy."""
        self.resync()

    def resync(self) -> None:
        """Rebuild the kept std from the scaler's variances (after its state was set from outside,
        for example by a checkpoint or by River's own ``learn_one``)."""
        self.std = {k: v**0.5 for k, v in self.scaler.vars.items()}

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
        sc = self.scaler
        return kernels.scale_learn(x, sc.counts, sc.means, sc.vars, self.std)

    def transform(self, x: dict[str, float]) -> list[float | None]:
        """``x`` scaled as ``transform_one`` would, as a list in the order of ``x``, with ``None``
        where a feature has no variance (River's 0, told apart from a value at its mean, so that
        scoring can skip it as :meth:`OnlineLogit.score` does). Reads only."""
        return kernels.scale_transform(x, self.scaler.means, self.std)
