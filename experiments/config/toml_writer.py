"""Writing the values a config can hold back as TOML text.

Only what `experiments.config` produces is supported: booleans, integers, floats,
strings, arrays of these and (inline) tables. Floats are written with `repr`, so
they parse back to the same float.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bandits.validation import BanditConfigError


def toml_value(value: Any) -> str:
    """A TOML literal for a scalar, array or (inline) table value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(items) + " }" if value else "{}"
    raise BanditConfigError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def experiment_toml(
    comment: str,
    name: str,
    env_id: str,
    env_params: Mapping[str, Any],
    run: Mapping[str, Any],
    agents: Sequence[Mapping[str, Any]],
) -> str:
    """A platform config (the layout `experiments.config.loader` reads) as TOML
    text: a `# comment` line, `name`, `[env]`, `[run]` and one `[[agents]]`
    table per entry of `agents`, keys in the order given."""
    lines = [
        f"# {comment}",
        f"name = {toml_value(name)}",
        "",
        "[env]",
        f"id = {toml_value(env_id)}",
        f"params = {toml_value(dict(env_params))}",
        "",
        "[run]",
        *(f"{toml_key(k)} = {toml_value(v)}" for k, v in run.items()),
    ]
    for agent in agents:
        lines += ["", "[[agents]]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in agent.items()]
    return "\n".join(lines) + "\n"


def toml_key(key: str) -> str:
    """A bare key where TOML allows one, else a quoted key."""
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else json.dumps(key, ensure_ascii=False)


def display_value(value: Any) -> str:
    """A short display form of a value for labels: `true`, `0.1`, `[1, 2]`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(display_value(v) for v in value) + "]"
    return str(value)
