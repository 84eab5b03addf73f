// The call server (docs/call.md): warp 2 of block 0 when call lanes exist. Included by
// cuda/megakernel.cu after the poller's helpers (ld_acq_sys_v4, the tenant mirror's layout,
// vyre_call_served_at) and user_ops.
//
// A call is one request and one answer in mapped host memory, beside the ring: the warp reads
// whole requests speculatively (no flag, then body: that would be two PCIe round trips), one
// 16-byte piece per thread, and every piece carries the request's sequence number, so a torn
// read shows as unequal numbers and is simply read again next pass.
//
// What one call waits for on this side: the pass that sees its request (one PCIe read per
// pass, back to back while calls come), the op, and one 32-byte answer store. So a pass issues
// its request load first and keeps everything else off that chain: the SHUTDOWN mirror and the
// tenant mirror are loaded from L2 beside the request (not one L2 round trip each before or
// after it), the serve path is inlined into the loop (out of line, its call and the spills
// around it cost 0.9 of a NOP's 1.8 us of serving on the H200: docs/decisions.md), and the
// bookkeeping (the idle exit's timestamp) follows the answer.
//
// After an acquire load the SM's L1 holds nothing: a value read from memory on the serve path
// is an L2 round trip (~0.15 us). So what the loop needs from the launch is loaded once
// (call_regs), the context calls run on is built once per server thread (not copied per call),
// and the answer takes the op's result words as the interpreter produced them (vyre_call_run),
// not read back from the scratch slot. Both still live in local memory, not registers: their
// addresses go to the out-of-line op bodies.
#pragma once

#define CALL_GROUP_LANES 8u          // lanes one warp-wide load covers (32 threads x 16 bytes)
#define CALL_GROUPS (VYRE_CALL_MAX_LANES / CALL_GROUP_LANES)
#define CALL_HOT_NS 1000000ull       // poll back to back this long after the last call

// The wait is a function of its own. VYRE_CALL_WAIT_INLINE (an experiment,
// bench/gpu/call_variants.sh) inlines it: on the H200 a NOP's round trip measured 0.10-0.14 us
// longer with it in both rounds of an A/B (docs/decisions.md, "Where a call's time goes").
#ifdef VYRE_CALL_WAIT_INLINE
#define CALL_WAIT_FN static __device__ __forceinline__
#else
#define CALL_WAIT_FN static __device__ __noinline__
#endif

static __device__ __forceinline__ void st_rlx_sys_v4(uint32_t *p, uint4 v) {
    asm volatile("st.relaxed.sys.global.v4.u32 [%0], {%1,%2,%3,%4};"
                 :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}

// What the loop needs from the launch, read once before it (see above).
struct call_regs {
    uint32_t *calls;             // the call area (mapped host)
    uint32_t *scratch;           // one scratch slot per lane (device)
    unsigned *shutdown;          // the poller's SHUTDOWN mirror
    unsigned *tenants;           // the poller's tenant mirror
    vyre_ctx_t *one;             // the launch's context as a one-slot ring (ring: a scratch slot)
    unsigned idle_sleep_ns;
};

// VYRE_CALL_TRACE (a diagnostic build: bench/gpu/call_variants.sh) writes, per answer, into
// lane words 24..31: the ns from the request seen to the verdict, to the op's end, to the
// answer issued (three words), the poll passes since the last call, the last pass's length,
// whether the verdict read the control words, the sequence number, and the ns from
// call_wait's return to call_serve_group's start.
struct call_trace {  // VYRE_CALL_TRACE: what the pass that saw a request measured
    unsigned long long seen_at;
    unsigned passes, pass_ns;
};
#ifdef VYRE_CALL_TRACE
#define CALL_T(var) const unsigned long long var = vyre_globaltimer()
#define CALL_TRACE_PARAM , const call_trace &tr
#define CALL_TRACE_ARG , seen.tr
#else
#define CALL_T(var)
#define CALL_TRACE_PARAM
#define CALL_TRACE_ARG
#endif

static __device__ __forceinline__ uint32_t ld_rlx_sys(const uint32_t *p) {
    return cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(*const_cast<uint32_t *>(p))
        .load(cuda::std::memory_order_relaxed);
}

// A built-in op of a call (in a build without user ops, any opcode: an unknown one faults) on
// the lane's scratch slot: its status, result words into `result`.
static __device__ __forceinline__ uint32_t call_builtin(const call_regs &R, unsigned lane, uint32_t opcode,
                                                     uint32_t tenant, const uint32_t *args, int ok,
                                                     uint32_t *result) {
    R.one->ring = R.scratch + (size_t)lane * VYRE_SLOT_WORDS;
    return vyre_call_run(R.one, opcode, tenant, args, ok, result);
}

#ifdef VYRE_USER_OPS
// The user ops of this pass (user_mask: the lead threads holding one), each on all 32 threads
// as the workers run one (user_ops), on its lane's scratch slot as slot 0 of a one-slot ring.
static __device__ __noinline__ void call_user_ops(const vyre_launch_t &L, unsigned user_mask, unsigned lane,
                                                  uint32_t opcode, uint32_t tenant, const uint32_t *args,
                                                  int ok, uint32_t *status, uint32_t *result) {
    const unsigned t = threadIdx.x & 31;
    for (unsigned m = user_mask; m; m &= m - 1) {
        const int owner = __ffs(m) - 1;
        uint32_t *scratch = L.call_scratch + (size_t)__shfl_sync(FULL_MASK, lane, owner) * VYRE_SLOT_WORDS;
        uint32_t w[VYRE_SLOT_WORDS];
        vyre_call_slot(w, opcode, tenant, args);
        if ((int)t == owner)
            for (unsigned i = 0; i < VYRE_SLOT_WORDS; i++) scratch[i] = w[i];
        __syncwarp();
        vyre_ctx_t one = L.ctx;
        one.ring = scratch;
        one.slot_count = 1u;
        vyre_result_t r;
        r.status = VYRE_STATUS_CLAIMED;
        user_ops(&one, 1u << owner, 0u, w, ok, &r);
        if ((int)t == owner) {  // user_ops committed the merged result words to scratch
            for (unsigned i = 0; i < VYRE_RESULT_WORDS; i++)
                result[i] = scratch[VYRE_SLOT_WORDS - VYRE_RESULT_WORDS + i];
            *status = vyre_call_outcome(opcode, r.status, result);
        }
    }
}
#endif

// Serve the new requests of one group of lanes (warp-collective): `ready` at the lead thread of
// each such lane, `q` this thread's piece, `s0` the lane's sequence number, `tw` this thread's
// word of the tenant mirror.
static __device__ __forceinline__ void call_serve_group(const vyre_launch_t &L, const call_regs &R, unsigned lane,
                                                     uint4 q, bool ready, unsigned s0,
                                                     unsigned tw CALL_TRACE_PARAM) {
    CALL_T(entered_at);
    const unsigned t = threadIdx.x & 31;
    const unsigned lead = t & ~3u;
    uint32_t w[VYRE_SLOT_WORDS];  // the lane's request, at each thread of its quad
#pragma unroll
    for (unsigned k = 0; k < VYRE_CALL_PIECES; k++) {
        w[4 * k] = __shfl_sync(FULL_MASK, q.x, lead + k);
        w[4 * k + 1] = __shfl_sync(FULL_MASK, q.y, lead + k);
        w[4 * k + 2] = __shfl_sync(FULL_MASK, q.z, lead + k);
        w[4 * k + 3] = __shfl_sync(FULL_MASK, q.w, lead + k);
    }
    uint32_t opcode = 0, tenant = 0, args[VYRE_SLOT_ARG_COUNT];
    (void)vyre_call_decode(w, &opcode, &tenant, args);
    // the tenant verdict from the poller's mirror; the control words in host memory for a
    // moved or longer table, before the poller's first pass, and for every refusal. Unlike
    // the workers, this warp reads the mirror without acquiring a doorbell mirror the poller
    // released after writing it, so its words can come from two passes (TM_DEFAULT and
    // TM_LEN of the first pass beside a mask not yet written): only a grant is taken from it.
    const unsigned deflt = __shfl_sync(FULL_MASK, tw, TM_DEFAULT);
    const unsigned len = __shfl_sync(FULL_MASK, tw, TM_LEN);
    const unsigned mask = __shfl_sync(FULL_MASK, tw, TM_MASKS + (tenant < VYRE_TENANT_MASK_COUNT ? tenant : 0u));
    int ok = -1;
    if (deflt && tenant < VYRE_TENANT_MASK_COUNT && vyre_tenant_verdict(tenant, len, mask)) ok = 1;
#ifdef VYRE_CALL_TRACE
    const unsigned read_control = ready && ok < 0;
#endif
    if (ready && ok < 0) ok = vyre_tenant_ok_(R.one, tenant);
    CALL_T(verdict_at);
    uint32_t status = 0, result[VYRE_RESULT_WORDS] = {0u, 0u, 0u, 0u};
#ifdef VYRE_USER_OPS
    const bool user = ready && vyre_is_user_opcode(opcode);
    const unsigned user_mask = __ballot_sync(FULL_MASK, user);
    if (user_mask) call_user_ops(L, user_mask, lane, opcode, tenant, args, ok, &status, result);
#else
    const bool user = false;
#endif
    if (ready && !user) status = call_builtin(R, lane, opcode, tenant, args, ok, result);
    CALL_T(op_at);
    // the answer: its two 16-byte pieces stored by the lead thread and the next one in
    // one instruction (one 32-byte write), behind a system-scope release of what the
    // op wrote (a NOP wrote nothing: the fence would be most of its time here)
    const bool answers = __shfl_sync(FULL_MASK, ready, lead) && (t & 3u) < 2u;
    const uint32_t a_status = __shfl_sync(FULL_MASK, status, lead);
    uint32_t r[VYRE_RESULT_WORDS];
#pragma unroll
    for (unsigned i = 0; i < VYRE_RESULT_WORDS; i++) r[i] = __shfl_sync(FULL_MASK, result[i], lead);
    if (answers) {
        if (opcode != VYRE_OP_NOP)
            cuda::atomic_thread_fence(cuda::std::memory_order_release, cuda::thread_scope_system);
        uint32_t *answer = R.calls + (size_t)lane * VYRE_CALL_LANE_WORDS + VYRE_CALL_ANSWER;
        if ((t & 3u) == 0u)
            st_rlx_sys_v4(answer, make_uint4(s0, a_status, r[0], r[1]));
        else
            st_rlx_sys_v4(answer + VYRE_CALL_ANSWER_SEQ2, make_uint4(s0, r[2], r[3], 0u));
    }
#ifdef VYRE_CALL_TRACE
    CALL_T(answered_at);
    const unsigned rc = __shfl_sync(FULL_MASK, read_control, lead);
    if (__shfl_sync(FULL_MASK, ready, lead) && (t & 3u) < 2u) {
        uint32_t *tw_out = R.calls + (size_t)lane * VYRE_CALL_LANE_WORDS + 24u;
        if ((t & 3u) == 0u)
            st_rlx_sys_v4(tw_out, make_uint4((unsigned)(verdict_at - tr.seen_at), (unsigned)(op_at - tr.seen_at),
                                             (unsigned)(answered_at - tr.seen_at), tr.passes));
        else
            st_rlx_sys_v4(tw_out + 4, make_uint4(tr.pass_ns, rc, s0, (unsigned)(entered_at - tr.seen_at)));
    }
#endif
    __syncwarp();
}

// What a pass that found a new request saw: each thread's piece of each group, and its word
// of the tenant mirror.
template <unsigned G>
struct call_seen {
    uint4 q[G];
    unsigned tw;
#ifdef VYRE_CALL_TRACE
    call_trace tr;
#endif
};

// Whether thread t holds piece 0 of a lane of group g whose four pieces carry one new
// sequence number (warp-collective); *s0 gets the lane's sequence number.
static __device__ __forceinline__ bool call_ready(uint4 q, bool mine, unsigned last, unsigned *s0) {
    const unsigned t = threadIdx.x & 31;
    const unsigned lead = t & ~3u;
    const unsigned seq = q.x & VYRE_CALL_SEQ_MASK;
    *s0 = __shfl_sync(FULL_MASK, seq, lead);
    const unsigned agree = __ballot_sync(FULL_MASK, seq == *s0);
    return (t & 3u) == 0u && mine && ((agree >> lead) & 0xFu) == 0xFu && *s0 != 0u && *s0 != last;
}

// Poll G groups of 8 lanes (G: 1 for up to 8 lanes, the default, else all) until one holds a
// new request (true, *seen filled) or the kernel stops or pauses (false). One acquire load per
// thread per group each pass (thread t: piece t % 4 of lane t / 4 of the group): the acquire
// orders the op's reads after the request, as the ring's doorbell load does for slots. The
// loop calls nothing and reads nothing from the stack, so no value is reloaded from an L1
// the last pass's acquire emptied before the next request load issues.
template <unsigned G>
CALL_WAIT_FN bool call_wait(const call_regs &R, unsigned n, const unsigned *last_in,
                            unsigned long long *busy_at, call_seen<G> *seen) {
    const unsigned t = threadIdx.x & 31;
    const unsigned idle_sleep_ns = R.idle_sleep_ns;
    cuda::atomic_ref<unsigned int, cuda::thread_scope_device> shutdown(*R.shutdown);
    cuda::atomic_ref<unsigned int, cuda::thread_scope_device> tenant_word(R.tenants[t < TM_WORDS ? t : 0u]);
    const uint32_t *piece[G];
    bool mine[G];
    unsigned last[G];
#pragma unroll
    for (unsigned g = 0; g < G; g++) {
        const unsigned lane = g * CALL_GROUP_LANES + (t >> 2);
        mine[g] = lane < n;
        piece[g] = R.calls + (size_t)(mine[g] ? lane : 0u) * VYRE_CALL_LANE_WORDS + VYRE_CALL_REQUEST +
                   (t & 3u) * VYRE_CALL_PIECE_WORDS;
        last[g] = last_in[g];
    }
    unsigned long long idle_since = *busy_at;
    unsigned sleep_ns = 32;
#ifdef VYRE_CALL_TRACE
    unsigned long long issued_at = vyre_globaltimer(), prev_issued_at = 0;  // a first pass: since entry
    unsigned passes = 0;
#endif
    for (;;) {
#ifdef VYRE_CALL_TRACE
        prev_issued_at = issued_at;
        issued_at = vyre_globaltimer();
        passes++;
#endif
        // issued before the request loads, used after them: both L2 round trips hide under
        // the PCIe one. The tenant words are as new as the poller's last pass before this one
        // (a table edit reaches calls within a poller pass and a call pass, docs/call.md).
        const unsigned sd = shutdown.load(cuda::std::memory_order_relaxed);
        const unsigned tw = tenant_word.load(cuda::std::memory_order_relaxed);
        uint4 q[G];
#pragma unroll
        for (unsigned g = 0; g < G; g++) {
            q[g] = make_uint4(0u, 0u, 0u, 0u);
            if (mine[g]) q[g] = ld_acq_sys_v4(piece[g]);
        }
        // SD_STOP or SD_PAUSE: leave; a request not answered yet is answered after a relaunch
        if (__shfl_sync(FULL_MASK, sd, 0) != SD_RUN) return false;
        bool any = false;
#pragma unroll
        for (unsigned g = 0; g < G; g++) {
            unsigned s0;
            any |= __ballot_sync(FULL_MASK, call_ready(q[g], mine[g], last[g], &s0)) != 0u;
        }
        if (any) {
#pragma unroll
            for (unsigned g = 0; g < G; g++) seen->q[g] = q[g];
            seen->tw = tw;
#ifdef VYRE_CALL_TRACE
            seen->tr.seen_at = vyre_globaltimer();
            seen->tr.passes = passes;
            seen->tr.pass_ns = (unsigned)(issued_at - prev_issued_at);
#endif
            return true;
        }
        const unsigned long long now = vyre_globaltimer();
        if (now - idle_since > CALL_HOT_NS) {
            // idle: poll less often, so an idle call path costs the ring little PCIe
            __nanosleep(sleep_ns);
            sleep_ns = sleep_ns * 2 > idle_sleep_ns ? idle_sleep_ns : sleep_ns * 2;
        }
    }
}

// Serve what call_wait found, wait again, until the kernel stops or pauses.
template <unsigned G>
static __device__ __forceinline__ void call_poll(const vyre_launch_t &L, unsigned n) {
    const unsigned t = threadIdx.x & 31;
    call_regs R;
    R.calls = L.calls;
    R.scratch = L.call_scratch;
    R.shutdown = L.shutdown;
    R.tenants = L.tenants;
    vyre_ctx_t one = L.ctx;
    one.slot_count = 1u;
    R.one = &one;
    R.idle_sleep_ns = L.idle_sleep_ns;
    // the last sequence answered per lane (kept by its lead thread); resumed from the answers
    // the area holds, so a relaunch after a pause never runs a request twice
    unsigned last[G];
#pragma unroll
    for (unsigned g = 0; g < G; g++) {
        const unsigned lane = g * CALL_GROUP_LANES + (t >> 2);
        last[g] = (lane < n && (t & 3u) == 0u)
                      ? ld_rlx_sys(R.calls + (size_t)lane * VYRE_CALL_LANE_WORDS + VYRE_CALL_ANSWER)
                      : 0u;
    }
    unsigned long long busy_at = vyre_globaltimer();
    call_seen<G> seen;
    while (call_wait<G>(R, n, last, &busy_at, &seen)) {
#pragma unroll
        for (unsigned g = 0; g < G; g++) {
            const unsigned lane = g * CALL_GROUP_LANES + (t >> 2);
            unsigned s0;
            const bool ready = call_ready(seen.q[g], lane < n, last[g], &s0);
            if (!__ballot_sync(FULL_MASK, ready)) continue;
            call_serve_group(L, R, lane, seen.q[g], ready, s0, seen.tw CALL_TRACE_ARG);
            if (ready) last[g] = s0;
        }
        // after the answers: the poller's idle exit counts a call as a publication
        busy_at = vyre_globaltimer();
        if (t == 0)
            cuda::atomic_ref<unsigned long long, cuda::thread_scope_device>(vyre_call_served_at)
                .store(busy_at, cuda::std::memory_order_relaxed);
    }
}

// Warp 2 of block 0 when call lanes exist.
static __device__ __noinline__ void call_server(const vyre_launch_t &L) {
    static_assert(VYRE_CALL_PIECES == 4u && VYRE_CALL_PIECE_WORDS == 4u, "a piece is one uint4 per thread");
    static_assert(VYRE_CALL_ANSWER_SEQ2 == 4u && VYRE_CALL_ANSWER % 8u == 0u && VYRE_CALL_LANE_WORDS % 8u == 0u,
                  "an answer is two adjacent uint4 in one 32-byte aligned span");
    static_assert(VYRE_CALL_MAX_LANES % CALL_GROUP_LANES == 0u, "whole groups");
    static_assert(TM_WORDS <= 32, "one tenant mirror word per thread");
    const unsigned n = L.call_lanes < VYRE_CALL_MAX_LANES ? L.call_lanes : VYRE_CALL_MAX_LANES;
    if (n <= CALL_GROUP_LANES) call_poll<1>(L, n);
    else call_poll<CALL_GROUPS>(L, n);
}
