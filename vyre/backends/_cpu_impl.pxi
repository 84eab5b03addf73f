# Shared body of vyre.backends._cpu and vyre.backends._cpu_testhooks (the latter is the same
# module compiled with -DVYRE_TEST_HOOKS=1). Included, not imported: each module gets its
# own copy compiled against its own build of csrc/cpu_worker.c.
cimport cython
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t

from vyre.errors import BackendError

from vyre.includes.abi cimport *
from vyre.includes.cpu_worker cimport *
from vyre.includes.interp cimport (VYRE_TEST_OP_SPIN, VYRE_TEST_OP_STALL, vyre_buf_t,
                                    vyre_ctx_t)

from vyre.includes.op cimport VYRE_OP_ABI_VERSION, VYRE_OP_LANES

#: the wire constants (vyre._wire's one table, read from csrc/vyre_abi.h)
from vyre._wire import ABI

#: the op-author ABI this worker was compiled with (csrc/vyre_op.h)
OP_ABI = {"OP_ABI_VERSION": VYRE_OP_ABI_VERSION, "OP_LANES": VYRE_OP_LANES}

#: 1 in the test-hooks build (VYRE_TEST_OP_SPIN / VYRE_TEST_OP_STALL exist), else 0
TEST_HOOKS = bool(vyre_cpu_test_hooks())
#: user opcodes of the test-hooks build (see csrc/vyre_interp.h); meaningless otherwise
TEST_OP_SPIN = VYRE_TEST_OP_SPIN
TEST_OP_STALL = VYRE_TEST_OP_STALL
#: LOAD_MISS: backoff rounds an unclaimed io request waits before it is withdrawn (FAULT)
IO_WAIT_ROUNDS = vyre_cpu_io_wait_rounds()
#: heartbeat period of the workers, seconds
HEARTBEAT_PERIOD_S = VYRE_CPU_HEARTBEAT_NS / 1e9

# Pools whose workers did not exit when their CpuWorkers died: the memory they run over is
# listed here and given an extra reference that is never dropped, so not even the
# interpreter's shutdown frees it under a running thread.
_LEAKED = []


def keep_forever(obj):
    """Never free ``obj`` (nor what it references): memory a native thread may still use."""
    Py_INCREF(obj)
    _LEAKED.append(obj)


cdef uint32_t *_u32_ptr(uint32_t[::1] view):
    if view is None or view.shape[0] == 0:
        return NULL
    return &view[0]


@cython.no_gc_clear
cdef class CpuWorkers:
    """Native worker threads running the slot interpreter over host buffers (no GIL).

    ``ring``, ``control``, ``debug``, ``ioq``: writable C-contiguous ``uint32`` buffers
    (numpy arrays) of ``16*slots``, ``160+observables``, ``1+4*records+1`` and ``8*io_slots``
    words. ``buffers``: writable C-contiguous ``uint64`` array of shape ``(n, 2)``,
    ``n <= 256``, rows ``(address, byte length)``; row 0 is ignored (handle 0 is ``control``).
    References to all of them, and to the buffers given to :meth:`set_buffer`, are held while
    this object lives, and forever if a worker could not be stopped (a garbage collection
    never clears them: ``no_gc_clear``).
    """

    cdef vyre_cpu_pool *_pool
    cdef dict _buffer_keep
    cdef vyre_ctx_t _ctx
    cdef object _keep
    cdef uint32_t[::1] _ring
    cdef uint32_t[::1] _control
    cdef uint32_t[::1] _debug
    cdef uint32_t[::1] _ioq
    cdef uint64_t[:, ::1] _bufs
    cdef list _ops_keep

    def __cinit__(self, ring, control, debug, ioq, buffers):
        self._pool = NULL
        self._buffer_keep = {}
        self._ring = ring
        self._control = control
        self._debug = debug
        self._ioq = ioq
        self._bufs = buffers
        self._ops_keep = []
        self._keep = (ring, control, debug, ioq, buffers, self._ops_keep)
        if self._ring.shape[0] % VYRE_SLOT_WORDS or self._ring.shape[0] == 0:
            raise BackendError(f"ring has {self._ring.shape[0]} words, not a positive multiple of 16",
                               "allocate 16 * slot_count uint32 words")
        if self._control.shape[0] < VYRE_CTRL_HEADER_WORDS:
            raise BackendError(f"control has {self._control.shape[0]} words, fewer than 160",
                               "allocate 160 + observable_slots uint32 words")
        if self._debug.shape[0] < VYRE_DEBUG_HEADER_WORDS + VYRE_DEBUG_TRAILER_WORDS:
            raise BackendError("debug log shorter than its header and overflow word",
                               "allocate 1 + 4*debug_records + 1 uint32 words")
        if self._bufs.shape[1] != 2 or self._bufs.shape[0] > VYRE_MAX_BUFFERS:
            raise BackendError(f"buffer table has shape ({self._bufs.shape[0]}, {self._bufs.shape[1]})",
                               "pass a uint64 array of shape (256, 2)")
        if self._ring.shape[0] // VYRE_SLOT_WORDS > 0xFFFFFFFF or self._control.shape[0] > 0xFFFFFFFF:
            raise BackendError("buffers too large for the u32 ABI", "use fewer slots/observables")
        self._ctx.ring = &self._ring[0]
        self._ctx.control = &self._control[0]
        self._ctx.debug = &self._debug[0]
        self._ctx.ioq = _u32_ptr(self._ioq)
        self._ctx.bufs = <const vyre_buf_t *>&self._bufs[0, 0] if self._bufs.shape[0] else NULL
        self._ctx.slot_count = <uint32_t>(self._ring.shape[0] // VYRE_SLOT_WORDS)
        self._ctx.control_words = <uint32_t>self._control.shape[0]
        self._ctx.observable_slots = <uint32_t>(self._control.shape[0] - VYRE_CTRL_HEADER_WORDS)
        self._ctx.debug_records = <uint32_t>(
            (self._debug.shape[0] - VYRE_DEBUG_HEADER_WORDS - VYRE_DEBUG_TRAILER_WORDS)
            // VYRE_DEBUG_RECORD_WORDS)
        self._ctx.io_slots = <uint32_t>min(self._ioq.shape[0] // VYRE_IO_SLOT_WORDS, VYRE_IO_MAX_SLOTS)
        self._ctx.buf_count = <uint32_t>self._bufs.shape[0]
        self._pool = vyre_cpu_pool_new(&self._ctx)
        if self._pool == NULL:
            raise MemoryError("vyre: cannot allocate the CPU worker pool")

    def __dealloc__(self):
        if self._pool == NULL:
            return
        if vyre_cpu_running(self._pool):
            with nogil:
                vyre_cpu_stop(self._pool, 2.0)
        if vyre_cpu_pool_free(self._pool) != VYRE_CPU_OK:
            keep_forever((self._keep, self._buffer_keep))  # threads still run over these
        self._pool = NULL

    def start(self, int n_workers):
        """Launch ``n_workers`` (>= 1) native threads. Raises BackendError when running."""
        if n_workers < 1:
            raise BackendError(f"workers={n_workers}", "use at least one worker")
        cdef int rc
        with nogil:  # thread creation: other Python threads run meanwhile
            rc = vyre_cpu_start(self._pool, <uint32_t>n_workers)
        if rc == VYRE_CPU_ERR_RUNNING:
            raise BackendError("the CPU workers are already running (or did not stop)",
                               "stop() them first")
        if rc == VYRE_CPU_ERR_THREAD:
            raise BackendError("cannot create CPU worker threads",
                               "use fewer workers or raise the process's thread limit")
        if rc != VYRE_CPU_OK:
            raise BackendError("cannot start the CPU workers (out of memory)",
                               "use fewer workers")

    def stop(self, double timeout):
        """Hard stop: set SHUTDOWN, wake everyone, wait at most ``timeout`` s for every worker
        to exit. True when all exited (joined), False when some still run (call again)."""
        cdef int rc
        with nogil:
            rc = vyre_cpu_stop(self._pool, timeout)
        return rc == VYRE_CPU_OK

    def forget_workers_after_fork(self):
        """In a forked child: the workers are the parent's threads, absent here; mark the pool
        stopped without joining them (so nothing waits for them, at exit or anywhere)."""
        vyre_cpu_forget_workers(self._pool)

    def kick(self):
        """Wake sleeping workers after a publication (nearly free when nobody sleeps; never
        blocks, so the GIL is kept)."""
        vyre_cpu_kick(self._pool)

    @property
    def running(self):
        """True from start() until a stop() that saw every worker exit."""
        return bool(vyre_cpu_running(self._pool))

    @property
    def alive(self):
        """Worker threads that have not exited."""
        return vyre_cpu_alive(self._pool)

    @property
    def workers(self):
        """Threads of the current (or last) run."""
        return vyre_cpu_workers(self._pool)

    @property
    def progress(self):
        """MiBs scanned by long slots so far: grows while a long DFA_SCAN works."""
        return vyre_cpu_progress_count(self._pool)

    @property
    def next_ticket(self):
        """The next ticket a worker will take (ticket t polls slot t % slot_count)."""
        return vyre_cpu_next_ticket(self._pool)

    @next_ticket.setter
    def next_ticket(self, uint64_t t):
        if vyre_cpu_set_next_ticket(self._pool, t) != VYRE_CPU_OK:
            raise BackendError("cannot move the ticket counter while workers run", "stop() first")

    def stats(self):
        """{'executed': slots run, 'sleeps': futex sleeps, 'wakes': kicks that woke sleepers}"""
        cdef uint64_t out[3]
        vyre_cpu_stats(self._pool, out)
        return {"executed": out[0], "sleeps": out[1], "wakes": out[2]}

    def set_buffer(self, uint32_t index, uint64_t addr, uint64_t nbytes, keep=None):
        """Buffer-table entry ``index`` (1..n-1) = (addr, nbytes); (0, 0) clears it.

        ``keep``: the object owning that memory, referenced until the entry is replaced and
        no worker can still be using it (cleared entries keep theirs while workers run)."""
        if index == 0 or index >= self._bufs.shape[0]:
            raise BackendError(f"buffer handle {index} out of range 1..{self._bufs.shape[0] - 1}",
                               "use a handle from register_buffer()")
        vyre_cpu_set_buffer(<vyre_buf_t *>&self._bufs[0, 0], index, addr, nbytes)
        if keep is not None:
            self._buffer_keep[index] = keep
        elif not vyre_cpu_running(self._pool):
            self._buffer_keep.pop(index, None)

    def set_user_dispatch(self, uint64_t address, owner=None):
        """Run user ops through the C function at ``address`` (a ``vyre_user_dispatch`` of a
        loaded ops library, vyre/ops/cpu_build.py), or through none when ``address`` is 0.
        Safe while the workers run: slots published afterwards use the new function.
        ``owner`` (the loaded library) is kept alive as long as this object, since a worker
        may still be inside a function it replaced."""
        if owner is not None:
            self._ops_keep.append(owner)
        vyre_cpu_set_user_dispatch(self._pool, <vyre_user_dispatch_fn><uintptr_t>address)

    # ---------------------------------------------------------------- test entry points
    def execute_one(self, uint32_t slot):
        """Claim, execute and finish one PUBLISHED slot on the calling thread (no workers
        needed). Returns the slot status afterwards, or -1 when it was not PUBLISHED."""
        cdef int64_t rc
        if slot >= self._ctx.slot_count:
            raise BackendError(f"slot {slot} out of range", "use a slot below slot_count")
        with nogil:
            rc = vyre_cpu_execute_one(self._pool, slot)
        return rc

    def dfa_scan_part(self, args, uint32_t start_state, uint32_t part, uint32_t parts):
        """vyre_dfa_scan_part over this pool's buffers: ``args`` = the 12 DFA_SCAN args.
        Returns (accepts, end_state)."""
        cdef uint32_t a[12]
        cdef uint32_t acc = 0, end = 0
        cdef int i
        vals = list(args)
        if len(vals) > 12:
            raise ValueError("at most 12 args")
        for i in range(12):
            a[i] = <uint32_t>(vals[i] if i < len(vals) else 0)
        with nogil:
            vyre_cpu_dfa_scan_part(&self._ctx, a, start_state, part, parts, &acc, &end)
        return acc, end


# one implementation of the host atomics, in vyre._wire
from vyre._wire import atomic_cas_u32
include "_call_server.pxi"
