"""Fixtures of the scoring-layer tests: simulated transactions and their features."""

from __future__ import annotations

import pytest

from stream_scorer.events import Transaction
from stream_scorer.simulate import SimConfig, Simulator
from tests.unit.model.engines import ToyFeatures


@pytest.fixture(scope="session")
def transactions() -> list[Transaction]:
    """3,000 simulated transactions with inline labels (about 1.5% fraud)."""
    return [Transaction.model_validate(e) for e in Simulator(SimConfig(), seed=3).events(3_000)]


@pytest.fixture(scope="session")
def stream(transactions: list[Transaction]) -> list[tuple[dict[str, float], bool]]:
    """(features, label) pairs of :func:`transactions`."""
    f = ToyFeatures()
    return [(f.update(t), bool(t.is_fraud)) for t in transactions]
