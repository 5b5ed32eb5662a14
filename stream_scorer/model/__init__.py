"""Online models: River pipelines that predict, then learn, one event at a time. No Kafka here.

Submodules load on first use, so that reading the settings (:mod:`stream_scorer.model.settings`)
does not import River.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream_scorer.model.logistic import OnlineLogit, band_of
    from stream_scorer.model.pending import Pending, PendingStore
    from stream_scorer.model.tree import OnlineTree

_WHERE = {
    "OnlineLogit": "logistic",
    "band_of": "logistic",
    "OnlineTree": "tree",
    "Pending": "pending",
    "PendingStore": "pending",
}

__all__ = ["OnlineLogit", "OnlineTree", "Pending", "PendingStore", "band_of"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"stream_scorer.model.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
