"""Argument checks of the ingest API: a refused argument raises before anything is allocated,
as :class:`~vyre.InvalidTypeError` or :class:`~vyre.InvalidValueError` with a fix."""
from __future__ import annotations

import math
import numbers
from typing import Any

from vyre.errors import InvalidTypeError, InvalidValueError

__all__ = ["check_int", "check_timeout"]


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """``value`` as an int in ``lo..hi``; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{name} must be an integer, not {type(value).__name__} "
                               f"({value!r})", f"pass {name} as an int, e.g. {name}={lo}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        span = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise InvalidValueError(f"{name}={v} is out of range", f"use {name} {span}")
    return v


def check_timeout(name: str, value: Any) -> float | None:
    """``None`` (no limit) or a positive, finite number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{name} must be a number of seconds or None, not "
                               f"{type(value).__name__} ({value!r})",
                               f"pass {name} as a float (seconds) or None for no limit")
    v = float(value)
    if math.isnan(v) or v <= 0 or math.isinf(v):
        raise InvalidValueError(f"{name}={v} is not a positive, finite number of seconds",
                                f"use {name} > 0, or None for no limit")
    return v
