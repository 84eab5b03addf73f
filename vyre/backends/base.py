"""The interface every backend implements (docs/architecture.md, "Who calls whom").

The facade, tests and benchmarks talk to this interface only, so they never branch on which
backend runs. A backend owns the memory the interpreter sees (ring, control, debug log, io
queue, buffer table) and the workers that execute slots; the facade owns what is published.
"""
from __future__ import annotations

import abc
import contextlib
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from vyre.errors import InvalidTypeError


class Backend(abc.ABC):
    """Memory and workers for one megakernel.

    Construction allocates zeroed buffers; the facade encodes the control words into
    ``control`` before :meth:`start`. All four arrays are flat ``uint32`` numpy arrays that the
    host reads and writes directly (on the CUDA backend they are mapped pinned memory).
    """

    #: short name: "cpu" or "cuda"
    name: str = "?"
    #: True where DONE_COUNT, FAULT_COUNT and METRICS may trail the slot statuses briefly
    lazy_counters: bool = False

    ring: np.ndarray
    control: np.ndarray
    debug: np.ndarray
    ioq: np.ndarray
    #: the call path (docs/call.md): ``call_lanes * 32`` uint32 words a server answers, or None
    call_area: np.ndarray | None = None
    call_lanes: int = 0
    #: (uint32 words, index): a word set while the call server is away (wake_for_call then
    #: brings it back), or None
    call_exit_word: tuple[Any, int] | None = None
    #: (function, argument) addresses a caller runs after each request, or (0, 0)
    call_kick: tuple[int, int] = (0, 0)

    @abc.abstractmethod
    def __init__(
        self,
        *,
        slot_count: int,
        observable_slots: int,
        debug_records: int,
        io_slots: int,
        workers: int | None = None,
        **options: Any,
    ) -> None: ...

    @abc.abstractmethod
    def register_buffer(self, array: Any, *, writable: bool = True) -> int:
        """Add ``array`` to the buffer table; return its handle (1..255). Handle 0 is control."""

    def alloc_buffer(self, nbytes: int, *, device: bool = False) -> Any:
        """Memory the workers can read and write, for :meth:`register_buffer`.

        The default (CPU) is a zeroed host ``uint8`` numpy array. ``device=True`` asks for
        device-local memory where the backend has any (faster for the kernel, not host-visible).
        """
        return np.zeros(nbytes, dtype=np.uint8)

    def upload(self, buffer: Any, data: np.ndarray) -> None:
        """Copy ``data`` (bytes as uint8) into a buffer from :meth:`alloc_buffer`."""
        np.copyto(np.asarray(buffer).reshape(-1)[: data.size], data.reshape(-1))

    @abc.abstractmethod
    def start(self) -> None:
        """Launch the workers (one persistent launch on the GPU)."""

    @abc.abstractmethod
    def stop(self, timeout: float) -> None:
        """Hard stop: set SHUTDOWN and wait at most ``timeout`` s for every worker to exit.

        Raises :class:`vyre.BackendError` when the workers do not exit in time.
        """

    #: how many times the workers were paused and resumed (the watchdog restarts its clocks)
    pauses: int = 0
    #: True while the workers are paused by :meth:`quiesce`
    paused: bool = False

    def quiesce(self) -> AbstractContextManager[None]:
        """A block during which no worker of any megakernel of the process runs.

        Where workers never block anything (CPU) this is a no-op. On CUDA the block pauses
        every running megakernel (each drains what was published) and relaunches them after.
        """
        return contextlib.nullcontext()

    def stream_wait(self, stream: Any, slot: int) -> bool:
        """Queue on a CUDA ``stream`` a device-side wait until ``slot``'s ticket finished.
        False where the backend cannot (the CPU): the caller waits on the host instead."""
        return False

    def after_stream(self, stream: Any, timeout: float | None) -> None:
        """Return once the work queued on a CUDA ``stream`` so far has finished."""
        sync = getattr(stream, "synchronize", None)
        if sync is None:
            raise InvalidTypeError(f"cannot wait for a {type(stream).__name__} without a GPU "
                                   "backend", "pass a stream object with synchronize() "
                                   "(CuPy, PyTorch, PyCUDA)")
        sync()

    def kick(self) -> None:  # noqa: B027 - optional hook: backends whose workers poll need none
        """Tell idle workers that slots were just published (a no-op where they poll)."""

    #: user opcodes this backend's build handles itself (test hooks), beside registered ops
    builtin_user_opcodes: frozenset[int] = frozenset()

    def load_ops(self, ops: Any, cache: Any = None) -> dict[str, Any]:
        """Make the workers run user ops ``ops`` (a sequence of :class:`vyre.ops.Op`, each with
        its opcode; every op loaded before is among them). Safe while running: nothing
        published is lost, run twice or reordered. Returns build telemetry (``source``:
        memory / disk / build, ``seconds``). Raises :class:`vyre.ops.OpBuildError`."""
        from vyre.errors import BackendError

        raise BackendError(f"the {self.name} backend cannot run user ops yet",
                           "use backend='cpu' for user ops")

    @abc.abstractmethod
    def check(self) -> None:
        """Raise :class:`vyre.BackendError` if the workers died or the kernel faulted."""

    @property
    @abc.abstractmethod
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What runs where: device name, worker / grid geometry, memory kinds."""

    def close(self) -> None:  # noqa: B027 - optional hook: nothing to release by default
        """Release memory; stops first if still running. Safe to call twice."""
