"""What the streams of one megakernel share: observable ranges, staging rings, DFA tables.

A megakernel's buffer table and observables are finite and have no "unregister": a handle,
once given, names its memory until the megakernel stops. Streams therefore lease from one
:class:`Leases` per megakernel instead of registering afresh each time:

* **observables**: a stream that was not told where to count (``obs_base=None``) gets
  ``depth`` words no other stream of the megakernel holds, from the top down, and gives them
  back on close. Ranges passed explicitly are recorded too, so the allocator steers clear of
  them, but they may overlap each other: the caller asked for that.
* **staging**: a closed stream's staging ring (and its device mirror), with its buffer-table
  handles, goes back to a pool keyed by its geometry; the next stream of that geometry takes
  it, so open/close cycles neither fill the buffer table nor grow memory.
* **DFA tables**: one registered table per live :class:`~vyre.ingest.dfa.Dfa` and megakernel,
  shared by its streams (and, once a scan asks for per-pattern counts, its id table the same
  way); when the Dfa is garbage collected, its buffers are reused (overwritten) for the next
  tables that fit.
* **match buffers**: the host-visible buffers DFA_MATCH writes counters and records into
  (vyre.ingest.match_scan), pooled by size the same way as staging rings.

A stream that closes while slots of an interrupted call still read its buffers does not give
them back (they are kept referenced, never reused).
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from vyre.errors import InvalidValueError

__all__ = ["Leases", "StagingLease", "leases_for"]


@dataclass
class StagingLease:
    """A staging ring registered with a megakernel (and its device mirror, if any)."""

    key: tuple[int, ...]
    staging: Any
    handle: int
    dev: tuple[int, Any] | None = None


class Leases:
    """The shared resources of one megakernel (see the module docstring)."""

    def __init__(self, observable_slots: int) -> None:
        self.observable_slots = observable_slots
        self._lock = threading.Lock()
        self._obs: dict[int, tuple[int, int, bool]] = {}  # token -> (base, count, explicit)
        self._next_token = 0
        self._staging: dict[tuple[int, ...], list[StagingLease]] = {}
        self._tables: dict[tuple[int, str], tuple[weakref.ref[Any], int, Any, bool]] = {}
        self._spare_tables: list[tuple[int, Any, bool]] = []   # (handle, buffer, device)
        self._kept: list[Any] = []  # resources still read by slots of an interrupted call
        # (handle, host uint8 array or device buffer), free
        self._match_bufs: list[tuple[int, Any]] = []

    # ------------------------------------------------------------------ observables
    def take_observables(self, count: int) -> tuple[int, int]:
        """Lease ``count`` observables no other lease holds: ``(token, base)``."""
        with self._lock:
            base = self._free_range(count)
            self._next_token += 1
            self._obs[self._next_token] = (base, count, False)
            return self._next_token, base

    def told_observables(self, base: int, count: int) -> int:
        """Record a range a caller chose (it may overlap other chosen ranges); a token."""
        with self._lock:
            self._next_token += 1
            self._obs[self._next_token] = (base, count, True)
            return self._next_token

    def release_observables(self, token: int) -> None:
        with self._lock:
            self._obs.pop(token, None)

    def held_observables(self) -> list[tuple[int, int]]:
        """``(base, count)`` of every range leased now."""
        with self._lock:
            return [(b, n) for b, n, _ in self._obs.values()]

    def _free_range(self, count: int) -> int:
        held = [(b, b + n) for b, n, _ in self._obs.values()]
        # first fit from the top over the gaps between held ranges
        top = self.observable_slots
        while top - count >= 0:
            clash = [e for b, e in held if b < top and top - count < e]
            if not clash:
                return top - count
            top = min(b for b, e in held if b < top and top - count < e)
        raise InvalidValueError(
            f"the megakernel has no {count} free observables for another stream: "
            f"{len(held)} stream(s) hold {held} of its {self.observable_slots}",
            "close a stream first, create the Megakernel with more observable_slots, lower "
            "depth, or pass obs_base to share counting words knowingly")

    # ------------------------------------------------------------------ staging
    def take_staging(self, key: tuple[int, ...]) -> StagingLease | None:
        with self._lock:
            pool = self._staging.get(key)
            return pool.pop() if pool else None

    def give_staging(self, lease: StagingLease) -> None:
        with self._lock:
            self._staging.setdefault(lease.key, []).append(lease)

    def keep(self, *resources: Any) -> None:
        """Never reuse ``resources`` (slots that may still run read them)."""
        with self._lock:
            self._kept.extend(resources)

    # ------------------------------------------------------------------ DFA tables
    def take_match_buffer(self, mk: Any, nbytes: int, *,
                          device: bool = False) -> tuple[int, Any]:
        """A free buffer of at least ``nbytes`` and its handle: host-visible (a uint8 array,
        zero-filled when new), or device memory with ``device=True``; hand it back with
        :meth:`give_match_buffer`."""
        with self._lock:
            best = min((i for i, (_, b) in enumerate(self._match_bufs)
                        if b.nbytes >= nbytes and isinstance(b, np.ndarray) != device),
                       key=lambda i: self._match_bufs[i][1].nbytes, default=None)
            if best is not None:
                return self._match_bufs.pop(best)
        if device:
            handle, buf = mk.alloc_buffer(max(nbytes, 64), device=True)
            return int(handle), buf
        if hasattr(mk, "alloc_buffer"):
            handle, buf = mk.alloc_buffer(max(nbytes, 64))
        else:
            buf = np.zeros(max(nbytes, 64), dtype=np.uint8)
            handle = mk.register_buffer(buf)
        return int(handle), np.asarray(buf).view(np.uint8).reshape(-1)

    def give_match_buffer(self, lease: tuple[int, Any]) -> None:
        with self._lock:
            self._match_bufs.append(lease)

    def table_handle(self, mk: Any, dfa: Any, device: bool, part: str = "table") -> int:
        """The handle of ``dfa``'s table (``part="ids"``: its id table) on ``mk``, registered
        once per live Dfa."""
        key = (id(dfa), part)
        with self._lock:
            hit = self._tables.get(key)
            if hit is not None and hit[0]() is dfa:
                return hit[1]
            table = np.ascontiguousarray(getattr(dfa, part)).view(np.uint8).reshape(-1)
            spare = next((i for i, (_, buf, dev) in enumerate(self._spare_tables)
                          if dev == device and int(getattr(buf, "nbytes", 0)) >= table.nbytes),
                         None)
        if spare is not None:
            with self._lock:
                handle, buf, _ = self._spare_tables.pop(spare)
            backend = getattr(mk, "backend", None)
            upload = getattr(backend, "upload", None)
            # the GPU reads tables through its non-coherent cache, which a persistent kernel
            # never drops: rewrite one only with the megakernels paused (a relaunch starts
            # with clean caches); a no-op on the CPU backend
            paused = getattr(mk, "paused", None)
            with paused() if callable(paused) else contextlib.nullcontext():
                if callable(upload):
                    upload(buf, table)
                else:
                    np.asarray(buf).reshape(-1)[:table.nbytes] = table
        elif hasattr(mk, "alloc_buffer"):
            handle, buf = mk.alloc_buffer(table, device=device)
        else:
            buf = np.ascontiguousarray(table)
            handle = mk.register_buffer(buf)
        handle = int(handle)

        def _dead(_: Any, key: tuple[int, str] = key, handle: int = handle,
                  buf: Any = buf) -> None:
            with self._lock:
                hit = self._tables.get(key)
                if hit is not None and hit[1] == handle:
                    del self._tables[key]
                self._spare_tables.append((handle, buf, device))

        with self._lock:
            self._tables[key] = (weakref.ref(dfa, _dead), handle, buf, device)
        return handle


_ALL: weakref.WeakKeyDictionary[Any, Leases] = weakref.WeakKeyDictionary()
_ALL_LOCK = threading.Lock()


def leases_for(mk: Any, observable_slots: int) -> Leases:
    """The :class:`Leases` of ``mk`` (created on first use, gone with ``mk``)."""
    with _ALL_LOCK:
        got = _ALL.get(mk)
        if got is None:
            got = Leases(observable_slots)
            _ALL[mk] = got
        return got
