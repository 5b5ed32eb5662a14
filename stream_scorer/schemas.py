"""JSON Schema files of the event contract, generated from the pydantic models in `events`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from stream_scorer.events import CONTRACT

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
BASE_ID = "https://stream-scorer.dev/schemas/"


def schema_of(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the contract's model ``name``."""
    schema = CONTRACT[name].model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{BASE_ID}{name}.json", **schema}


def render(name: str) -> bytes:
    """The schema as the bytes stored in ``schemas/``: sorted keys, two-space indent."""
    return orjson.dumps(schema_of(name), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write one ``<name>.json`` per model; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in CONTRACT:
        path = directory / f"{name}.json"
        path.write_bytes(render(name))
        paths.append(path)
    return paths


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names whose file in ``directory`` is missing or differs from its model."""
    out = []
    for name in CONTRACT:
        path = directory / f"{name}.json"
        if not path.exists() or path.read_bytes() != render(name):
            out.append(name)
    return out
