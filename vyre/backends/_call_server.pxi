# The CPU backend's call server (csrc/cpu_call.c), included into _cpu_impl.pxi so that it runs
# the same interpreter build as the workers of that module (test hooks included).
cdef extern from "cpu_call.h" nogil:
    ctypedef struct vyre_call_server:
        pass
    vyre_call_server *vyre_call_server_new(const vyre_ctx_t *ctx, const vyre_cpu_pool *pool,
                                           uint32_t *area, uint32_t lanes)
    int vyre_call_server_start(vyre_call_server *s)
    int vyre_call_server_stop(vyre_call_server *s, double timeout_s)
    int vyre_call_server_free(vyre_call_server *s)
    void vyre_call_server_kick(vyre_call_server *s)
    int vyre_call_server_running(const vyre_call_server *s)
    uint64_t vyre_call_server_answered(const vyre_call_server *s)


cdef class CallServer:
    """The thread that answers calls on ``area`` (``lanes * 32`` uint32 words, 16-byte
    aligned) over the buffers of ``workers`` (a :class:`CpuWorkers`). See docs/call.md."""

    cdef vyre_call_server *_s
    cdef uint32_t[::1] _area
    cdef object _keep

    def __cinit__(self, CpuWorkers workers, area, uint32_t lanes):
        self._s = NULL
        self._area = area
        self._keep = (workers, area)
        if self._area.shape[0] < <Py_ssize_t>lanes * VYRE_CALL_LANE_WORDS:
            raise BackendError(f"the call area has {self._area.shape[0]} words for {lanes} lanes",
                               f"allocate lanes * {VYRE_CALL_LANE_WORDS} uint32 words")
        self._s = vyre_call_server_new(&workers._ctx, workers._pool, &self._area[0], lanes)
        if self._s == NULL:
            raise BackendError(f"cannot create a call server ({lanes} lanes)",
                               f"use 1..{VYRE_CALL_MAX_LANES} lanes over a 16-byte aligned "
                               "area")

    def __dealloc__(self):
        if self._s == NULL:
            return
        if vyre_call_server_running(self._s):
            with nogil:
                vyre_call_server_stop(self._s, 2.0)
        if vyre_call_server_free(self._s) != 0:
            _LEAKED.append(self._keep)  # the thread still runs over these buffers
        self._s = NULL

    def start(self):
        """Start the thread (a no-op while it runs)."""
        if vyre_call_server_running(self._s):
            return
        if vyre_call_server_start(self._s) != 0:
            raise BackendError("cannot create the call server thread",
                               "raise the process's thread limit")

    def stop(self, double timeout):
        """Ask the thread to leave and join it; False when it is still running (an op that
        does not finish: call again)."""
        cdef int rc
        with nogil:
            rc = vyre_call_server_stop(self._s, timeout)
        return rc == 0

    @property
    def running(self):
        return bool(vyre_call_server_running(self._s))

    @property
    def answered(self):
        """Calls answered since creation."""
        return vyre_call_server_answered(self._s)

    @property
    def kick_address(self):
        """(function, argument) addresses of the wake-up a CallPort calls after a request."""
        return (<uintptr_t>&vyre_call_server_kick, <uintptr_t>self._s)
