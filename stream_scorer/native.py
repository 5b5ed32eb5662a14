"""Where the hot path's C extensions are loaded, and the one switch that turns them off.

Each extension has a Python twin that is its reference (and the tests' oracle); a package uses the
C one when it is built, unless ``STREAM_SCORER_PURE_PYTHON=1`` (not a setting: it picks code, not
behaviour, so it is read once at import).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

PURE_PYTHON_ENV = "STREAM_SCORER_PURE_PYTHON"


def load(module: str) -> Any | None:
    """The C extension ``module`` (e.g. ``stream_scorer.model._kernels``), or ``None`` when it is
    not built or :data:`PURE_PYTHON_ENV` asks for the Python loops."""
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
