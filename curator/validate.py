"""The one check for "an integer (or a number) but not a bool", with an optional range.

`True` is an `int` in Python, so `isinstance(x, int)` alone lets a JSON `true` through as 1; every
place that takes a count, an id or a threshold from a user asks here instead. numpy integers and
floats count as integers and numbers (values read back from arrays and Parquet files are numpy's).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from db.errors import CuratorError


def is_int(value: object) -> bool:
    """True for an integer (Python's or numpy's) that is not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for an integer or a float (Python's or numpy's) that is not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)


def check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """VALUE as an int when it is an integer (not a bool) within [LOW, HIGH] (either bound may be
    None); otherwise one CuratorError line naming NAME, the value and the range."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        raise CuratorError(f"{name}={value!r} is not {_int_range(low, high)}")
    return int(value)


def check_whole(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """As check_int, but a float with no fractional part (3.0, as a JSON number or a UI field gives
    it) is accepted too."""
    if is_number(value) and math.isfinite(value) and int(value) == value:
        return check_int(name, int(value), low, high)
    raise CuratorError(f"{name}={value!r} is not {_int_range(low, high)}")


def _int_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an integer from {low} to {high}"
    if low is not None:
        return f"an integer ≥ {low}"
    if high is not None:
        return f"an integer ≤ {high}"
    return "an integer"


__all__ = ["is_int", "is_number", "check_int", "check_whole"]
