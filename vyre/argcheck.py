"""Type, range and finiteness checks of public arguments, raising vyre's typed errors.

Each check returns the value in the type the caller computes with, or raises
:class:`InvalidTypeError` (wrong type: a float or str where a count is needed, a bool, None)
or :class:`InvalidValueError` (right type, value out of range, NaN or infinite).
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any

from vyre.errors import InvalidTypeError, InvalidValueError

__all__ = ["count", "seconds", "timeout"]


def count(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``: an int or numpy integer, never a bool, float or str."""
    if isinstance(value, bool):
        raise InvalidTypeError(f"{name}={value!r} is a bool, not a count",
                               f"pass an int between {lo} and {hi}")
    try:
        n = operator.index(value)
    except TypeError:
        raise InvalidTypeError(f"{name}={value!r} is not an integer ({type(value).__name__})",
                               f"pass an int between {lo} and {hi}") from None
    if not lo <= n <= hi:
        raise InvalidValueError(f"{name}={n} is out of range",
                                f"pass an int between {lo} and {hi}")
    return n


def _real(name: str, value: Any, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{name}={value!r} is not a number of seconds "
                               f"({type(value).__name__})", fix)
    t = float(value)
    if math.isnan(t):
        raise InvalidValueError(f"{name} is NaN", fix)
    return t


def seconds(name: str, value: Any) -> float:
    """A positive, finite number of seconds (a limit that must eventually fire)."""
    fix = f"pass {name} as a positive, finite number of seconds (e.g. 5.0)"
    t = _real(name, value, fix)
    if not 0 < t < math.inf:
        raise InvalidValueError(f"{name}={t!r} is not positive and finite", fix)
    return t


def timeout(name: str, value: Any) -> float | None:
    """A wait's limit: None or inf for none, 0 or less to poll once; NaN is refused (it means
    the same in the facade and in :mod:`vyre.wire`)."""
    if value is None:
        return None
    return _real(name, value, f"pass {name} as seconds (0 polls once) or None for no limit")
