"""Input checks that raise before any compute starts, naming the field at fault."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class BanditConfigError(ValueError):
    """Bad user input: the message names the field and what is allowed."""


def positive_int(field: str, value: Any) -> int:
    """Returns `value` as an int if it is a positive integer, else raises."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BanditConfigError(
            f"{field} must be a positive integer, got {value!r} "
            f"({type(value).__name__})"
        )
    if int(value) != value or value <= 0:
        raise BanditConfigError(f"{field} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(field: str, value: Any) -> int:
    """Returns `value` as an int if it is an integer >= 0, else raises."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BanditConfigError(
            f"{field} must be an integer >= 0, got {value!r} ({type(value).__name__})"
        )
    if int(value) != value or value < 0:
        raise BanditConfigError(f"{field} must be an integer >= 0, got {value!r}")
    return int(value)


def real(
    field: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Checks that a number lies in an interval; returns it as float.

    Traced JAX values pass through unchecked (their value is unknown at trace time).
    """
    if _is_tracer(value):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # numpy / 0-d jax scalars
        except (TypeError, ValueError):
            raise BanditConfigError(
                f"{field} must be a number, got {value!r} ({type(value).__name__})"
            ) from None
    value = float(value)
    if math.isnan(value):
        raise BanditConfigError(f"{field} must be a number, got NaN")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise BanditConfigError(
            f"{field} must be in {left}{low}, {high}{right}, got {value!r}"
        )
    return value


def choice(field: str, value: Any, allowed: Iterable[str]) -> str:
    """Checks that `value` is one of `allowed` (listed in the error)."""
    allowed = list(allowed)
    if value not in allowed:
        raise BanditConfigError(
            f"{field} must be one of {', '.join(map(repr, allowed))}; got {value!r}"
        )
    return value


def _is_tracer(value: Any) -> bool:
    import jax

    return isinstance(value, jax.core.Tracer)
