"""Helpers shared by the suites: imports that may be missing, backend choice, op arrays."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np


class Unavailable(Exception):
    """The whole suite cannot run here; ``str(exc)`` is the reason recorded in the report."""


def need(module: str) -> Any:
    """Import ``module`` or raise :class:`Unavailable` naming it."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a compiled extension failing to load
        raise Unavailable(f"{module} not importable ({type(exc).__name__}: {exc})") from exc


def facade() -> SimpleNamespace:
    """``Megakernel``, ``Opcode``, ``OBSERVABLE_BASE``, ``CTRL_DONE_COUNT`` and ``U32_MAX``,
    or :class:`Unavailable`."""
    protocol = need("vyre.protocol")
    mk_mod = need("vyre.megakernel")
    return SimpleNamespace(Megakernel=mk_mod.Megakernel, Opcode=protocol.Opcode,
                           OBSERVABLE_BASE=protocol.OBSERVABLE_BASE,
                           CTRL_DONE_COUNT=protocol.CTRL_DONE_COUNT,
                           U32_MAX=protocol.U32_MAX)


def resolve_backend(ctx, *, allowed: tuple[str, ...] = ("cpu", "cuda")) -> str:
    """The backend this run measures (``--backend``, ``auto`` resolved the way the facade
    resolves it), or :class:`Unavailable` when it cannot run here or the suite does not
    apply to it."""
    cache = ctx.cache.setdefault("backend", {})
    if "name" not in cache:
        backends = need("vyre.backends")
        ok, why = backends.cuda_available()
        wanted = ctx.options.backend
        if wanted == "auto":
            cache["name"], cache["why"] = ("cuda" if ok else "cpu"), None
        elif wanted == "cuda" and not ok:
            cache["name"], cache["why"] = None, f"the CUDA backend is unavailable: {why}"
        else:
            cache["name"], cache["why"] = wanted, None
    if cache["name"] is None:
        raise Unavailable(cache["why"])
    if cache["name"] not in allowed:
        raise Unavailable(f"this suite does not apply to the {cache['name']} backend "
                          f"(it measures {' or '.join(allowed)})")
    return cache["name"]


def atomic_add_ops(n: int, opcode: int, obs_word: int, add: int = 1,
                   spread: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` ATOMIC_ADD ops, op i doing ``control[obs_word + i % spread] += add``, as
    (opcodes u32 (n,), args u32 (n, 2)). A spread keeps the ops off one word: same-word
    system atomics serialize (docs/bench.md)."""
    opcodes = np.full(n, opcode, dtype=np.uint32)
    args = np.empty((n, 2), dtype=np.uint32)
    args[:, 0] = add
    args[:, 1] = obs_word + np.arange(n, dtype=np.uint32) % spread
    return opcodes, args


def word_total(words: np.ndarray) -> int:
    """Sum of u32 counters as a Python int (each word wraps on its own)."""
    return int(np.asarray(words, dtype=np.uint64).sum())


def expect_u32(actual: int, expected: int) -> tuple[bool, str]:
    """Verification of a u32 counter that wraps modulo 2**32."""
    want = expected % (1 << 32)
    return int(actual) == want, f"observable is {int(actual)}, expected {want}"


def megakernel(fx: SimpleNamespace, backend: str, **kwargs: Any):
    """A started ``Megakernel`` (use it in a ``with`` block), or :class:`Unavailable` when the
    backend cannot be built or started here (missing extension, no device, bad option)."""
    from vyre.errors import BackendError

    try:
        mk = fx.Megakernel(backend=backend, **kwargs)
    except (ImportError, BackendError) as exc:
        raise Unavailable(f"cannot create the {backend} megakernel: {exc}") from exc
    try:
        mk.start()
    except BackendError as exc:
        mk.shutdown(drain=False)
        raise Unavailable(f"cannot start the {backend} megakernel: {exc}") from exc
    return mk


def next_pow2(n: int) -> int:
    """Smallest power of two >= n."""
    return 1 << max(0, (int(n) - 1).bit_length())


def submit_many_sampler(mk: Any, opcodes: np.ndarray, args: np.ndarray,
                        state: dict) -> Callable[[], float]:
    """A sample: one ``submit_many`` of the ops + ``drain``, in ns; ``state["done"]`` counts
    the ops submitted so far (what the verification expects the observables to hold)."""
    now = time.perf_counter_ns

    def many() -> float:
        t0 = now()
        mk.submit_many(opcodes, args)
        mk.drain()
        t1 = now()
        state["done"] += len(opcodes)
        return t1 - t0

    return many


@contextmanager
def megakernel_session(fx: SimpleNamespace, backend: str, state: dict,
                       **kwargs: Any) -> Iterator[Any]:
    """A started megakernel for one round of a paired measurement (a fresh one per round:
    the GPU baselines run between rounds on an idle device). ``state["mk"]`` is the
    megakernel and ``state["done"]`` the ops its samples submitted (reset per round), which
    the suite's verification reads inside the session."""
    mk = megakernel(fx, backend, **kwargs)
    with mk:
        state["mk"], state["done"] = mk, 0
        try:
            yield mk
        finally:
            state["mk"] = None
