"""Which megakernels of the process are on the GPU, and the pause that takes them all off.

Measured (bench/gpu/blocking_calls.py, docs/decisions.md): while any kernel runs,
cuMemHostAlloc, cuMemFreeHost, cuMemHostUnregister, cuMemAlloc (when it needs new memory),
cuMemFree and module loading wait for the device to go idle, which a persistent kernel never
does. So vyre makes every such call inside :meth:`Residency.quiesced`, which pauses every
resident megakernel of the process (each drains what was published) and relaunches them
afterwards; releases that come from garbage collection, where pausing is not safe, are parked
until no kernel is resident.

A backend here is anything with ``_pause()`` and ``_resume()`` (the CUDA backend; fakes in the
tests): :data:`RESIDENCY` holds no CUDA state itself.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Residency:
    """The process-wide pause/relaunch machine (one instance: :data:`RESIDENCY`).

    ``lock`` (re-entrant) is held for every change of residency: a pause, a relaunch, a launch,
    a stop. ``resident`` maps ``id(backend)`` to the backends whose kernel may be on the GPU;
    ``paused`` lists those the outermost :meth:`quiesced` block took off (relaunched at its
    end); ``deferred`` holds allocations waiting to be freed with no kernel resident.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.depth = 0
        self.resident: dict[int, Any] = {}
        self.paused: list[Any] = []
        self.deferred: list[Any] = []
        #: backends whose relaunch a submitter could not make (the lock was held): served at
        #: the end of the quiesced() block that held it
        self.wanted: list[Any] = []
        #: called with each allocation freed from :attr:`deferred` (the host registry forgets it)
        self.on_freed: Callable[[Any], None] = lambda alloc: None

    @contextlib.contextmanager
    def quiesced(self) -> Iterator[None]:
        """Pause every resident megakernel of the process for the block (re-entrant).

        Inside, allocating, freeing or loading modules cannot wait on a persistent kernel. Work
        published meanwhile waits and runs after the block; a megakernel started inside the
        block is launched at its end.
        """
        with self.lock:
            if self.depth == 0:
                try:
                    for backend in list(self.resident.values()):
                        backend._pause()
                        self.paused.append(backend)
                except BaseException:
                    self.resume_paused()
                    raise
            self.depth += 1
            try:
                if not self.resident:
                    self.free_deferred()
                yield
            finally:
                self.depth -= 1
                if self.depth == 0:
                    try:
                        self.resume_paused()
                    finally:
                        self.serve_wanted()

    def park(self, backend: Any) -> bool:
        """Called under :attr:`lock` before a launch: inside a :meth:`quiesced` block the
        launch must wait for its end, so the backend joins the paused list (True)."""
        if self.depth:
            self.paused.append(backend)
            return True
        return False

    def resume_paused(self) -> None:
        """Relaunch what the block paused; every backend gets its attempt, the first error
        is raised after."""
        errors: list[BaseException] = []
        while self.paused:
            try:
                self.paused.pop(0)._resume()
            except Exception as err:
                errors.append(err)
        if errors:
            raise errors[0]

    def serve_wanted(self) -> None:
        """(Lock held, outside any block.) Relaunch what submitters left to the lock holder."""
        while self.wanted:
            backend = self.wanted.pop(0)
            with contextlib.suppress(Exception):  # its next call reports a failure (check())
                backend._come_back_locked()

    def left(self, backend: Any) -> None:
        """``backend``'s kernel is off the GPU (stopped, paused, faulted, or gone idle)."""
        self.resident.pop(id(backend), None)
        if not self.resident and not self.depth:
            self.release([])

    def release(self, allocations: list[Any], *, now: bool = False) -> None:
        """Free device allocations and unregister host memory safely.

        ``now``: pause the resident megakernels and free at once (explicit close). Otherwise
        (from a finalizer) free only if no kernel is resident, else park until none is.
        """
        self.deferred.extend(allocations)
        if now:
            with self.quiesced():
                pass  # quiesced() frees the deferred list with no kernel resident
        elif self.lock.acquire(blocking=False):
            try:  # checked under the lock: a launch registers as resident before it launches
                if not self.resident:
                    self.free_deferred()
            finally:
                self.lock.release()

    def free_deferred(self) -> None:
        while self.deferred:
            alloc = self.deferred.pop()
            self.on_freed(alloc)
            with contextlib.suppress(Exception):  # already freed, or its context is gone
                alloc.free()


RESIDENCY = Residency()


def quiesced() -> contextlib.AbstractContextManager[None]:
    """:meth:`Residency.quiesced` of the process (``Megakernel.paused()`` for users)."""
    return RESIDENCY.quiesced()
