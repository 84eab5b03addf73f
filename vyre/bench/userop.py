"""``vyre-bench --op MODULE:NAME``: find the user's op and the suite that measures it.

``MODULE:NAME`` names a registered op (``vyre.ops.Op``) the way entry points do: the module is
imported (it may register the op as a side effect) and ``NAME`` is looked up in it, dotted
attributes allowed (``mypkg.ops:table.scatter``). The op is handed to the user-op suite
(:data:`SUITE`) through ``ctx.cache["user_op"]``; that suite measures it through the
megakernel (``submit_many`` + ``drain``, ``call``) against the same C source launched as one
CUDA kernel per op and as a CUDA graph, and sets ``ctx.cache[MEASURED]``. A suite that ran
without doing so leaves an error in the run (:func:`unmeasured_error`).
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from vyre.bench import suites

#: the suite that measures a user op
SUITE = "op"
#: what that suite sets in ``ctx.cache`` once it has measured the ``--op`` op; a run whose
#: suite did not is an error (the op must not be silently ignored)
MEASURED = "user_op_measured"


class UserOpError(ValueError):
    """``--op`` cannot be honoured; the message says why and what to do."""


def _load_ops_api() -> Any:
    try:
        return importlib.import_module("vyre.ops")
    except ImportError as exc:
        raise UserOpError(
            "--op needs user-defined ops (the vyre.ops package), which this installation does "
            f"not have ({exc}). Fix: install a vyre with vyre.ops, or run without --op") from None


def resolve(spec: str) -> tuple[Any, str]:
    """The op ``spec`` names and the suite to run for it, or :class:`UserOpError`."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise UserOpError(f"--op {spec!r} is not MODULE:NAME. Fix: name the module that "
                          "defines the op and the op's variable, e.g. --op mypkg.ops:scatter")
    ops_api = _load_ops_api()
    if SUITE not in suites.SUITES:
        raise UserOpError(
            f"--op needs the {SUITE!r} benchmark suite (vyre/bench/suites/{SUITE}.py), which "
            "this installation does not have. Fix: install a vyre whose vyre-bench lists "
            f"{SUITE!r} in `vyre-bench list`")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # a module next to the caller, as `python -m` finds it
    try:
        obj: Any = importlib.import_module(module)
    except Exception as exc:
        raise UserOpError(f"--op {spec!r}: cannot import {module!r} "
                          f"({type(exc).__name__}: {exc}). Fix: run from the directory that "
                          "holds the module, or install it") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserOpError(f"--op {spec!r}: {module!r} has no {attr!r}. Fix: name the "
                              "variable that holds the op (vyre.ops.Op)") from None
    op_type = getattr(ops_api, "Op", None)
    if op_type is not None and not isinstance(obj, op_type):
        raise UserOpError(f"--op {spec!r} is a {type(obj).__name__}, not a vyre.ops.Op. "
                          "Fix: point --op at the Op your module creates (vyre.ops.Op(...) or "
                          "mk.register_op(...))")
    return obj, SUITE


def unmeasured_error(cache: dict[str, Any], suite_status: str) -> str | None:
    """The error to record when ``--op`` named an op that the run did not measure."""
    if "user_op" not in cache or cache.get(MEASURED):
        return None
    if suite_status == "skipped":
        return None  # the suite's skip says why (no GPU, no nvcc)
    return (f"--op was given but the {SUITE!r} suite of this build did not measure it "
            f"(it does not read ctx.cache['user_op']). Fix: use a vyre whose {SUITE!r} suite "
            "measures --op ops, or run without --op")


def args_function(spec: str) -> Any:
    """``<NAME>_args`` beside the op in its module (``n -> (n, k)`` uint32 argument rows), or
    ``None`` (the op then gets no arguments). Call after :func:`resolve` succeeded."""
    module, _, attr = spec.partition(":")
    parent: Any = importlib.import_module(module)
    *path, last = attr.split(".")
    for part in path:
        parent = getattr(parent, part)
    fn = getattr(parent, f"{last}_args", None)
    if fn is not None and not callable(fn):
        raise UserOpError(f"--op {spec!r}: {last}_args is not callable. Fix: define "
                          f"{last}_args(n) returning an (n, k) uint32 array of argument rows")
    return fn
