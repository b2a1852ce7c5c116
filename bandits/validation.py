"""Input checks that raise before any compute starts, naming the field at fault."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any


class BanditConfigError(ValueError):
    """Bad user input: the message names the field and what is allowed.

    An error about one named input carries it as data: `field` (for example
    "alpha") and `problem` (the rest of the message, "must be ..."), so that a
    caller that knows where the value came from reports it there with `at`
    ("agents[0].hyperparameters.alpha must be ...") without parsing the text.
    """

    def __init__(
        self, message: str, *, field: str | None = None, problem: str | None = None
    ):
        super().__init__(message)
        self.field = field
        self.problem = problem

    @classmethod
    def about(cls, field: str, problem: str) -> BanditConfigError:
        """The error "`field` `problem`", e.g. about("alpha", "must be > 0")."""
        return cls(f"{field} {problem}", field=field, problem=problem)

    def at(self, path: str, suffix: str = "") -> BanditConfigError:
        """The same problem reported for the field at `path` (plus `suffix`).

        An error that names no field keeps its text behind "`path`: ".
        """
        if self.problem is None:
            return BanditConfigError(f"{path}: {self}{suffix}")
        return BanditConfigError(
            f"{path} {self.problem}{suffix}", field=path, problem=self.problem + suffix
        )


def _integer(field: str, value: Any, what: str) -> int:
    """`value` as an int if it is an integer (Python or NumPy, not bool), else raises.

    A float is refused even when whole (5.0): sizes and counts are integers, and
    a float there is almost always a mistake upstream.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BanditConfigError.about(
            field, f"must be {what}, got {value!r} ({type(value).__name__})"
        )
    return int(value)


def positive_int(field: str, value: Any) -> int:
    """Returns `value` as an int if it is an integer > 0, else raises."""
    value = _integer(field, value, "a positive integer")
    if value <= 0:
        raise BanditConfigError.about(field, f"must be a positive integer, got {value}")
    return value


def non_negative_int(field: str, value: Any) -> int:
    """Returns `value` as an int if it is an integer >= 0, else raises."""
    value = _integer(field, value, "an integer >= 0")
    if value < 0:
        raise BanditConfigError.about(field, f"must be an integer >= 0, got {value}")
    return value


def real(
    field: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Checks that a finite number lies in an interval; returns it as float.

    Strings are not numbers ("1.0" and "inf" are refused), nor are NaN and the
    infinities: every real-valued setting in the project means a finite value.
    Traced JAX values pass through unchecked (their value is unknown at trace time).
    """
    if _is_tracer(value):
        return value
    if isinstance(value, bool | str | bytes) or not isinstance(value, int | float):
        try:
            if isinstance(value, bool | str | bytes):
                raise TypeError
            value = float(value)  # numpy / 0-d jax scalars
        except (TypeError, ValueError):
            raise BanditConfigError.about(
                field, f"must be a number, got {value!r} ({type(value).__name__})"
            ) from None
    value = float(value)
    if math.isnan(value):
        raise BanditConfigError.about(field, "must be a number, got NaN")
    if math.isinf(value):
        raise BanditConfigError.about(field, f"must be a finite number, got {value}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise BanditConfigError.about(
            field, f"must be in {left}{low}, {high}{right}, got {value!r}"
        )
    return value


def choice(field: str, value: Any, allowed: Iterable[str]) -> str:
    """Checks that `value` is one of `allowed` (listed in the error)."""
    allowed = list(allowed)
    if value not in allowed:
        raise BanditConfigError.about(
            field, f"must be one of {', '.join(map(repr, allowed))}; got {value!r}"
        )
    return value


def _is_tracer(value: Any) -> bool:
    import jax

    return isinstance(value, jax.core.Tracer)
