"""A River tree model as a challenger: a Hoeffding adaptive tree or an adaptive random forest.

Trees have no plain-data form in River, so their state is River's own pickle. It is only ever
unpickled by :func:`stream_scorer.model.checkpoint.load` *after* the checkpoint's HMAC was
verified; :meth:`OnlineTree.from_verified_state` says so in its name.
"""

from __future__ import annotations

import base64
import pickle
from typing import Any

from river import forest, tree

from stream_scorer.model.settings import TreeSettings

STATE_VERSION = 1


class OnlineTree:
    """A tree classifier with the scorer's verbs: ``score`` (no reason codes), ``learn``."""

    kind = "tree"

    def __init__(self, settings: TreeSettings, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or settings.model
        if settings.model == "arf":
            self.model: Any = forest.ARFClassifier(
                n_models=settings.n_models,
                grace_period=settings.grace_period,
                delta=settings.delta,
                seed=settings.seed,
            )
        else:
            self.model = tree.HoeffdingAdaptiveTreeClassifier(
                grace_period=settings.grace_period, delta=settings.delta, seed=settings.seed
            )
        self.n_learned = 0
        self.generation = 0

    @property
    def generation(self) -> int:
        """How many checkpoints this model's line has had; part of :attr:`version`."""
        return self._generation

    @generation.setter
    def generation(self, value: int) -> None:
        self._generation = value
        self.version = f"{self.name}/{value}"

    def score(self, x: dict[str, float]) -> tuple[float, list[tuple[str, float]]]:
        """The fraud probability of ``x`` (0 before the first label); trees give no reasons."""
        p = float(self.model.predict_proba_one(x).get(True, 0.0))
        return min(max(p, 0.0), 1.0), []

    def predict_proba(self, x: dict[str, float]) -> float:
        return self.score(x)[0]

    def learn(self, x: dict[str, float], y: bool, weight: float = 1.0) -> None:
        self.model.learn_one(x, y, w=weight)
        self.n_learned += 1

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "state_version": STATE_VERSION,
            "settings": self.settings.model_dump(mode="json"),
            "name": self.name,
            "generation": self.generation,
            "n_learned": self.n_learned,
            "pickle_b64": base64.b64encode(pickle.dumps(self.model, protocol=5)).decode(),
        }

    @classmethod
    def from_verified_state(cls, state: dict[str, Any]) -> OnlineTree:
        """Rebuild from :meth:`state`. Unpickles: call ONLY on bytes whose HMAC was verified."""
        if state.get("kind") != cls.kind or state.get("state_version") != STATE_VERSION:
            raise ValueError(f"not a {cls.kind} state of version {STATE_VERSION}")
        m = cls(TreeSettings.model_validate(state["settings"]), name=str(state["name"]))
        m.model = pickle.loads(base64.b64decode(state["pickle_b64"]))
        m.generation = int(state["generation"])
        m.n_learned = int(state["n_learned"])
        return m
