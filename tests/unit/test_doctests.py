"""The examples in the docstrings of the worker's protocol modules (and the page's data) run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "stream_scorer.dedupe",
    "stream_scorer.dead_letters",
    "stream_scorer.kafka.acks",
    "stream_scorer.kafka.offsets",
    "stream_scorer.kafka.deadline",
    "stream_scorer.state.changelog",
    "stream_scorer.kafka.lag",
    "stream_scorer.evaluation.dashboard",
    "stream_scorer.demo",
    "stream_scorer.demo_view",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
