# cython: language_level=3
"""Host side of the call path (docs/call.md): request lanes, answers, the blocking wait.

A :class:`CallPort` owns a call area (``lanes * 32`` uint32 words, 16-byte aligned) that a
server (the GPU's call warp, or the CPU backend's call thread) answers. A call takes a free lane
(an atomic bit mask: concurrent threads never share a lane, and never take a lock), writes the
request, spins on the answer with the GIL released (the ring waits' spin -> yield -> sleep
policy, csrc/vyre_wait.h) and gives the lane back. A call that times out leaves its lane
*abandoned*: it is reused only once its answer has come, so a late answer is never taken for
the answer of a later request.
"""
from libc.stdint cimport uint32_t, uint64_t, uintptr_t

from vyre.includes.abi cimport (
    VYRE_ARGN,
    VYRE_CALL_ANSWER,
    VYRE_CALL_LANE_WORDS,
    VYRE_CALL_MAX_LANES,
    VYRE_RESULT_WORDS,
    VYRE_STATUS_FAULT,
)

from vyre._wire cimport _args, _u32

from vyre import _wire
from vyre.errors import InvalidTypeError, InvalidValueError, SlotFaultError, WaitTimeoutError
from vyre.protocol import FaultReason

# array dimensions derived from vyre_abi.h (Cython sizes arrays with enums), not new constants
cdef extern from "vyre_abi.h":
    enum:
        VYRE_CALL_OUTN "(1 + VYRE_RESULT_WORDS)"
        VYRE_CALL_REQN "(VYRE_CALL_PIECES * VYRE_CALL_PIECE_WORDS)"
        VYRE_CALL_LANEN "VYRE_CALL_MAX_LANES"

cdef extern from "vyre_wait.h" nogil:
    ctypedef struct vyre_wait_t:
        uint64_t started
        uint64_t deadline
    uint64_t vyre_now_ns()
    void vyre_wait_init(vyre_wait_t *w, uint64_t started)
    int vyre_wait_pause(vyre_wait_t *w)

cdef extern from *:
    """
    #include "vyre_call.h"
    #include "vyre_wait.h"

    typedef void (*vyre_kick_fn)(void *);

    typedef struct {
        uint32_t *area;
        uint32_t lanes;
        uint32_t free;        /* bit per lane: 1 = free to take */
        uint32_t abandoned;   /* bit per lane: a timed-out call's request not answered yet */
        uint32_t wake;        /* set by vyre_port_wake: a poller's wait_any returns */
        uint32_t seq[VYRE_CALL_MAX_LANES];  /* last sequence number issued on each lane */
        vyre_kick_fn kick;    /* after a request: wake a sleeping server (CPU), or NULL */
        void *kick_arg;
    } vyre_port_t;

    /* a lane whose answer came back after its call gave up is free again */
    static void vyre_port_reclaim(vyre_port_t *p) {
        uint32_t out[1 + VYRE_RESULT_WORDS];
        uint32_t ab = __atomic_load_n(&p->abandoned, __ATOMIC_ACQUIRE);
        while (ab) {
            int lane = __builtin_ctz(ab);
            ab &= ab - 1u;
            if (vyre_call_get_answer(vyre_call_lane(p->area, lane), p->seq[lane], out)) {
                __atomic_fetch_and(&p->abandoned, ~(1u << lane), __ATOMIC_ACQ_REL);
                __atomic_fetch_or(&p->free, 1u << lane, __ATOMIC_RELEASE);
            }
        }
    }

    /* a free lane, or -1 */
    static int vyre_port_take(vyre_port_t *p) {
        uint32_t f = __atomic_load_n(&p->free, __ATOMIC_RELAXED);
        if (f == 0u && __atomic_load_n(&p->abandoned, __ATOMIC_RELAXED)) {
            vyre_port_reclaim(p);
            f = __atomic_load_n(&p->free, __ATOMIC_RELAXED);
        }
        while (f) {
            int lane = __builtin_ctz(f);
            if (__atomic_compare_exchange_n(&p->free, &f, f & ~(1u << lane), 1, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                return lane;
        }
        return -1;
    }

    static inline void vyre_port_give(vyre_port_t *p, int lane) {
        __atomic_fetch_or(&p->free, 1u << lane, __ATOMIC_RELEASE);
    }

    static inline uint32_t vyre_port_load_u32(const uint32_t *p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }

    static inline void vyre_port_wake(vyre_port_t *p) {
        __atomic_store_n(&p->wake, 1u, __ATOMIC_RELEASE);
    }

    static inline uint32_t vyre_lane_mask(uint32_t lanes) {
        return lanes >= 32u ? 0xFFFFFFFFu : (1u << lanes) - 1u;
    }

    static inline void vyre_port_abandon(vyre_port_t *p, int lane) {
        __atomic_fetch_or(&p->abandoned, 1u << lane, __ATOMIC_RELEASE);
    }

    /* write the request on a lane the caller holds; returns its sequence number */
    static inline uint32_t vyre_port_issue(vyre_port_t *p, int lane, uint32_t opcode,
                                           uint32_t tenant, const uint32_t *args) {
        uint32_t seq = vyre_call_next_seq(p->seq[lane]);
        p->seq[lane] = seq;
        vyre_call_put_request(vyre_call_lane(p->area, lane), seq, opcode, tenant, args);
        if (p->kick) p->kick(p->kick_arg);
        return seq;
    }

    /* spin (policy of vyre_wait.h) for a free lane until w's deadline: the lane or -1 */
    static int vyre_port_take_wait(vyre_port_t *p, vyre_wait_t *w) {
        for (;;) {
            int lane = vyre_port_take(p);
            if (lane >= 0) return lane;
            if (!vyre_wait_pause(w)) return -1;
        }
    }

    /* spin for the answer of `lane` until w's deadline: 1 (out filled) or 0 */
    static int vyre_port_wait(vyre_port_t *p, int lane, uint32_t *out, vyre_wait_t *w) {
        const uint32_t *words = vyre_call_lane(p->area, lane);
        const uint32_t seq = p->seq[lane];
        for (;;) {
            if (vyre_call_get_answer(words, seq, out)) return 1;
            if (!vyre_wait_pause(w)) return 0;
        }
    }

    /* lanes of `mask` whose answers came, waiting until one does, the wake flag is raised, or
     * w's deadline; their answers go to out[lane * (1 + VYRE_RESULT_WORDS) ...] */
    static uint32_t vyre_port_wait_any(vyre_port_t *p, uint32_t mask, uint32_t *out,
                                       vyre_wait_t *w) {
        for (;;) {
            uint32_t got = 0u, m = mask;
            while (m) {
                int lane = __builtin_ctz(m);
                m &= m - 1u;
                if (vyre_call_get_answer(vyre_call_lane(p->area, lane), p->seq[lane],
                                         out + lane * (1 + VYRE_RESULT_WORDS)))
                    got |= 1u << lane;
            }
            if (got) return got;
            if (__atomic_exchange_n(&p->wake, 0u, __ATOMIC_ACQ_REL)) return 0u;
            if (!vyre_wait_pause(w)) return 0u;
        }
    }
    """
    ctypedef void (*vyre_kick_fn)(void *)
    ctypedef struct vyre_port_t:
        uint32_t *area
        uint32_t lanes
        uint32_t free
        uint32_t abandoned
        uint32_t wake
        uint32_t seq[32]
        vyre_kick_fn kick
        void *kick_arg
    void vyre_port_reclaim(vyre_port_t *p) nogil
    int vyre_port_take(vyre_port_t *p) nogil
    void vyre_port_give(vyre_port_t *p, int lane) nogil
    void vyre_port_abandon(vyre_port_t *p, int lane) nogil
    uint32_t vyre_port_issue(vyre_port_t *p, int lane, uint32_t opcode, uint32_t tenant,
                             const uint32_t *args) nogil
    int vyre_port_take_wait(vyre_port_t *p, vyre_wait_t *w) nogil
    int vyre_port_wait(vyre_port_t *p, int lane, uint32_t *out, vyre_wait_t *w) nogil
    uint32_t vyre_port_wait_any(vyre_port_t *p, uint32_t mask, uint32_t *out,
                                vyre_wait_t *w) nogil
    void vyre_call_encode(uint32_t *out, uint32_t seq, uint32_t opcode, uint32_t tenant,
                          const uint32_t *args) nogil
    uint32_t vyre_call_decode(const uint32_t *words, uint32_t *opcode, uint32_t *tenant,
                              uint32_t *args) nogil
    void vyre_call_put_answer(uint32_t *lane_words, uint32_t seq, uint32_t status,
                              const uint32_t *result) nogil
    uint32_t *vyre_call_lane(uint32_t *area, uint32_t lane) nogil
    void vyre_port_wake(vyre_port_t *p) nogil
    uint32_t vyre_port_load_u32(const uint32_t *p) nogil
    uint32_t vyre_lane_mask(uint32_t lanes) nogil


#: the vyre_abi.h constants of the call path (one source of truth)
ABI = {name: value for name, value in _wire.ABI.items()
       if name.startswith("CALL_") or name in ("RESULT_WORDS", "FAULT_NOT_CALLABLE")}

# the reasons by code, from vyre.protocol.FaultReason (the one table of VYRE_FAULT_* names, the
# ring's and the call path's)
cdef dict _REASONS = dict(FaultReason._value2member_map_)

cdef str _FAULT_FIX = ("check the tenant is authorized, that non-system tenants write only "
                       "observables, the buffer bounds of the op, and that the op does not need "
                       "a ring slot (LOAD_MISS): submit such ops instead")


cdef object _fault(uint32_t opcode, uint32_t tenant, const uint32_t *out):
    # named and typed as the ring names a FAULT slot (``result()``, ``wait``): an unknown
    # reason stays an int
    reason = _REASONS.get(out[1], out[1])
    name = reason.name if isinstance(reason, FaultReason) else reason
    err = SlotFaultError(f"call of opcode {opcode:#x} (tenant {tenant}) ended in FAULT: "
                         f"{name} (details {out[2]}, {out[3]}, {out[4]})", _FAULT_FIX)
    err.reason = reason
    err.details = (out[2], out[3], out[4])
    err.words = (out[1], out[2], out[3], out[4])
    return err


cdef class CallPort:
    """Request lanes over a call area (see the module docstring).

    ``area``: writable C-contiguous uint32 buffer of ``lanes * 32`` words, 16-byte aligned,
    zeroed before its first use (kept alive here). ``kick_fn`` / ``kick_arg``: addresses of a C
    ``void (*)(void *)`` and its argument called after each request (the CPU server's wake-up),
    or 0.
    """

    cdef vyre_port_t _p
    cdef uint32_t[::1] _area
    cdef object _keep
    cdef readonly uint32_t lanes
    cdef const uint32_t *_exit    # a word the server's side sets when it left (or NULL)
    cdef object _exit_keep
    cdef object _wake             # called before a request while *_exit is set

    def __cinit__(self, area, uint32_t lanes, uintptr_t kick_fn=0, uintptr_t kick_arg=0):
        self._area = area
        self._keep = area
        if lanes < 1 or lanes > VYRE_CALL_MAX_LANES:
            raise InvalidValueError(f"call_lanes={lanes} is outside 1..{VYRE_CALL_MAX_LANES}",
                                    f"use 1 .. {VYRE_CALL_MAX_LANES} lanes")
        if self._area.shape[0] < <Py_ssize_t>lanes * VYRE_CALL_LANE_WORDS:
            raise InvalidValueError(f"the call area has {self._area.shape[0]} words, fewer "
                                    f"than {lanes} lanes of {VYRE_CALL_LANE_WORDS}",
                                    "allocate lanes * 32 uint32 words")
        if (<uintptr_t>&self._area[0]) & 15u:
            raise InvalidValueError("the call area is not 16-byte aligned",
                                    "allocate it with numpy (64-byte aligned) or mmap")
        self.lanes = lanes
        self._p.area = &self._area[0]
        self._p.lanes = lanes
        self._p.free = vyre_lane_mask(lanes)
        self._p.abandoned = 0
        self._p.wake = 0
        cdef uint32_t i
        for i in range(VYRE_CALL_MAX_LANES):
            # continue after what the area holds (a port over a used area: never reuse a number)
            self._p.seq[i] = self._area[i * VYRE_CALL_LANE_WORDS + VYRE_CALL_ANSWER] \
                if i < lanes else 0
        self._p.kick = <vyre_kick_fn>kick_fn
        self._p.kick_arg = <void *>kick_arg
        self._exit = NULL

    def wake_when(self, exit_words, Py_ssize_t index, wake):
        """Call ``wake()`` before a request whenever ``exit_words[index]`` (a uint32 buffer the
        server's side sets when it leaves, e.g. the CUDA kernel's exit word) is not 0: a check
        in C per call, the Python call only when the server is away."""
        cdef const uint32_t[::1] words = exit_words
        if index < 0 or index >= words.shape[0]:
            raise InvalidValueError(f"index {index} is outside the {words.shape[0]} words given",
                                    "pass the index of the exit word")
        if not callable(wake):
            raise InvalidTypeError(f"wake must be callable, got {type(wake).__name__}",
                                   "pass the backend's wake-up function")
        self._exit_keep = exit_words
        self._wake = wake
        self._exit = &words[index]

    def call(self, opcode, args=(), tenant=0, double timeout=-1.0, object watch=None,
             double tick=0.005, bint words=False):
        """One call: the op's result word 0 (``words=True``: all result words as a tuple).

        ``timeout`` < 0: no limit. ``watch``: a factory called once the first ``tick`` s have
        passed without an answer; what it returns is then called every ``tick`` s (the
        watchdog: whatever it raises ends the call). A quick call never pays for it. Raises SlotFaultError
        (``.reason``, ``.details``) when the op faulted, WaitTimeoutError past ``timeout``.
        """
        cdef uint32_t op, ten
        cdef uint32_t a[VYRE_ARGN]
        cdef uint32_t out[VYRE_CALL_OUTN]
        cdef vyre_wait_t w
        cdef int lane = -1, got = 0
        cdef uint64_t start, deadline, t
        cdef object checker = None
        _u32(opcode, &op, "opcode", -1)
        _u32(tenant, &ten, "tenant", -1)
        _args(args, a, VYRE_ARGN, "args")
        if self._exit != NULL and vyre_port_load_u32(self._exit) != 0:
            self._wake()  # the server left on its own: bring it back for this request
        start = vyre_now_ns()
        deadline = <uint64_t>-1 if timeout < 0 else start + <uint64_t>(timeout * 1e9)
        vyre_wait_init(&w, start)
        t = start
        while True:
            t += <uint64_t>(tick * 1e9)
            w.deadline = t if t < deadline else deadline
            with nogil:
                if lane < 0:
                    lane = vyre_port_take_wait(&self._p, &w)
                    if lane >= 0:
                        vyre_port_issue(&self._p, lane, op, ten, a)
                if lane >= 0:
                    got = vyre_port_wait(&self._p, lane, out, &w)
            if got:
                vyre_port_give(&self._p, lane)
                if out[0] == VYRE_STATUS_FAULT:
                    raise _fault(op, ten, out)
                if words:
                    return (out[1], out[2], out[3], out[4])
                return out[1]
            t = vyre_now_ns()
            try:
                if t >= deadline:
                    raise WaitTimeoutError(
                        f"call of opcode {op:#x} not answered after {timeout} s"
                        if lane >= 0 else
                        f"no free call lane after {timeout} s ({self.lanes} lanes, all busy)",
                        "raise the timeout, or check the op finishes (telemetry(), "
                        "the heartbeat)")
                if watch is not None:
                    if checker is None:
                        checker = watch()
                    checker()
            except BaseException:
                if lane >= 0:
                    vyre_port_abandon(&self._p, lane)  # freed once its answer comes
                raise

    # ---------------------------------------------------------------- the async poller's API
    def take(self):
        """A free lane, or -1 (never blocks)."""
        return vyre_port_take(&self._p)

    def issue(self, int lane, opcode, args=(), tenant=0):
        """Write a request on a lane from :meth:`take` (arguments checked first)."""
        cdef uint32_t op, ten
        cdef uint32_t a[VYRE_ARGN]
        self._lane(lane)
        _u32(opcode, &op, "opcode", -1)
        _u32(tenant, &ten, "tenant", -1)
        _args(args, a, VYRE_ARGN, "args")
        vyre_port_issue(&self._p, lane, op, ten, a)

    def give(self, int lane):
        """Return a lane taken with :meth:`take` whose answer was read (or never issued)."""
        self._lane(lane)
        vyre_port_give(&self._p, lane)

    def abandon(self, int lane):
        """Give up on a lane's answer: the lane is free again once that answer comes."""
        self._lane(lane)
        vyre_port_abandon(&self._p, lane)

    def wake(self):
        """Make a :meth:`wait_any` in progress return (new work for its caller)."""
        vyre_port_wake(&self._p)

    def wait_any(self, uint32_t mask, double tick):
        """Wait (GIL released) until a lane of ``mask`` is answered, :meth:`wake`, or ``tick``
        s; returns ``[(lane, status, (r0, r1, r2, r3)), ...]`` for the answered lanes."""
        cdef uint32_t out[VYRE_CALL_LANEN * VYRE_CALL_OUTN]
        cdef vyre_wait_t w
        cdef uint32_t got
        cdef int lane
        cdef uint64_t now = vyre_now_ns()
        vyre_wait_init(&w, now)
        w.deadline = now + <uint64_t>(max(tick, 0.0) * 1e9)
        mask &= vyre_lane_mask(self.lanes)
        with nogil:
            got = vyre_port_wait_any(&self._p, mask, out, &w)
        res = []
        while got:
            lane = (got & -got).bit_length() - 1
            got &= got - 1
            o = lane * VYRE_CALL_OUTN
            res.append((lane, out[o], (out[o + 1], out[o + 2], out[o + 3], out[o + 4])))
        return res

    def fault_error(self, uint32_t opcode, uint32_t tenant, uint32_t status, result):
        """The SlotFaultError of a FAULT answer (for the async poller)."""
        cdef uint32_t out[VYRE_CALL_OUTN]
        out[0] = status
        for i in range(VYRE_RESULT_WORDS):
            out[i + 1] = result[i]
        return _fault(opcode, tenant, out)

    cdef int _lane(self, int lane) except -1:
        if lane < 0 or lane >= <int>self.lanes:
            raise InvalidValueError(f"lane {lane} is outside 0..{self.lanes - 1}",
                                    "use a lane from take()")
        return 0

    @property
    def free_lanes(self):
        """Lanes free to take now (a diagnostic)."""
        return bin(self._p.free).count("1")

    @property
    def abandoned_lanes(self):
        """Lanes whose call gave up before the answer came (a diagnostic)."""
        vyre_port_reclaim(&self._p)
        return bin(self._p.abandoned).count("1")


# ---------------------------------------------------------------- record codec (tests, docs)
def encode_request(uint32_t seq, uint32_t opcode, uint32_t tenant, args=()):
    """The 16 request words of a call (docs/call.md) as a list."""
    cdef uint32_t a[VYRE_ARGN]
    cdef uint32_t w[VYRE_CALL_REQN]
    _args(args, a, VYRE_ARGN, "args")
    vyre_call_encode(w, seq, opcode, tenant, a)
    return [w[i] for i in range(VYRE_CALL_REQN)]


def decode_request(words):
    """(seq, opcode, tenant, args) of 16 request words; seq 0 when torn or empty."""
    cdef uint32_t w[VYRE_CALL_REQN]
    cdef uint32_t a[VYRE_ARGN]
    cdef uint32_t op = 0, ten = 0, seq
    vals = list(words)
    if len(vals) != VYRE_CALL_REQN:
        raise InvalidValueError(f"{len(vals)} words given",
                                f"pass the {VYRE_CALL_REQN} words of a request")
    for i in range(VYRE_CALL_REQN):
        _u32(vals[i], &w[i], "words", i)
    seq = vyre_call_decode(w, &op, &ten, a)
    if seq == 0:
        return (0, 0, 0, ())
    return (seq, op, ten, tuple(a[i] for i in range(VYRE_ARGN)))


def put_answer(uint32_t[::1] area, uint32_t lane, uint32_t seq, uint32_t status, result):
    """Store an answer into lane ``lane`` of ``area`` as a server does (tests)."""
    cdef uint32_t r[4]
    vals = list(result)
    for i in range(4):
        r[i] = vals[i] if i < len(vals) else 0
    if area.shape[0] < <Py_ssize_t>(lane + 1) * VYRE_CALL_LANE_WORDS:
        raise InvalidValueError("lane past the area", "use a lane of the area")
    vyre_call_put_answer(vyre_call_lane(&area[0], lane), seq, status, r)
