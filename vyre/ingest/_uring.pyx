# cython: language_level=3
"""io_uring for vyre's streaming ingest, on raw system calls (csrc/uring.c; no liburing).

:class:`Ring` is one io_uring instance: setup, registered files and buffers, raw SQE
queueing (READ, READ_FIXED, NOP) and reaping. :class:`ReadQueue` is the read engine the
stream uses: whole reads identified by a tag, completions matched by ``user_data`` (never by
arrival order), short reads continued, ``EINTR``/``EAGAIN`` resubmitted, end of file reported.
Waiting in ``io_uring_enter`` releases the GIL. Errors are :class:`vyre.IoUringError` with
``.syscall``, ``.errno`` and a fix.

The module also re-exports the atomic helpers of :mod:`vyre._wire` that the host IO service
uses on the mapped IO queue (:func:`atomic_load_u32`, :func:`atomic_store_u32`,
:func:`atomic_cas_u32`).

One module of some 670 lines on purpose: ``Ring`` and ``ReadQueue`` share its buffer pinning
(``_pin``), timeout conversion (``_timeout_ns``) and error conversion (``_raise``), which a
second extension would have to repeat; about a fifth of it is property getters over the C
structs.
"""
from cpython.buffer cimport (PyBUF_ANY_CONTIGUOUS, PyBUF_SIMPLE, PyBUF_WRITABLE,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EBUSY, EINTR, ETIME
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

from vyre.includes.uring cimport *

import errno as _errno
import os as _os
import weakref as _weakref

from vyre.errors import IoUringError

# kernel IORING_FEAT_* bits we report (values of <linux/io_uring.h>)
cdef extern from *:
    """
    #if defined(__linux__) && __has_include(<linux/io_uring.h>)
    #include <linux/io_uring.h>
    #define VYRE_FEAT_SINGLE_MMAP IORING_FEAT_SINGLE_MMAP
    #define VYRE_FEAT_NODROP IORING_FEAT_NODROP
    #define VYRE_FEAT_EXT_ARG IORING_FEAT_EXT_ARG
    #else
    #define VYRE_FEAT_SINGLE_MMAP 0
    #define VYRE_FEAT_NODROP 0
    #define VYRE_FEAT_EXT_ARG 0
    #endif
    """
    unsigned VYRE_FEAT_SINGLE_MMAP
    unsigned VYRE_FEAT_NODROP
    unsigned VYRE_FEAT_EXT_ARG

#: the wire constants (vyre._wire's one table, read from csrc/vyre_abi.h), kept under this
#: name for callers of the extension; new code reads vyre.protocol
from vyre._wire import ABI

FEAT_SINGLE_MMAP = VYRE_FEAT_SINGLE_MMAP
FEAT_NODROP = VYRE_FEAT_NODROP
FEAT_EXT_ARG = VYRE_FEAT_EXT_ARG


# ---------------------------------------------------------------------------------------------
# errors

_FIXES = {
    ("io_uring_setup", _errno.ENOSYS):
        "this kernel has no io_uring (Linux 5.1+ needed); run with VYRE_INGEST=fallback "
        "(or leave VYRE_INGEST unset so the preadv fallback is chosen automatically)",
    ("io_uring_setup", _errno.EPERM):
        "io_uring is refused by sysctl kernel.io_uring_disabled or a seccomp profile (common "
        "in containers); allow it (sysctl -w kernel.io_uring_disabled=0, or add io_uring_setup/"
        "enter/register to the seccomp allow list) or run with VYRE_INGEST=fallback",
    ("io_uring_setup", _errno.EACCES):
        "io_uring is restricted to a group here (kernel.io_uring_group); add the user to it or "
        "run with VYRE_INGEST=fallback",
    ("io_uring_setup", _errno.EINVAL):
        "entries must be 1..32768 and cq_entries (when given) at least entries, at most 65536",
    ("io_uring_setup", _errno.ENOMEM):
        "the ring could not be allocated: lower the queue depth or raise the memlock limit",
    ("io_uring_setup", _errno.EMFILE):
        "too many open files: close some or raise the limit (ulimit -n)",
    ("io_uring_register(BUFFERS)", _errno.ENOMEM):
        "pinning the staging memory exceeds RLIMIT_MEMLOCK: raise it (ulimit -l / "
        "LimitMEMLOCK=) or use smaller chunks; plain READ works without registration",
    ("io_uring_register(BUFFERS)", _errno.EFAULT):
        "register page-aligned anonymous memory (vyre.ingest.staging.StagingRing), not file-backed "
        "or huge-page mappings",
    ("io_uring_register(BUFFERS)", _errno.EOPNOTSUPP):
        "register anonymous memory (vyre.ingest.staging.StagingRing), not file-backed mappings",
}

_GENERIC_FIXES = {
    _errno.EBADF: "pass an open file descriptor (or a registered file index with fixed_file=True)",
    _errno.EFAULT: "the destination must lie inside the registered buffer it names "
                   "(or pass fixed_buffer=-1)",
    _errno.EOVERFLOW: "the completion queue overflowed: reap completions before submitting "
                      "more, or create the ring with a larger cq_entries",
    _errno.EPROTO: "a completion matched no request in flight: do not share a Ring between "
                   "ReadQueues or reap it directly while a ReadQueue uses it",
    _errno.EISDIR: "pass a regular file, not a directory",
    _errno.EIO: "the device reported an IO error: check the disk (dmesg)",
    _errno.EINVAL: "check the arguments (file opened for reading, no O_DIRECT misalignment)",
    _errno.EBUSY: "every request of the queue is in use: poll() completions first",
    _errno.ECANCELED: "the read was cancelled because the queue was closed",
    _errno.ENOSYS: "io_uring is unavailable here: run with VYRE_INGEST=fallback",
}


def _raise(str syscall, int err, str what=""):
    """Raise IoUringError for -errno / errno ``err`` from ``syscall``."""
    cdef int e = -err if err < 0 else err
    fix = _FIXES.get((syscall, e)) or _GENERIC_FIXES.get(e) or \
        "see the errno above; run with VYRE_INGEST=fallback to bypass io_uring"
    name = _errno.errorcode.get(e, str(e))
    msg = f"{syscall} failed: {name} ({_os.strerror(e)})"
    if what:
        msg = f"{msg} {what}"
    raise IoUringError(msg, fix, syscall=syscall, errno=e)


def available():
    """``(True, 0)`` when io_uring can be set up here, else ``(False, errno)``."""
    cdef vyre_uring_t r
    cdef int rc
    if not vyre_uring_available():
        return (False, _errno.ENOSYS)
    rc = vyre_uring_setup(&r, 2, 0, 0, 0)
    if rc < 0:
        return (False, -rc)
    vyre_uring_close(&r)
    return (True, 0)


cdef class _Pin:
    """Holds a buffer export (so the memory cannot be freed or resized) and its address."""
    cdef Py_buffer view
    cdef bint held

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)
            self.held = False

    cdef uint8_t *ptr(self):
        return <uint8_t *>self.view.buf


cdef _Pin _pin(object buf, bint writable):
    cdef _Pin p = _Pin.__new__(_Pin)
    flags = PyBUF_ANY_CONTIGUOUS | (PyBUF_WRITABLE if writable else PyBUF_SIMPLE)
    PyObject_GetBuffer(buf, &p.view, flags)
    p.held = True
    return p


from vyre.errors import InvalidTypeError, InvalidValueError

# longest finite wait in nanoseconds; a longer one (or inf) waits without a limit, since a
# float that large does not convert to int64 (the conversion is undefined behaviour in C)
cdef double _MAX_TIMEOUT_NS = 4.0e18


cdef int64_t _timeout_ns(object timeout) except? -2:
    """Seconds (None or inf: no limit; negative: do not wait) as int64 ns; NaN is refused."""
    if timeout is None:
        return -1
    if isinstance(timeout, (str, bytes)) or isinstance(timeout, bool):
        raise InvalidTypeError(f"timeout must be a number of seconds or None, not "
                               f"{type(timeout).__name__}", "pass a float, or None for no limit")
    try:
        t = float(timeout)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"timeout must be a number of seconds or None, not "
                               f"{type(timeout).__name__}",
                               "pass a float, or None for no limit") from None
    if t != t:
        raise InvalidValueError("timeout is NaN", "pass a number of seconds, or None for no limit")
    if t <= 0:
        return 0
    if t * 1e9 >= _MAX_TIMEOUT_NS:
        return -1
    return <int64_t>(t * 1e9)


# ---------------------------------------------------------------------------------------------

cdef class Ring:
    """One io_uring instance.

    ``Ring(entries=64, cq_entries=0, sqpoll=False, sq_thread_idle_ms=100, async_reads=False)``:
    ``entries`` SQEs (the kernel rounds up to a power of two), ``cq_entries`` CQEs (0: the
    kernel default of twice the SQ), ``sqpoll`` a kernel thread polls the SQ (no syscall per
    submit), ``async_reads`` every read SQE carries IOSQE_ASYNC: page-cache reads then run on
    io-wq worker threads, so the reads in flight copy in parallel instead of one after
    another in the submitting thread.

    The raw methods (:meth:`queue_read`, :meth:`queue_nop`, :meth:`submit`, :meth:`wait`,
    :meth:`reap`) expose single SQEs and CQEs; a :class:`ReadQueue` built on the ring does
    whole reads. Do not mix both on one ring while a ReadQueue has reads in flight.
    """
    cdef vyre_uring_t r
    cdef list _bufs          # _Pin of each registered buffer
    cdef dict _raw_pins      # user_data -> _Pin of raw queue_read destinations
    cdef object _reader_ref  # weakref to the ReadQueue using this ring (no cycle: the
                             # queue holds the ring, so it is always freed first)
    cdef object __weakref__

    def __cinit__(self, unsigned entries=64, unsigned cq_entries=0, bint sqpoll=False,
                  unsigned sq_thread_idle_ms=100, bint async_reads=False):
        memset(&self.r, 0, sizeof(self.r))
        self.r.fd = -1
        self._bufs = []
        self._raw_pins = {}
        self._reader_ref = None
        cdef unsigned flags = (VYRE_URING_SQPOLL if sqpoll else 0) | \
            (VYRE_URING_ASYNC_READS if async_reads else 0)
        cdef int rc = vyre_uring_setup(&self.r, entries, cq_entries, flags, sq_thread_idle_ms)
        if rc < 0:
            _raise("io_uring_setup", rc, f"(entries={entries}, cq_entries={cq_entries}, "
                   f"sqpoll={bool(sqpoll)})")

    def __dealloc__(self):
        vyre_uring_close(&self.r)

    def close(self):
        """Unregister, unmap and close the ring. Safe to call twice. Close its ReadQueue first."""
        reader = self._reader_ref() if self._reader_ref is not None else None
        if reader is not None:
            reader.close()
        vyre_uring_close(&self.r)
        self._bufs = []
        self._raw_pins = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    cdef _check(self):
        if self.r.fd < 0:
            raise IoUringError("the ring is closed", "create a new vyre.ingest._uring.Ring",
                               syscall="io_uring_enter", errno=_errno.EBADF)

    @property
    def closed(self):
        return self.r.fd < 0

    @property
    def fd(self):
        """The ring's file descriptor (-1 once closed)."""
        return self.r.fd

    @property
    def sq_entries(self):
        return self.r.sq_entries

    @property
    def cq_entries(self):
        return self.r.cq_entries

    @property
    def features(self):
        """IORING_FEAT_* bits reported by the kernel."""
        return self.r.features

    @property
    def single_mmap(self):
        """True when SQ and CQ rings share one mapping (IORING_FEAT_SINGLE_MMAP)."""
        return self.r.fd >= 0 and self.r.sq_map == self.r.cq_map

    @property
    def sqpoll(self):
        return bool(self.r.setup_flags & 2)  # IORING_SETUP_SQPOLL

    @property
    def async_reads(self):
        """True when read SQEs carry IOSQE_ASYNC (asked for, and the kernel has it)."""
        return bool(self.r.async_reads)

    @property
    def fixed_files(self):
        """Size of the registered file table (0: none)."""
        return self.r.nfiles

    @property
    def fixed_buffers(self):
        """Number of registered buffers (0: none)."""
        return self.r.nbufs

    @property
    def enters(self):
        """io_uring_enter calls made so far."""
        return self.r.enters

    @property
    def wakeups(self):
        """SQPOLL thread wake-ups requested so far."""
        return self.r.wakeups

    @property
    def sq_space(self):
        return vyre_uring_sq_space(&self.r)

    @property
    def cq_ready(self):
        return vyre_uring_cq_ready(&self.r)

    @property
    def overflowed(self):
        """True when the kernel reports a CQ overflow (IORING_SQ_CQ_OVERFLOW / cq overflow)."""
        return bool(vyre_uring_overflowed(&self.r))

    # ---- registration ----
    def register_files(self, fds):
        """Register a file table; ``-1`` entries are empty slots (fill with :meth:`update_files`)."""
        self._check()
        cdef int n = len(fds)
        cdef int *arr = <int *>calloc(max(n, 1), sizeof(int))
        cdef int rc
        if arr == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                arr[i] = int(fds[i])
            rc = vyre_uring_register_files(&self.r, arr, n)
        finally:
            free(arr)
        if rc < 0:
            _raise("io_uring_register(FILES)", rc)

    def update_files(self, unsigned offset, fds):
        """Replace registered file slots ``offset..`` with ``fds`` (``-1`` clears a slot)."""
        self._check()
        cdef int n = len(fds)
        cdef int *arr = <int *>calloc(max(n, 1), sizeof(int))
        cdef int rc
        if arr == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                arr[i] = int(fds[i])
            rc = vyre_uring_update_files(&self.r, offset, arr, n)
        finally:
            free(arr)
        if rc < 0:
            _raise("io_uring_register(FILES_UPDATE)", rc)

    def unregister_files(self):
        self._check()
        cdef int rc = vyre_uring_unregister_files(&self.r)
        if rc < 0:
            _raise("io_uring_register(UNREGISTER_FILES)", rc)

    def register_buffers(self, buffers):
        """Register writable buffers for READ_FIXED (index = position in ``buffers``).

        The buffers stay exported (cannot be freed or resized) until
        :meth:`unregister_buffers` or :meth:`close`. Raises IoUringError on refusal (e.g.
        ENOMEM over RLIMIT_MEMLOCK); callers then use plain READ.
        """
        self._check()
        cdef int n = len(buffers)
        cdef void **addrs = <void **>calloc(max(n, 1), sizeof(void *))
        cdef size_t *lens = <size_t *>calloc(max(n, 1), sizeof(size_t))
        cdef _Pin p
        cdef int rc
        if addrs == NULL or lens == NULL:
            free(addrs)
            free(lens)
            raise MemoryError()
        pins = []
        try:
            for i in range(n):
                p = _pin(buffers[i], True)
                pins.append(p)
                addrs[i] = p.view.buf
                lens[i] = <size_t>p.view.len
            rc = vyre_uring_register_buffers(&self.r, addrs, lens, n)
        finally:
            free(addrs)
            free(lens)
        if rc < 0:
            _raise("io_uring_register(BUFFERS)", rc)
        self._bufs = pins

    def unregister_buffers(self):
        self._check()
        cdef int rc = vyre_uring_unregister_buffers(&self.r)
        if rc < 0:
            _raise("io_uring_register(UNREGISTER_BUFFERS)", rc)
        self._bufs = []

    # ---- raw SQE / CQE access ----
    def queue_nop(self, uint64_t user_data):
        """Queue one NOP SQE (not yet submitted). Raises IoUringError(EBUSY) when the SQ is full."""
        self._check()
        cdef int rc = vyre_uring_queue_nop(&self.r, user_data)
        if rc < 0:
            _raise("io_uring_enter", rc, "(queue NOP)")

    def queue_read(self, int fd, buf, uint64_t offset, uint64_t user_data, *,
                   int fixed_buffer=-1, bint fixed_file=False):
        """Queue one READ (or READ_FIXED) SQE of ``len(buf)`` bytes at ``offset``.

        Raw: a short read is reported as is (see :class:`ReadQueue` for whole reads). The
        destination stays exported until its CQE is reaped.
        """
        self._check()
        cdef _Pin p = _pin(buf, True)
        cdef int rc
        if p.view.len > 0xFFFFFFFF:
            raise IoUringError("a single read is limited to 4 GiB", "split the read",
                               syscall="io_uring_enter", errno=_errno.EINVAL)
        rc = vyre_uring_queue_read(&self.r, fd, fixed_file, p.view.buf, <uint32_t>p.view.len,
                                   offset, fixed_buffer, user_data)
        if rc < 0:
            _raise("io_uring_enter", rc, "(queue READ)")
        self._raw_pins[user_data] = p

    def submit(self):
        """Hand queued SQEs to the kernel; returns how many it took."""
        self._check()
        cdef int rc
        while True:
            with nogil:
                rc = vyre_uring_submit(&self.r)
            if rc == -EINTR:
                PyErr_CheckSignals()
                continue
            break
        if rc < 0:
            _raise("io_uring_enter", rc, "(submit)")
        return rc

    def wait(self, unsigned nr=1, timeout=None):
        """Block (GIL released) until ``nr`` CQEs are ready. Returns False on timeout."""
        self._check()
        cdef int64_t t = _timeout_ns(timeout)
        cdef int rc
        while True:
            with nogil:
                rc = vyre_uring_wait(&self.r, nr, t)
            if rc == -EINTR:
                PyErr_CheckSignals()
                continue
            break
        if rc == -ETIME:
            return False
        if rc < 0:
            _raise("io_uring_enter", rc, "(wait)")
        return True

    def reap(self, unsigned max=1024):
        """Return up to ``max`` ready CQEs as ``(user_data, res, flags)`` and release them.

        Raises IoUringError(EOVERFLOW) when the kernel reports a CQ overflow.
        """
        self._check()
        cdef vyre_cqe_t *out = <vyre_cqe_t *>calloc(max if max else 1, sizeof(vyre_cqe_t))
        cdef int rc, i
        if out == NULL:
            raise MemoryError()
        try:
            rc = vyre_uring_reap(&self.r, out, max)
            if rc < 0:
                _raise("io_uring_enter", rc, "(reap: CQ overflow)")
            res = []
            for i in range(rc):
                res.append((out[i].user_data, out[i].res, out[i].flags))
                self._raw_pins.pop(out[i].user_data, None)
            return res
        finally:
            free(out)


# ---------------------------------------------------------------------------------------------

cdef class ReadQueue:
    """Whole reads over one :class:`Ring`.

    ``ReadQueue(ring, capacity)``: at most ``capacity`` reads at once (``capacity <
    ring.cq_entries``, so the CQ can never overflow). :meth:`read` queues a read of the whole
    destination; :meth:`poll` returns finished reads as ``(tag, nbytes, errno, eof)``:
    ``nbytes == len(dest)`` unless the file ended first (``eof`` True) or it failed
    (``errno`` != 0). The destination stays exported until its read is returned by poll.
    """
    cdef vyre_rq_t q
    cdef Ring ring
    cdef list _pins
    cdef vyre_rq_done_t *_out
    cdef bint _busy
    cdef bint _closed
    cdef object __weakref__

    def __cinit__(self, Ring ring not None, unsigned capacity):
        memset(&self.q, 0, sizeof(self.q))
        self._closed = True
        ring._check()
        if ring._reader_ref is not None and ring._reader_ref() is not None:
            raise IoUringError("this ring already has a ReadQueue",
                               "create one Ring per ReadQueue", syscall="io_uring_enter",
                               errno=_errno.EBUSY)
        cdef int rc = vyre_rq_init(&self.q, &ring.r, capacity)
        if rc < 0:
            _raise("io_uring_enter", rc,
                   f"(ReadQueue capacity {capacity} must be 1..{ring.cq_entries - 1}, below "
                   f"the CQ size {ring.cq_entries})")
        self._out = <vyre_rq_done_t *>calloc(capacity, sizeof(vyre_rq_done_t))
        if self._out == NULL:
            vyre_rq_free(&self.q)
            raise MemoryError()
        self.ring = ring
        self._pins = [None] * capacity
        self._closed = False
        ring._reader_ref = _weakref.ref(self)

    def __dealloc__(self):
        if not self._closed:
            # buffers may still be written by the kernel: cancel and wait, as close() does,
            # with the GIL released so other threads run meanwhile
            with nogil:
                vyre_rq_cancel_all(&self.q, 5000000000)
        vyre_rq_free(&self.q)
        free(self._out)
        self._out = NULL

    cdef _enter(self):
        if self._closed:
            raise IoUringError("the ReadQueue is closed", "create a new ReadQueue",
                               syscall="io_uring_enter", errno=_errno.EBADF)
        if self._busy:
            raise IoUringError("the ReadQueue is used from two threads at once",
                               "use one ReadQueue per thread", syscall="io_uring_enter",
                               errno=_errno.EBUSY)
        self._busy = True

    @property
    def capacity(self):
        return self.q.cap

    @property
    def free(self):
        """Requests that can be queued now."""
        return self.q.nfree

    @property
    def busy(self):
        """Requests queued and not yet handed back by poll."""
        return self.q.cap - self.q.nfree

    @property
    def in_flight(self):
        """Requests with an SQE in the kernel right now."""
        return self.q.inflight

    @property
    def stats(self):
        """Counters: ``short_reads`` continued, ``retries`` (EINTR/EAGAIN), ``sqes``, ``cqes``."""
        return {"short_reads": self.q.n_short, "retries": self.q.n_retry,
                "sqes": self.q.n_sqes, "cqes": self.q.n_cqes,
                "enters": self.ring.r.enters}

    def read(self, int fd, buf, uint64_t offset, uint64_t tag, *, int fixed_buffer=-1,
             bint fixed_file=False):
        """Queue a read of ``len(buf)`` bytes of ``fd`` at ``offset`` into ``buf``.

        ``fixed_buffer``: index of a registered buffer containing ``buf`` (READ_FIXED), -1 for
        plain READ. ``fixed_file``: ``fd`` is an index of the registered file table.
        Submitted by the next :meth:`submit` or :meth:`poll`.
        """
        self._enter()
        cdef _Pin p
        cdef int rc
        try:
            p = _pin(buf, True)
            if p.view.len > 0xFFFFFFFF:
                raise IoUringError("a single read is limited to 4 GiB", "split the read",
                                   syscall="io_uring_enter", errno=_errno.EINVAL)
            rc = vyre_rq_read(&self.q, fd, fixed_file, p.view.buf, <uint32_t>p.view.len,
                              offset, fixed_buffer, tag)
            if rc < 0:
                _raise("io_uring_enter", rc, "(queue read)")
            self._pins[rc] = p
        finally:
            self._busy = False

    def nop(self, uint64_t tag):
        """Queue a NOP request (tests and latency probes); finishes with 0 bytes."""
        self._enter()
        try:
            rc = vyre_rq_nop(&self.q, tag)
            if rc < 0:
                _raise("io_uring_enter", rc, "(queue NOP)")
        finally:
            self._busy = False

    def submit(self):
        """Hand queued reads to the kernel without waiting."""
        self._enter()
        cdef int rc
        try:
            with nogil:
                rc = vyre_rq_submit(&self.q)
            if rc < 0:
                _raise("io_uring_enter", rc, "(submit)")
        finally:
            self._busy = False

    def poll(self, unsigned min_done=1, timeout=None):
        """Submit, then wait (GIL released) until ``min_done`` reads finished or none is left.

        Returns a list of ``(tag, nbytes, errno, eof)`` in completion order; an empty list on
        timeout. ``min_done=0`` never blocks.
        """
        cdef int64_t t = _timeout_ns(timeout)  # refused before the queue is entered
        cdef int rc, i
        self._enter()
        try:
            while True:
                with nogil:
                    rc = vyre_rq_poll(&self.q, min_done, t, self._out, self.q.cap)
                if rc == -EINTR:
                    PyErr_CheckSignals()
                    continue
                break
            if rc == -ETIME:
                return []
            if rc < 0:
                _raise("io_uring_enter", rc, "(poll)")
            res = []
            for i in range(rc):
                d = self._out[i]
                res.append((d.tag, d.bytes, -d.err, bool(d.eof)))
                self._pins[d.index] = None
            return res
        finally:
            self._busy = False

    def close(self, timeout=5.0):
        """Cancel reads still in flight and wait for them, then release the buffers.

        Raises IoUringError(ETIME) if the kernel did not give them back in ``timeout`` s (the
        buffers then stay exported, so they cannot be unmapped under a running read).
        """
        if self._closed:
            return
        cdef int rc
        cdef int64_t t = _timeout_ns(timeout)  # refused before the queue is entered
        self._enter()
        try:
            with nogil:
                rc = vyre_rq_cancel_all(&self.q, t)
            if rc < 0:
                _raise("io_uring_enter", rc, "(cancel in-flight reads on close)")
            self._closed = True
            self._pins = [None] * self.q.cap
            self.ring._reader_ref = None
        finally:
            self._busy = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# atomics on u32 words of a writable buffer (the mapped IO queue): one implementation, in
# vyre._wire, re-exported for the IO service
from vyre._wire import atomic_cas_u32, atomic_load_u32, atomic_store_u32
