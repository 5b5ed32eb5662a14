"""The settings reference as a Markdown table, generated from :class:`~stream_scorer.config.Settings`
so the README's table cannot drift from the code (a test compares them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from stream_scorer.config import ENV_PREFIX, Settings


def _show(value: Any) -> str:
    if hasattr(value, "get_secret_value"):
        return "none" if not value else "(secret)"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return f"`{value}`"


def rows(
    model: type[BaseModel] = Settings, defaults: BaseModel | None = None, prefix: str = ENV_PREFIX
) -> list[tuple[str, str, str]]:
    """(env var, default, description) for every leaf setting, nested ones with ``__``.

    Defaults are read from a default instance, so a nested model's own defaults (a challenger
    built by a factory, say) show as they are used.
    """
    out = []
    for name, info in model.model_fields.items():
        env = prefix + name.upper()
        ann = info.annotation
        value = getattr(defaults, name) if defaults is not None else _field_default(info)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += rows(ann, value, env + "__")
            continue
        desc = (info.description or "").replace("\n", " ").replace("|", "\\|")
        shown = "(computed)" if name in COMPUTED else _show(value)
        out.append((env, shown, desc))
    return out


COMPUTED = {"instance_id": "hostname-pid"}


def _field_default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return info.default


def markdown_table() -> str:
    lines = ["| env var | default | meaning |", "|---|---|---|"]
    lines += [f"| `{env}` | {default} | {desc} |" for env, default, desc in rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
