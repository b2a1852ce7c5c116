"""Small type and key checks for parsed TOML tables, raising `BanditConfigError`
with the field path (used by `experiments.config`)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

from bandits.validation import BanditConfigError


def table(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BanditConfigError(f"{path} must be a table, got {type_name(value)}")
    return value


def check_keys(
    table: Mapping[str, Any],
    allowed: Sequence[str],
    where: str,
    required: Sequence[str] = (),
) -> None:
    for key in table:
        if key not in allowed:
            raise BanditConfigError(
                f"unknown key {key!r} in {where}; allowed: {', '.join(allowed)}"
            )
    for key in required:
        if key not in table:
            raise BanditConfigError(f"missing key {key!r} in {where}")


def check_type(path: str, value: Any, kind: type, description: str) -> None:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BanditConfigError(f"{path} must be {description}, got {type_name(value)}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_value(path: str, value: Any, default: Any) -> None:
    """Checks a parameter value's TOML type against its default's type."""
    if isinstance(value, dict):
        raise BanditConfigError(f"{path} must be a single value, got a table")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                raise BanditConfigError(
                    f"{path}[{i}] must be a number, string or boolean, got "
                    f"{type_name(item)}"
                )
    elif not isinstance(value, bool | int | float | str):
        raise BanditConfigError(
            f"{path} must be a number, string or boolean, got {type_name(value)}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise BanditConfigError(f"{path} must be a finite number, got {value}")
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        check_type(path, value, bool, "a boolean (true or false)")
    elif isinstance(default, int):
        check_type(path, value, int, "an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BanditConfigError(f"{path} must be a number, got {type_name(value)}")
    elif isinstance(default, str):
        check_type(path, value, str, "a string")
    elif isinstance(default, tuple | list):
        check_type(path, value, list, "an array")


def type_name(value: Any) -> str:
    names = {dict: "table", list: "array", bool: "bool", str: "str", int: "int"}
    return names.get(type(value), type(value).__name__)


def positive_option(text: str) -> int:
    """An argparse `type` for a count on a study's command line (`--seeds 8`):
    a positive integer, else argparse's one-line usage error (exit status 2)
    before anything runs, rather than 0 read as "not given"."""
    return _int_option(text, 1, "a positive integer")


def seed_option(text: str) -> int:
    """An argparse `type` for a seed: an integer >= 0."""
    return _int_option(text, 0, "an integer >= 0")


def _int_option(text: str, low: int, what: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value
