/* vyre slot interpreter: the execution of one claimed slot (docs/spec.md §3-§9).
 *
 * One source for both backends: nvcc compiles it into the megakernel (cuda/megakernel.cu),
 * the host compiler into the CPU worker (csrc/cpu_worker.c). Only the atomics differ, and
 * they sit behind the VYRE_* macros below. Opcode semantics live here and nowhere else.
 *
 * Why one file past the ~600-line house limit: it is by rule the single home of opcode
 * semantics, and one header is what nvcc and the host compiler both take unchanged; split,
 * an opcode's rules would spread over files that must then be kept in step.
 *
 * ---- API CONTRACT (implementation below must keep these signatures) ----
 *
 *   typedef struct { uint64_t addr; uint64_t bytes; } vyre_buf_t;     buffer table entry
 *   typedef struct vyre_ctx vyre_ctx_t;                               see below
 *
 *   int  vyre_claim(const vyre_ctx_t *c, uint32_t slot);
 *        CAS(status PUBLISHED -> CLAIMED), system scope, acquire on success. 1 = claimed.
 *
 *   vyre_result_t vyre_execute(const vyre_ctx_t *c, uint32_t slot);
 *        Run a slot the caller has claimed: tenant authorization (FAULT when refused),
 *        the opcode (packed: all inner ops, each bumping its own metric directly), the
 *        protected-word rule, out-of-range rules. Does NOT touch DONE_COUNT, FAULT_COUNT,
 *        the outer opcode's metric or the slot status: it returns what the caller must do,
 *        so the GPU can aggregate counters per warp and the CPU can apply them one by one.
 *        Work that may be split across cooperating lanes (DFA_SCAN with a6 > 0) is run
 *        whole here; see vyre_dfa_scan_part for the cooperative path.
 *
 *   void vyre_finish(const vyre_ctx_t *c, uint32_t slot, vyre_result_t r);
 *        Apply r one slot at a time: metric, DONE_COUNT or FAULT_COUNT, then the final
 *        status with release order -- only replacing CLAIMED (a handler-set status stays).
 *
 *   void vyre_dfa_scan_part(const vyre_ctx_t *c, const uint32_t args[12], uint32_t start_state,
 *                           uint32_t part, uint32_t parts,
 *                           uint32_t *accepts, uint32_t *end_state);
 *        Scan segment `part` of `parts` of a DFA_SCAN (exact when a6 > 0, see docs/spec.md §3);
 *        parts == 1 is the sequential scan. No writes to control.
 *        Combining: accepts = sum over all parts; final state = end_state of part parts-1.
 *        A range that cannot be split (a6 == 0, or no byte past the context) is scanned
 *        whole by part parts-1; the other parts then return 0 accepts. On the CPU a scan
 *        that sees control[SHUTDOWN] set at a progress point (every MiB) is abandoned:
 *        end_state = VYRE_DFA_NO_STATE, no result, and DFA_SCAN leaves its slot CLAIMED.
 *
 * Results (docs/ops.md, "Results"): vyre_execute* store the slot's VYRE_RESULT_WORDS result words
 * (or its fault reason and details) into slot words 12..15 before returning DONE or FAULT;
 * the caller's release store of the status publishes them. CLAIMED (parked) stores nothing.
 *
 * Helpers beyond the contract (used by cuda/megakernel.cu and cpu_worker.c):
 *   int  vyre_claim_from(c, slot, from)        CAS(from -> CLAIMED), e.g. WAIT_IO retries
 *   vyre_result_t vyre_execute_words(c, slot, words[16])   vyre_execute on loaded slot words
 *   vyre_result_t vyre_execute_authorized(c, slot, words[16], ok)   ... with the tenant verdict given
 *   vyre_result_t vyre_execute_into(c, slot, words[16], ok, res[4], store)  ... and the result
 *        words also in res (DONE or FAULT; CLAIMED leaves res undefined), stored into the slot
 *        only when store != 0: a caller that answers from res (the call path) need not read
 *        its slot back, nor write result words nobody reads
 *   int  vyre_tenant_ok_(c, tenant)                        docs/spec.md §5 authorization
 *   int  vyre_dfa_scan_wants_lanes(words[16], min_bytes)
 *   int  vyre_dfa_scan_begin(c, words[16], args[12], &start_state)
 *   vyre_result_t vyre_dfa_scan_commit(c, args[12], accepts, end_state)
 *   vyre_result_t vyre_dfa_scan_commit_slot(c, slot, args[12], accepts, end_state)  + results
 *   (cooperative DFA_SCAN: see their comment below)
 *   int  vyre_dfa_match_coop_begin(c, words[16], args[12])
 *   uint32_t vyre_dfa_match_part(c, args[12], part, parts, &positions, &matches, res[4])
 *   vyre_result_t vyre_dfa_match_commit_slot(c, slot, args[12], positions, matches, fault[4])
 *   (cooperative DFA_MATCH: see "DFA_MATCH" below)
 *   void vyre_store_results(c, slot, r[4])                  slot words 12..15 = r
 *   int  vyre_is_user_opcode(opcode)                         not a system opcode
 *   void vyre_user_begin(c, slot, opcode, tenant, args, lane, lane_end, &op)
 *   void vyre_user_merge(&into, &from)                       lane results / faults, lane order
 *   vyre_result_t vyre_user_commit(c, slot, &op, handled)    results + outcome of a user op
 *   (user ops run over a warp: see "user ops" below; VYRE_USER_DISPATCH is the build's hook)
 */
#ifndef VYRE_INTERP_H
#define VYRE_INTERP_H

#include "vyre_abi.h"
#include "vyre_op.h" /* vyre_buf_t, vyre_op_t: the user-op ABI */

#ifdef __CUDACC__
#include <cuda/atomic>
#include <stdint.h>
#define VYRE_FN static __host__ __device__ __forceinline__
#else
#include <stdint.h>
#include <stddef.h>
#define VYRE_FN static inline
#endif

/* VYRE_COLD: the bodies of ops off the dispatch fast path (scans, copies, I/O, the debug log,
 * packed slots). The megakernel calls them out of line, so the registers they need are not
 * held across its poll loop (docs/decisions.md, "Registers and resident warps"). */
#ifdef __CUDACC__
#define VYRE_COLD static __host__ __device__ __noinline__
#else
#define VYRE_COLD static inline
#endif

typedef struct vyre_ctx {
    uint32_t *ring;            /* slot_count * 16 words */
    uint32_t *control;         /* control_words words; handle 0 of the buffer table */
    uint32_t *debug;           /* 1 + 4*debug_records + 1 words (cursor, records, overflow) */
    uint32_t *ioq;             /* io_slots * 8 words; may be NULL when io_slots == 0 */
    const vyre_buf_t *bufs;    /* buffer table; bufs[0] describes control */
    uint32_t slot_count;
    uint32_t control_words;    /* 160 + observable_slots */
    uint32_t observable_slots;
    uint32_t debug_records;
    uint32_t io_slots;
    uint32_t buf_count;        /* valid entries of bufs, <= VYRE_MAX_BUFFERS */
} vyre_ctx_t;

typedef struct {
    uint32_t status;      /* DONE or FAULT: the caller counts it and stores it (release);
                             CLAIMED: a handler already stored its own status (WAIT_IO,
                             YIELD, REQUEUE...) and the caller stores and counts nothing */
    uint32_t metric_op;   /* opcode < 32 whose METRICS counter the caller bumps, or VYRE_NO_METRIC */
} vyre_result_t;

#define VYRE_NO_METRIC 0xFFFFFFFFu

/* implementation follows (see the contract above) */

/* ==== portability: atomics, backoff ==========================================================
 * Ring, control, debug log and io queue are shared with the host (mapped pinned memory on the
 * GPU), so every access to them that can race is an atomic of system scope. Buffer-table
 * buffers (DFA tables, data) are plain memory: plain loads, and plain stores (BUF_COPY).
 * Control-word loads and stores are relaxed atomics (free on x86, ld/st.relaxed.sys on the
 * GPU): other lanes update the same words with atomic RMWs, and a relaxed access keeps that
 * well defined. The final slot status is a release store, so the host that sees DONE
 * (acquire) sees everything the slot wrote. */
#ifdef __CUDA_ARCH__
/* Loads, stores and fences are of system scope (the host reads and writes these words).
 * Read-modify-writes are of device scope: a GPU without host-native atomics (any PCIe GPU)
 * cannot make an RMW on host memory atomic against the host anyway (docs/decisions.md), and
 * compute-sanitizer rejects system-scope RMWs there. They are atomic among GPU threads, which
 * is what the interpreter needs; an acquire/release RMW adds a system-scope fence. */
#define VYRE_AREF_(p) (cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(*(p)))
#define VYRE_RMW_(p) (cuda::atomic_ref<uint32_t, cuda::thread_scope_device>(*(p)))
#define VYRE_LD_ACQ(p) (VYRE_AREF_(p).load(cuda::std::memory_order_acquire))
#define VYRE_LD_RLX(p) (VYRE_AREF_(p).load(cuda::std::memory_order_relaxed))
#define VYRE_ST_REL(p, v) (VYRE_AREF_(p).store((v), cuda::std::memory_order_release))
#define VYRE_ST_RLX(p, v) (VYRE_AREF_(p).store((v), cuda::std::memory_order_relaxed))
#define VYRE_ADD_RLX(p, v) (VYRE_RMW_(p).fetch_add((v), cuda::std::memory_order_relaxed))
/* *expp is updated with the observed value on failure (like the C11 form) */
#define VYRE_CAS_ACQ(p, expp, d) vyre_cas_acq_dev_((p), (expp), (d))
#define VYRE_CAS_RLX(p, expp, d) \
    (VYRE_RMW_(p).compare_exchange_strong(*(expp), (d), cuda::std::memory_order_relaxed, \
                                          cuda::std::memory_order_relaxed))
static __device__ __forceinline__ bool vyre_cas_acq_dev_(uint32_t *p, uint32_t *expp, uint32_t d) {
    const bool won = VYRE_RMW_(p).compare_exchange_strong(*expp, d, cuda::std::memory_order_relaxed,
                                                          cuda::std::memory_order_relaxed);
    cuda::atomic_thread_fence(cuda::std::memory_order_acquire, cuda::thread_scope_system);
    return won;
}
#else
#define VYRE_LD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define VYRE_LD_RLX(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define VYRE_ST_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define VYRE_ST_RLX(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define VYRE_ADD_RLX(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define VYRE_CAS_ACQ(p, expp, d) \
    __atomic_compare_exchange_n((p), (expp), (d), 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)
#define VYRE_CAS_RLX(p, expp, d) \
    __atomic_compare_exchange_n((p), (expp), (d), 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)
#endif

/* VYRE_BACKOFF(round): one wait step of a bounded spin (LOAD_MISS waiting for the host, the
 * test spin op). `round` counts the steps of this wait from 0; implementations grow the pause
 * with it up to about 1 ms. The CPU worker defines its own (pause, yield, then sleep) before
 * including this header; the defaults are __nanosleep on the GPU and a CPU pause hint. */
#ifndef VYRE_BACKOFF
#ifdef __CUDA_ARCH__
#if __CUDA_ARCH__ >= 700
#define VYRE_BACKOFF(round) \
    __nanosleep((round) < 15u ? (32u << (round)) : 1000000u)
#else
#define VYRE_BACKOFF(round) ((void)(round))
#endif
#elif defined(__x86_64__) || defined(__i386__)
#define VYRE_BACKOFF(round) ((void)(round), __builtin_ia32_pause())
#elif defined(__aarch64__)
#define VYRE_BACKOFF(round) ((void)(round), __asm__ __volatile__("yield" ::: "memory"))
#else
#define VYRE_BACKOFF(round) ((void)(round))
#endif
#endif

/* VYRE_PROGRESS(c): called from long-running work (every MiB of a DFA_SCAN, every wait step of
 * LOAD_MISS) so a backend whose heartbeat comes from its workers keeps
 * beating while one is busy. The CPU worker defines it; the GPU's flusher warp beats anyway. */
#ifndef VYRE_PROGRESS
#define VYRE_PROGRESS(c) ((void)(c))
#endif
/* VYRE_SCAN_PROGRESS(c): the same, from a scan that has just consumed another MiB (work done,
 * not a wait), so a host can tell a long slot that works from one that waits forever. */
#ifndef VYRE_SCAN_PROGRESS
#define VYRE_SCAN_PROGRESS(c) VYRE_PROGRESS(c)
#endif

/* LOAD_MISS: how many VYRE_BACKOFF steps a request may sit in the io queue without the host
 * picking it up (PUBLISHED) before the lane withdraws it (CAS PUBLISHED -> EMPTY) and the slot
 * ends in FAULT. With the backoffs above (growing to ~1 ms) the default is about two seconds.
 * Once the host has claimed the request the lane waits for OK/ERROR (or SHUTDOWN) without a
 * bound.
 * VYRE_IO_WITHDRAW: withdrawal needs a CAS that is atomic against the host's claiming CAS.
 * A GPU's system-scope RMW on mapped host memory is not (no host-native atomics over PCIe,
 * see docs/decisions.md), so on the device the lane never withdraws: it waits for OK/ERROR
 * until SHUTDOWN (a request nobody serves shows up as a stalled CLAIMED slot). */
#ifndef VYRE_IO_WAIT_ROUNDS
#ifdef VYRE_TEST_HOOKS
#define VYRE_IO_WAIT_ROUNDS 128u
#else
#define VYRE_IO_WAIT_ROUNDS 2048u
#endif
#endif

#ifndef VYRE_IO_WITHDRAW
#ifdef __CUDA_ARCH__
#define VYRE_IO_WITHDRAW 0
#else
#define VYRE_IO_WITHDRAW 1
#endif
#endif

/* Test-only user opcodes (their ops are built only with -DVYRE_TEST_HOOKS=1, never in a
 * release build; the numbers are defined everywhere so that tests read them from here):
 *   SPIN : spins (with backoff) until control[SHUTDOWN] != 0, then leaves the slot CLAIMED
 *          (a slot that never finishes; the spin honours a hard stop).
 *   STALL: busy-waits a0 milliseconds IGNORING shutdown, then finishes DONE (a worker that
 *          does not exit in time). */
#define VYRE_TEST_OP_SPIN 0x3FFFFF00u
#define VYRE_TEST_OP_STALL 0x3FFFFF01u
#ifdef VYRE_TEST_HOOKS
#ifdef __CUDA_ARCH__
VYRE_FN uint64_t vyre_now_ns_(void) {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#else
#include <time.h>
VYRE_FN uint64_t vyre_now_ns_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
#endif
#endif

#ifndef __CUDA_ARCH__
#include <string.h>
#endif

/* ==== small helpers ========================================================================= */

VYRE_FN uint32_t *vyre_slot_ptr_(const vyre_ctx_t *c, uint32_t slot) {
    return c->ring + (size_t)slot * VYRE_SLOT_WORDS;
}

/* control[i]; a load past the end reads 0, a store / atomic past the end does nothing */
VYRE_FN uint32_t vyre_ctl_ld_(const vyre_ctx_t *c, uint64_t i) {
    return i < c->control_words ? VYRE_LD_RLX(c->control + i) : 0u;
}
VYRE_FN void vyre_ctl_st_(const vyre_ctx_t *c, uint64_t i, uint32_t v) {
    if (i < c->control_words) VYRE_ST_RLX(c->control + i, v);
}
VYRE_FN void vyre_ctl_add_(const vyre_ctx_t *c, uint64_t i, uint32_t v) {
    if (i < c->control_words) VYRE_ADD_RLX(c->control + i, v);
}
/* obs[i] = control[160 + i]; [fix] i >= observable_slots is out of range (no wrap) */
VYRE_FN int vyre_obs_ok_(const vyre_ctx_t *c, uint32_t i) {
    return i < c->observable_slots &&
           (uint64_t)i + VYRE_CTRL_OBSERVABLE_BASE < (uint64_t)c->control_words;
}
VYRE_FN uint32_t vyre_obs_ld_(const vyre_ctx_t *c, uint32_t i) {
    return vyre_obs_ok_(c, i) ? VYRE_LD_RLX(c->control + VYRE_CTRL_OBSERVABLE_BASE + i) : 0u;
}
VYRE_FN void vyre_obs_st_(const vyre_ctx_t *c, uint32_t i, uint32_t v) {
    if (vyre_obs_ok_(c, i)) VYRE_ST_RLX(c->control + VYRE_CTRL_OBSERVABLE_BASE + i, v);
}
VYRE_FN void vyre_obs_add_(const vyre_ctx_t *c, uint32_t i, uint32_t v) {
    if (vyre_obs_ok_(c, i)) VYRE_ADD_RLX(c->control + VYRE_CTRL_OBSERVABLE_BASE + i, v);
}

/* Buffer handle h -> (pointer, byte length). Handle 0 is the control buffer; a handle at or
 * past buf_count (or a NULL address) is an empty buffer, so every access to it is out of range. */
VYRE_FN uint64_t vyre_buf_view_(const vyre_ctx_t *c, uint32_t h, uint8_t **ptr) {
    if (h == VYRE_CONTROL_HANDLE) {
        *ptr = (uint8_t *)c->control;
        return (uint64_t)c->control_words * 4u;
    }
    if (h >= c->buf_count || h >= VYRE_MAX_BUFFERS || c->bufs == NULL) {
        *ptr = NULL;
        return 0;
    }
    *ptr = (uint8_t *)(uintptr_t)c->bufs[h].addr;
    return *ptr ? c->bufs[h].bytes : 0;
}

#ifndef __CUDA_ARCH__
/* unaligned-safe plain u32 load (one mov on x86) */
VYRE_FN uint32_t vyre_ld32_(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
#endif

/* u32 word `idx` of a buffer (plain load; 0 past the end). Tables should be 4-byte aligned;
 * on the host an unaligned table still works. */
VYRE_FN uint32_t vyre_word_at_(const uint8_t *p, uint64_t bytes, uint64_t idx) {
    if (idx >= (bytes >> 2)) return 0u;
#ifdef __CUDA_ARCH__
    return ((const uint32_t *)p)[idx];
#else
    return vyre_ld32_(p + idx * 4u);
#endif
}

/* ==== per-op results (docs/ops.md, "Results") ==================================================== */

/* r[0..3] into slot words 12..15. Called before the final status is stored with release order
 * (by vyre_finish on the CPU, by the megakernel's loop on the GPU), so a host that sees DONE
 * or FAULT (acquire) sees the results. */
VYRE_FN void vyre_store_results(const vyre_ctx_t *c, uint32_t slot, const uint32_t *r) {
    uint32_t *dst = vyre_slot_ptr_(c, slot) + VYRE_SLOT_RESULT;
#ifdef __CUDA_ARCH__
    *(uint4 *)dst = make_uint4(r[0], r[1], r[2], r[3]); /* words 12..15: 16-byte aligned */
#else
    for (uint32_t i = 0; i < VYRE_RESULT_WORDS; ++i) VYRE_ST_RLX(dst + i, r[i]);
#endif
}

VYRE_FN uint32_t vyre_fault_(uint32_t *r, uint32_t reason, uint32_t d0, uint32_t d1, uint32_t d2) {
    r[0] = reason;
    r[1] = d0;
    r[2] = d1;
    r[3] = d2;
    return VYRE_STATUS_FAULT;
}

/* ==== claim ================================================================================ */

VYRE_FN int vyre_claim_from(const vyre_ctx_t *c, uint32_t slot, uint32_t from) {
    uint32_t *st = vyre_slot_ptr_(c, slot);
    uint32_t expected = from;
    return VYRE_CAS_ACQ(st, &expected, VYRE_STATUS_CLAIMED) ? 1 : 0;
}

/* CAS(status PUBLISHED -> CLAIMED), system scope, acquire on success. 1 = claimed. */
VYRE_FN int vyre_claim(const vyre_ctx_t *c, uint32_t slot) {
    return vyre_claim_from(c, slot, VYRE_STATUS_PUBLISHED);
}

/* ==== tenants and the protected-word rule ==================================================== */

/* docs/spec.md §5 on words already read: len = control[141], mask = control[control[2] + tenant] */
VYRE_FN int vyre_tenant_verdict(uint32_t tenant, uint32_t len, uint32_t mask) {
    return tenant < len && mask != 0u;
}

/* docs/spec.md §5: tenant < control[141] and control[control[2] + tenant] != 0 */
VYRE_FN int vyre_tenant_ok_(const vyre_ctx_t *c, uint32_t tenant) {
    /* The three loads are independent so a GPU issues them together (one PCIe round trip
     * instead of three): the mask is read at the base the encoder writes, and read again
     * only when control[TENANT_BASE] was moved. */
    const uint32_t len = vyre_ctl_ld_(c, VYRE_CTRL_TENANT_TABLE_LEN);
    const uint32_t base = vyre_ctl_ld_(c, VYRE_CTRL_TENANT_BASE);
    uint32_t mask = vyre_ctl_ld_(c, (uint64_t)VYRE_TENANT_MASK_BASE + tenant);
    if (base != VYRE_TENANT_MASK_BASE && tenant < len) mask = vyre_ctl_ld_(c, (uint64_t)base + tenant);
    return vyre_tenant_verdict(tenant, len, mask);
}

/* docs/spec.md §3.1: 1 when op (with args a) would write a control word below OBSERVABLE_BASE, with
 * *word = the first such word it aims at. Only consulted for tenants != 0; tenant 0 may write
 * anything. System counters the runtime keeps itself (EPOCH of BATCH_FENCE, metrics,
 * DONE/FAULT counts) are not user-targeted writes. User ops are judged on each write instead
 * (vyre_op.h), since their targets are not in their args. */
VYRE_FN int vyre_writes_protected_(uint32_t op, const uint32_t *a, uint32_t *word) {
    switch (op) {
    case VYRE_OP_STORE_U32:
    case VYRE_OP_ATOMIC_ADD:
        *word = a[1];
        return a[1] < VYRE_CTRL_OBSERVABLE_BASE;
    case VYRE_OP_COMPARE_SWAP:
        *word = a[0];
        return a[0] < VYRE_CTRL_OBSERVABLE_BASE;
    case VYRE_OP_MEMCPY: /* the whole destination range is checked before anything is written */
        *word = a[1];
        return a[2] != 0u && a[1] < VYRE_CTRL_OBSERVABLE_BASE;
    case VYRE_OP_BUF_COPY: /* destination = control (handle 0) and its byte range reaches the header */
        *word = a[3] >> 2;
        return a[2] == VYRE_CONTROL_HANDLE && a[4] != 0u &&
               a[3] < VYRE_CTRL_OBSERVABLE_BASE * 4u;
    case VYRE_OP_DFA_MATCH: /* counters (a9 > 0) and records (a11 > 0) into control */
        if (a[7] != VYRE_CONTROL_HANDLE) return 0;
        if (a[9] != 0u && a[8] < VYRE_CTRL_OBSERVABLE_BASE) {
            *word = a[8];
            return 1;
        }
        *word = a[10];
        return a[11] != 0u && a[10] < VYRE_CTRL_OBSERVABLE_BASE;
    case VYRE_OP_LOAD_MISS: /* the host writes the data at byte 0 of the destination (docs/spec.md
                             * §8): into control that is SHUTDOWN onwards, whatever the count */
        *word = VYRE_CTRL_SHUTDOWN;
        return a[2] == VYRE_CONTROL_HANDLE;
    case VYRE_OP_SHUTDOWN:
        *word = VYRE_CTRL_SHUTDOWN;
        return 1;
    default:
        return 0;
    }
}

/* ==== DFA ================================================================================== */

#ifdef __CUDA_ARCH__
/* The GPU's scan loop over dp[p, end). The data usually sits in host memory (staging), where
 * one byte per dependent load cost a PCIe round trip per byte (measured 47 MB/s for a whole
 * GpuStream). So each lane reads 128-byte blocks as 16-byte loads, the next block in flight
 * while it steps through the current one in registers. Data loads are ld.global.cg (L2 only:
 * never a stale L1 line of a reused staging chunk); table loads go through the read-only
 * cache (__ldg), since each step waits on one (an L2 hit per byte measured 0.29 GB/s per
 * warp). A table buffer must therefore not change while scans that use it may run. */
/* One DFA step on the GPU: *st moves on byte b; returns 1 when the transition accepts. */
static __device__ __forceinline__ uint32_t vyre_dfa_step_dev_(const uint32_t *tab, uint64_t n,
                                                              uint32_t *st, uint32_t b) {
    const uint64_t i = (uint64_t)*st * VYRE_DFA_ALPHABET + b;
    const uint32_t e = i < n ? __ldg(tab + i) : 0u;
    *st = e & VYRE_DFA_STATE_MASK;
    return e >> 31;
}
#define VYRE_DFA_STEP_(b)                                                              \
    do {                                                                               \
        const uint32_t a_ = vyre_dfa_step_dev_(tab, n, &st, (b));                      \
        if (counting) acc += a_;                                                       \
    } while (0)
static __device__ __forceinline__ void vyre_dfa_run_dev_(const vyre_ctx_t *c, const uint32_t *tab,
                                                         uint64_t n, const uint8_t *dp, uint64_t p,
                                                         uint64_t end, uint32_t *st_io,
                                                         uint32_t *acc_io, int counting) {
    uint32_t st = *st_io, acc = *acc_io;
    for (; p < end && (((uintptr_t)(dp + p)) & 15u) != 0u; ++p) VYRE_DFA_STEP_(__ldcg(dp + p));
    uint4 next[8];
    if (p + 128u <= end) {
#pragma unroll
        for (int k = 0; k < 8; ++k) next[k] = __ldcg((const uint4 *)(dp + p) + k);
    }
    for (; p + 128u <= end; p += 128u) {
        if (counting && (p & 0xFFFFFu) < 128u) VYRE_PROGRESS(c);
        uint4 v[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = next[k];
        if (p + 256u <= end) {  /* the next block's loads overlap this block's steps */
#pragma unroll
            for (int k = 0; k < 8; ++k) next[k] = __ldcg((const uint4 *)(dp + p + 128u) + k);
        }
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const uint32_t w4[4] = {v[k].x, v[k].y, v[k].z, v[k].w};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                VYRE_DFA_STEP_(w4[j] & 0xFFu);
                VYRE_DFA_STEP_((w4[j] >> 8) & 0xFFu);
                VYRE_DFA_STEP_((w4[j] >> 16) & 0xFFu);
                VYRE_DFA_STEP_(w4[j] >> 24);
            }
        }
    }
    for (; p < end; ++p) VYRE_DFA_STEP_(__ldcg(dp + p));
    *st_io = st;
    *acc_io = acc;
}
#undef VYRE_DFA_STEP_

/* Ways: independent state chains per lane in the cooperative scan. One chain waits on a
 * dependent table load per byte, and with the megakernel's 4 warps per SM nothing hides that
 * latency, so a lane that steps W segments in turn keeps W loads in flight (measured:
 * docs/decisions.md, "Each lane steps four segments in lockstep"). */
#ifndef VYRE_SCAN_WAYS
#define VYRE_SCAN_WAYS 4
#endif

/* Offset x of dp moved down to a 16-byte aligned address, but never below floor. */
static __device__ __forceinline__ uint64_t vyre_align16_down_(const uint8_t *dp, uint64_t x,
                                                              uint64_t floor) {
    const uint64_t mis = (uint64_t)(((uintptr_t)(dp + x)) & 15u);
    return x - floor < mis ? floor : x - mis;
}

/* What a lane's ways do at a counted accepting position: DFA_SCAN only counts it
 * (vyre_dfa_no_sink_); DFA_MATCH's sink also names the patterns ending there (hit: the state
 * the step entered, the byte's offset in dp). The check compiles away for DFA_SCAN. */
struct vyre_dfa_no_sink_ {
    static constexpr bool hits = false;
    __device__ void hit(uint32_t, uint64_t) {}
    __device__ void block(const uint32_t *, uint64_t, const uint8_t *, uint64_t, uint32_t, uint32_t) {}
};
#define VYRE_WAY_COUNT_(a, j, pos)                                 \
    do {                                                           \
        const uint32_t a_ = (a);                                   \
        acc += a_;                                                 \
        if (Sink::hits && a_ != 0u) sink.hit(st[(j)], (pos));      \
    } while (0)

/* One lane's share of a warp-cooperative scan of the counted range [A, B) (offsets into dp,
 * lo + ctx <= A <= B): the range is cut into 32 * VYRE_SCAN_WAYS segments with 16-byte aligned
 * inner bounds, this lane steps its VYRE_SCAN_WAYS neighbouring segments interleaved. A segment
 * starting at lo + ctx runs from lo with start_state; any other re-reads at least ctx bytes
 * before it from state 0 (exact: docs/spec.md §3's context property holds for any cut, not only the
 * a6 split). Accepts of this lane's segments go to *acc; *end gets the state at the end of its
 * last segment (lane 31's is the state at B); each counted accept also goes to sink.hit. */
template <class Sink>
static __device__ __forceinline__ void vyre_dfa_lane_ways_(const uint32_t *tab, uint64_t n,
                                                           const uint8_t *dp, uint64_t lo,
                                                           uint64_t ctx, uint32_t start_state,
                                                           uint64_t A, uint64_t B, unsigned lane,
                                                           uint32_t *acc_out, uint32_t *end_out,
                                                           Sink &sink) {
    enum { W = VYRE_SCAN_WAYS };
    const uint64_t segs = 32u * (uint64_t)W, span = B - A;
    uint64_t p[W], s[W], e[W];
    uint32_t st[W], acc = 0;
#pragma unroll
    for (int j = 0; j < W; ++j) {
        const uint64_t g = (uint64_t)lane * W + (uint64_t)j;
        s[j] = g == 0u ? A : vyre_align16_down_(dp, A + span * g / segs, A);
        e[j] = g + 1u == segs ? B : vyre_align16_down_(dp, A + span * (g + 1u) / segs, A);
        if (s[j] == lo + ctx) {
            p[j] = lo;
            st[j] = start_state & VYRE_DFA_STATE_MASK;
        } else {
            p[j] = vyre_align16_down_(dp, s[j] - ctx, lo);
            st[j] = 0u;
        }
    }
    /* each way to a 16-byte boundary (only a segment that starts at lo is not on one) */
    uint64_t common = ~0ull;
#pragma unroll
    for (int j = 0; j < W; ++j) {
        for (; p[j] < e[j] && (((uintptr_t)(dp + p[j])) & 15u) != 0u; ++p[j]) {
            VYRE_WAY_COUNT_(vyre_dfa_step_dev_(tab, n, &st[j], __ldcg(dp + p[j])) & (uint32_t)(p[j] >= s[j]), j, p[j]);
        }
        const uint64_t nb = p[j] < e[j] ? (e[j] - p[j]) >> 5 : 0u;
        common = nb < common ? nb : common;
    }
    /* the 32-byte blocks every way has, in lockstep with no per-way branch (a predicated step
     * per way serialised the chains again), the next block's loads in flight */
    uint4 cur[W][2], nxt[W][2] = {};
    if (common > 0u) {
#pragma unroll
        for (int j = 0; j < W; ++j) {
            nxt[j][0] = __ldcg((const uint4 *)(dp + p[j]));
            nxt[j][1] = __ldcg((const uint4 *)(dp + p[j]) + 1);
        }
    }
    for (uint64_t i = 0; i < common; ++i) {
        uint32_t mask[W], st0[W], hit_ways = 0u;
#pragma unroll
        for (int j = 0; j < W; ++j) {
            st0[j] = st[j];
            cur[j][0] = nxt[j][0];
            cur[j][1] = nxt[j][1];
            const uint64_t q = p[j] + (i << 5);
            if (i + 1u < common) {
                nxt[j][0] = __ldcg((const uint4 *)(dp + q) + 2);
                nxt[j][1] = __ldcg((const uint4 *)(dp + q) + 3);
            }
            /* bit k: byte q + k is counted (a block can be partly context only in the segment
             * that starts at an unaligned A) */
            mask[j] = q >= s[j] ? 0xFFFFFFFFu : s[j] - q >= 32u ? 0u : 0xFFFFFFFFu << (uint32_t)(s[j] - q);
        }
#pragma unroll
        for (int w = 0; w < 8; ++w) {
#pragma unroll
            for (int k = 0; k < 4; ++k) {
#pragma unroll
                for (int j = 0; j < W; ++j) {
                    const uint4 v = cur[j][w >> 2];
                    const uint32_t word = (w & 3) == 0 ? v.x : (w & 3) == 1 ? v.y : (w & 3) == 2 ? v.z : v.w;
                    const uint32_t a_ = vyre_dfa_step_dev_(tab, n, &st[j], (word >> (8 * k)) & 0xFFu) &
                                        (mask[j] >> (4 * w + k));
                    acc += a_;
                    if (Sink::hits) hit_ways |= a_ << j;
                }
            }
        }
        /* a block where a way counted an accept is stepped again by the sink, byte by byte:
         * the lockstep steps above stay free of calls (and of the registers a call saves) */
        if (Sink::hits && hit_ways != 0u) {
#pragma unroll
            for (int j = 0; j < W; ++j)
                if ((hit_ways >> j) & 1u) sink.block(tab, n, dp, p[j] + (i << 5), st0[j], mask[j]);
        }
    }
    /* what is left of each way (segments differ by a block or two, plus a context prefix,
     * unless the span is short: see the guard in vyre_dfa_scan_warp_part_), one way after the
     * other */
#pragma unroll
    for (int j = 0; j < W; ++j) {
        uint64_t q = p[j] + (common << 5);
        for (; q + 16u <= e[j]; q += 16u) {
            const uint4 v = __ldcg((const uint4 *)(dp + q));
            const uint32_t w4[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int k = 0; k < 16; ++k) {
                VYRE_WAY_COUNT_(vyre_dfa_step_dev_(tab, n, &st[j], (w4[k >> 2] >> (8 * (k & 3))) & 0xFFu) & (uint32_t)(q + (uint64_t)k >= s[j]),
                                j, q + (uint64_t)k);
            }
        }
        for (; q < e[j]; ++q) {
            VYRE_WAY_COUNT_(vyre_dfa_step_dev_(tab, n, &st[j], __ldcg(dp + q)) & (uint32_t)(q >= s[j]), j, q);
        }
    }
    *acc_out = acc;
    *end_out = st[W - 1];
}
#undef VYRE_WAY_COUNT_
#endif

/* A DFA_SCAN's table and data views, with its range clamped to the data buffer: *len = a3
 * clamped, *ctx = min(a6, *len). Returns the table's byte size. */
VYRE_FN uint64_t vyre_dfa_range_(const vyre_ctx_t *c, const uint32_t args[12], uint8_t **tp,
                                 uint8_t **dp, uint64_t *len, uint64_t *ctx) {
    const uint64_t tbytes = vyre_buf_view_(c, args[0], tp);
    const uint64_t dbytes = vyre_buf_view_(c, args[1], dp);
    const uint64_t lo = args[2];
    uint64_t n = args[3];
    if (lo >= dbytes) n = 0;
    else if (n > dbytes - lo) n = dbytes - lo;
    *len = n;
    *ctx = args[6] < n ? (uint64_t)args[6] : n;
    return tbytes;
}

/* See the contract. Counted region [a2+ctx, a2+len) where len = a3 clamped to the data buffer
 * and ctx = min(a6, len); L = len - ctx is split into `parts` near-equal segments
 * [a2+ctx + L*k/parts, a2+ctx + L*(k+1)/parts). Part 0 scans from a2 with start_state; part
 * k > 0 scans from (segment start - ctx) with state 0 (exact by the context property). The
 * final state of the whole range is the end_state of part parts-1; the accepts are the sum
 * over all parts. When the range cannot be split (ctx == 0, i.e. a6 == 0 or an empty range,
 * or L == 0) part parts-1 scans everything from start_state and the other parts return
 * accepts = 0, end_state = start_state. */
VYRE_COLD void vyre_dfa_scan_part(const vyre_ctx_t *c, const uint32_t args[12], uint32_t start_state,
                                uint32_t part, uint32_t parts, uint32_t *accepts,
                                uint32_t *end_state) {
    uint8_t *tp, *dp;
    uint64_t len, ctx;
    const uint64_t tbytes = vyre_dfa_range_(c, args, &tp, &dp, &len, &ctx);
    const uint64_t lo = args[2];
    uint32_t st = start_state & VYRE_DFA_STATE_MASK;
    uint32_t acc = 0;
    uint64_t L = len - ctx;
    if (parts == 0u) parts = 1u;
    uint64_t scan_from, count_from, count_to;
    if (part >= parts) {
        *accepts = 0;
        *end_state = st;
        return;
    }
    if (parts == 1u || ctx == 0u || L == 0u) {
        if (part != parts - 1u) {
            *accepts = 0;
            *end_state = st;
            return;
        }
        scan_from = lo;
        count_from = lo + ctx;
        count_to = lo + len;
    } else {
        count_from = lo + ctx + (L * part) / parts;
        count_to = lo + ctx + (L * (part + 1u)) / parts;
        if (part == 0u) {
            scan_from = lo;
        } else {
            scan_from = count_from - ctx;
            st = 0u;
        }
    }
    const uint64_t n = tbytes >> 2; /* table entries */
#ifdef __CUDA_ARCH__
    vyre_dfa_run_dev_(c, (const uint32_t *)tp, n, dp, scan_from, count_from, &st, &acc, 0);
    vyre_dfa_run_dev_(c, (const uint32_t *)tp, n, dp, count_from, count_to, &st, &acc, 1);
#else
    uint64_t p = scan_from;
    for (; p < count_from; ++p) { /* context: steps only */
        if ((p & 0xFFFFFu) == 0u && VYRE_LD_RLX(c->control + VYRE_CTRL_SHUTDOWN) != 0u) break;
        uint64_t i = (uint64_t)st * VYRE_DFA_ALPHABET + dp[p];
        uint32_t e = i < n ? vyre_ld32_(tp + i * 4u) : 0u;
        st = e & VYRE_DFA_STATE_MASK;
    }
    for (; p < count_to; ++p) {
        if ((p & 0xFFFFFu) == 0u) {
            VYRE_SCAN_PROGRESS(c);
            /* a hard stop must not wait for gigabytes: the scan is abandoned */
            if (VYRE_LD_RLX(c->control + VYRE_CTRL_SHUTDOWN) != 0u) break;
        }
        uint64_t i = (uint64_t)st * VYRE_DFA_ALPHABET + dp[p];
        uint32_t e = i < n ? vyre_ld32_(tp + i * 4u) : 0u;
        acc += e >> 31;
        st = e & VYRE_DFA_STATE_MASK;
    }
    if (p < count_to) { /* abandoned at SHUTDOWN: no result (the caller leaves it CLAIMED) */
        *accepts = 0;
        *end_state = VYRE_DFA_NO_STATE;
        return;
    }
#endif
    *accepts = acc;
    *end_state = st;
}

#ifdef __CUDA_ARCH__
/* Part `part` of `parts` of a DFA_SCAN by a whole warp (every lane calls it): the counted range
 * of lane-parts part*32 .. part*32+31 of parts*32 together, so the warp's accepts summed and
 * lane 31's end state are those of vyre_dfa_scan_part over these lane-parts; scanned as
 * 32 * VYRE_SCAN_WAYS aligned segments where the range can be split. */
static __device__ __forceinline__ void vyre_dfa_scan_warp_part_(const vyre_ctx_t *c,
                                                                const uint32_t args[12],
                                                                uint32_t start_state, uint32_t part,
                                                                uint32_t parts, unsigned lane,
                                                                uint32_t *accepts,
                                                                uint32_t *end_state) {
    uint8_t *tp, *dp;
    uint64_t len, ctx;
    const uint64_t tbytes = vyre_dfa_range_(c, args, &tp, &dp, &len, &ctx);
    const uint64_t lo = args[2], L = len - ctx;
    if (parts == 0u) parts = 1u;
    /* the ways only where each of the 32 * W segments is long next to the context it re-reads;
     * a short part keeps docs/spec.md §3's 32 lane-parts */
    const uint64_t span = (L * (part + 1u)) / parts - (L * part) / parts;
    if (VYRE_SCAN_WAYS < 2 || ctx == 0u || L == 0u || part >= parts ||
        span < 32u * VYRE_SCAN_WAYS * (ctx + 64u)) {
        vyre_dfa_scan_part(c, args, start_state, part * 32u + lane, parts * 32u, accepts, end_state);
        return;
    }
    const uint64_t A = lo + ctx + (L * part) / parts, B = lo + ctx + (L * (part + 1u)) / parts;
    vyre_dfa_no_sink_ none;
    vyre_dfa_lane_ways_((const uint32_t *)tp, tbytes >> 2, dp, lo, ctx, start_state, A, B, lane,
                        accepts, end_state, none);
}
#endif

/* ==== cooperative DFA_SCAN (the megakernel's warp path) ======================================
 * wants_lanes: the claimed slot's words are a DFA_SCAN, or a DFA_MATCH whose out buffer is not
 *   control (vyre_dfa_match_coop_begin), with context (a6 > 0) over at least min_bytes (and
 *   more than a6) bytes, so a warp may split it.
 * begin: from the claimed slot's words; 1 = it is an authorized DFA_SCAN: args and the start state
 *   (obs[a4], or 0 when a4 = 0xFFFFFFFF) are filled in; 0 = run vyre_execute instead (it
 *   faults an unauthorized tenant). DFA_SCAN writes only observables, so no protected words.
 * commit: store the final state (unless a4 = 0xFFFFFFFF) and add the accepts (sum over the
 *   parts; final state = end_state of part parts-1); returns the result for vyre_finish. */
VYRE_FN void vyre_load_slot_(const vyre_ctx_t *c, uint32_t slot, uint32_t *w);
VYRE_FN int vyre_tenant_ok_(const vyre_ctx_t *c, uint32_t tenant);

VYRE_FN int vyre_dfa_scan_wants_lanes(const uint32_t *w, uint32_t min_bytes) {
    const uint32_t op = w[VYRE_SLOT_OPCODE];
    if (op != VYRE_OP_DFA_SCAN &&
        (op != VYRE_OP_DFA_MATCH || w[VYRE_SLOT_ARGS + 7] == VYRE_CONTROL_HANDLE))
        return 0;
    const uint32_t len = w[VYRE_SLOT_ARGS + 3], ctx = w[VYRE_SLOT_ARGS + 6];
    return ctx != 0u && len > ctx && len >= min_bytes;
}

VYRE_FN int vyre_dfa_scan_begin(const vyre_ctx_t *c, const uint32_t *w, uint32_t args[12],
                                uint32_t *start_state) {
    if (w[VYRE_SLOT_OPCODE] != VYRE_OP_DFA_SCAN || !vyre_tenant_ok_(c, w[VYRE_SLOT_TENANT]))
        return 0;
    for (uint32_t i = 0; i < VYRE_SLOT_ARG_COUNT; ++i) args[i] = w[VYRE_SLOT_ARGS + i];
    *start_state = args[4] == VYRE_DFA_NO_STATE ? 0u : vyre_obs_ld_(c, args[4]);
    return 1;
}

VYRE_FN vyre_result_t vyre_dfa_scan_commit(const vyre_ctx_t *c, const uint32_t args[12],
                                           uint32_t accepts, uint32_t end_state) {
    if (args[4] != VYRE_DFA_NO_STATE) vyre_obs_st_(c, args[4], end_state);
    if (accepts != 0u) vyre_obs_add_(c, args[5], accepts);
    vyre_result_t r;
    r.status = VYRE_STATUS_DONE;
    r.metric_op = VYRE_NO_METRIC;
    return r;
}

/* commit, and DFA_SCAN's results [accepts, final state, 0, 0] into the slot */
VYRE_FN vyre_result_t vyre_dfa_scan_commit_slot(const vyre_ctx_t *c, uint32_t slot,
                                                const uint32_t args[12], uint32_t accepts,
                                                uint32_t end_state) {
    const uint32_t res[VYRE_RESULT_WORDS] = {accepts, end_state, 0u, 0u};
    vyre_store_results(c, slot, res);
    return vyre_dfa_scan_commit(c, args, accepts, end_state);
}

/* ==== DFA_MATCH (docs/spec.md §3.2) =================================================
 * DFA_SCAN's pass (state 0 at a2, no accepts counted inside the first min(a6, len) bytes, one
 * per accepting position into obs[a5]) that also names the patterns ending at each counted
 * position. The id table (handle a4, a9 = patterns) is `a9` words same_next[id] (the next id
 * with the same bytes, or VYRE_DFA_NO_ID) followed by [own_id, dict_link] per state: the
 * patterns ending in state q are own_id[q], same_next[own_id[q]], ..., then those of
 * dict_link[q] (the nearest state on q's failure chain that ends a pattern), so the walk costs
 * one step per match and nothing at positions where no pattern ends. Each match adds 1 to
 * counter word a8 + id of the out buffer (handle a7; atomically: the slices of one chunk share
 * the counters) and, while the region has room, appends [id, p + 1 - a2] at word
 * a10 + 1 + 2 * k, k reserved by an atomic add on word a10 (the record counter; it ends as the
 * number of records written). The range runs as DFA_SCAN's lane-parts (VYRE_DFA_LANE_PARTS,
 * concurrently on a warp), so records come in no specified order and a full region keeps an
 * unspecified subset; counts and records written = min(matches, a11) are exact. A walk that
 * leaves the id table or names more than a9 ids faults (corrupt table).
 * Results: [positions, matches (low 32 bits), records written, 0]. */
#ifdef __CUDA_ARCH__
#define VYRE_LD_RO32_(p, i) __ldg((const uint32_t *)(p) + (i))
#define VYRE_LD_BYTE_(p) __ldcg(p)
#else
#define VYRE_LD_RO32_(p, i) vyre_ld32_((const uint8_t *)(p) + (uint64_t)(i) * 4u)
#define VYRE_LD_BYTE_(p) (*(p))
#endif

/* first word of [w, w + n) past a buffer of `words` words (none: returns 0 and *bad unset) */
VYRE_FN int vyre_words_out_(uint64_t w, uint64_t n, uint64_t words, uint32_t *bad) {
    if (n == 0u || w + n <= words) return 0;
    const uint64_t first = w >= words ? w : words;
    *bad = first > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)first;
    return 1;
}

/* Checks made once per slot before any lane-part runs (alignment, counters and record region
 * inside the out buffer), then the record counter (word a10) set to 0 for the parts' atomic
 * appends. DONE, or FAULT with the reason in res. */
VYRE_FN uint32_t vyre_dfa_match_begin_(const vyre_ctx_t *c, const uint32_t *a, uint32_t *res) {
    uint8_t *tp, *ip, *op;
    vyre_buf_view_(c, a[0], &tp);
    vyre_buf_view_(c, a[4], &ip);
    const uint64_t obytes = vyre_buf_view_(c, a[7], &op);
    const uint64_t cap = a[11];
    uint32_t bad = 0u;
    if (((uintptr_t)tp & 3u) != 0u) return vyre_fault_(res, VYRE_FAULT_MISALIGNED, a[0], 0u, 0u);
    if (((uintptr_t)ip & 3u) != 0u) return vyre_fault_(res, VYRE_FAULT_MISALIGNED, a[4], 0u, 0u);
    if (((uintptr_t)op & 3u) != 0u) return vyre_fault_(res, VYRE_FAULT_MISALIGNED, a[7], 0u, 0u);
    if (vyre_words_out_(a[8], a[9], obytes >> 2, &bad) ||
        vyre_words_out_(a[10], cap ? 1u + VYRE_DFA_RECORD_WORDS * cap : 0u, obytes >> 2, &bad))
        return vyre_fault_(res, VYRE_FAULT_OUT_OF_BOUNDS, a[7], bad, 0u);
    if (cap) VYRE_ST_RLX((uint32_t *)op + a[10], 0u);
    return VYRE_STATUS_DONE;
}

/* Where a DFA_MATCH's matches go: the id table, the out buffer's counters and record region. */
typedef struct vyre_match_out {
    const uint8_t *ip;   /* id table (handle a4) */
    uint64_t ni, np;     /* its words; patterns (a9) */
    uint32_t *counters;  /* out buffer word a8 */
    uint32_t *records;   /* out buffer word a10: the record counter, then the records */
    uint64_t cap, lo;    /* record capacity (a11); a2, the range's first byte */
    uint32_t id_handle;  /* a4, named by a fault */
    uint32_t matches;    /* matches so far */
    uint32_t full;       /* 1: no record reservations (cap 0, or one failed) */
} vyre_match_out_t;

VYRE_FN void vyre_match_out_init_(const vyre_ctx_t *c, const uint32_t *a, vyre_match_out_t *m) {
    uint8_t *ip, *op;
    const uint64_t ibytes = vyre_buf_view_(c, a[4], &ip);
    vyre_buf_view_(c, a[7], &op);
    m->ip = ip;
    m->ni = ibytes >> 2;
    m->np = a[9];
    m->counters = (uint32_t *)op + a[8];
    m->records = (uint32_t *)op + a[10];
    m->cap = a[11];
    m->lo = a[2];
    m->id_handle = a[4];
    m->matches = 0u;
    m->full = a[11] == 0u;
}

/* The patterns ending at counted byte p, whose step entered state st: a count each and, while
 * the region has room, a record [id, p + 1 - a2]. DONE, or FAULT (a corrupt id table). */
VYRE_COLD uint32_t vyre_dfa_match_hit_(vyre_match_out_t *m, uint32_t st, uint64_t p,
                                       uint32_t *res) {
    const uint32_t end = (uint32_t)(p + 1u - m->lo);
    const uint64_t np = m->np;
    uint64_t ids = 0u, hops = 0u;
    for (uint32_t q = st; q != VYRE_DFA_NO_ID;) {
        const uint64_t w = np + 2u * (uint64_t)q;
        if (w + 2u > m->ni || ++hops > np + 1u)
            return vyre_fault_(res, VYRE_FAULT_OUT_OF_BOUNDS, m->id_handle,
                               w > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)w, 0u);
        uint32_t id = VYRE_LD_RO32_(m->ip, w);
        q = VYRE_LD_RO32_(m->ip, w + 1u);
        while (id != VYRE_DFA_NO_ID) {
            if (id >= np || ++ids > np)
                return vyre_fault_(res, VYRE_FAULT_OUT_OF_BOUNDS, m->id_handle, id, 0u);
            VYRE_ADD_RLX(m->counters + id, 1u);
            ++m->matches;
            /* a reserved k < cap is this part's record; once one reservation failed the part
             * stops reserving, so the counter ends below cap + parts (no wrap) and a full
             * region costs no atomic per match */
            if (!m->full) {
                const uint64_t k = VYRE_ADD_RLX(m->records, 1u);
                if (k < m->cap) {
                    VYRE_ST_RLX(m->records + 1u + VYRE_DFA_RECORD_WORDS * k, id);
                    VYRE_ST_RLX(m->records + 2u + VYRE_DFA_RECORD_WORDS * k, end);
                } else {
                    m->full = 1u;
                }
            }
            id = VYRE_LD_RO32_(m->ip, id);
        }
    }
    return VYRE_STATUS_DONE;
}

/* Lane-part `part` of `parts` of a DFA_MATCH whose vyre_dfa_match_begin_ passed: the bytes
 * vyre_dfa_scan_part(part, parts) counts (re-reading the context before them from state 0),
 * their positions and matches into *positions and *matches, counters added and records
 * appended through the record counter. DONE; FAULT (a corrupt id table, reason in res);
 * CLAIMED when abandoned at SHUTDOWN (CPU). */
VYRE_COLD uint32_t vyre_dfa_match_part(const vyre_ctx_t *c, const uint32_t *a, uint32_t part,
                                       uint32_t parts, uint32_t *positions_out,
                                       uint32_t *matches_out, uint32_t *res) {
    uint8_t *tp, *dp;
    uint64_t len, ctx;
    const uint64_t tbytes = vyre_dfa_range_(c, a, &tp, &dp, &len, &ctx);
    const uint64_t nt = tbytes >> 2;
    vyre_match_out_t m;
    vyre_match_out_init_(c, a, &m);
    const uint64_t lo = a[2], L = len - ctx;
    *positions_out = 0u;
    *matches_out = 0u;
    if (parts == 0u) parts = 1u;
    if (part >= parts) return VYRE_STATUS_DONE;
    uint64_t p = lo, from = lo + ctx, to = lo + len;
    if (parts == 1u || ctx == 0u || L == 0u) { /* not splittable: the last part scans it all */
        if (part != parts - 1u) return VYRE_STATUS_DONE;
    } else {
        from = lo + ctx + (L * part) / parts;
        to = lo + ctx + (L * (part + 1u)) / parts;
        p = from - ctx;
    }
    uint32_t st = 0u, positions = 0u;
    for (; p < from; ++p) { /* context: steps only */
#ifndef __CUDA_ARCH__
        if ((p & 0xFFFFFu) == 0u && VYRE_LD_RLX(c->control + VYRE_CTRL_SHUTDOWN) != 0u) break;
#endif
        const uint64_t i = (uint64_t)st * VYRE_DFA_ALPHABET + VYRE_LD_BYTE_(dp + p);
        st = (i < nt ? VYRE_LD_RO32_(tp, i) : 0u) & VYRE_DFA_STATE_MASK;
    }
    for (; p < to; ++p) {
        if ((p & 0xFFFFFu) == 0u) {
            VYRE_SCAN_PROGRESS(c);
#ifndef __CUDA_ARCH__
            if (VYRE_LD_RLX(c->control + VYRE_CTRL_SHUTDOWN) != 0u) break; /* hard stop */
#endif
        }
        const uint64_t i = (uint64_t)st * VYRE_DFA_ALPHABET + VYRE_LD_BYTE_(dp + p);
        const uint32_t e = i < nt ? VYRE_LD_RO32_(tp, i) : 0u;
        st = e & VYRE_DFA_STATE_MASK;
        if ((e & VYRE_DFA_ACCEPT_BIT) == 0u) continue;
        ++positions;
        if (vyre_dfa_match_hit_(&m, st, p, res) != VYRE_STATUS_DONE) return VYRE_STATUS_FAULT;
    }
    *positions_out = positions;
    *matches_out = m.matches;
    if (p < to) return VYRE_STATUS_CLAIMED; /* abandoned at SHUTDOWN (CPU): no result */
    return VYRE_STATUS_DONE;
}

#ifdef __CUDA_ARCH__
/* DFA_MATCH's sink for a lane's ways: the first fault stops further hits (the part faults). */
struct vyre_dfa_match_sink_ {
    static constexpr bool hits = true;
    vyre_match_out_t m;
    uint32_t status;
    uint32_t res[VYRE_RESULT_WORDS];
    __device__ __noinline__ void hit(uint32_t st, uint64_t p) {
        if (status == VYRE_STATUS_DONE) status = vyre_dfa_match_hit_(&m, st, p, res);
    }
    /* the 32 bytes at q again from state st0, a hit at each counted accept (bit k of mask:
     * byte q + k is counted) */
    __device__ __noinline__ void block(const uint32_t *tab, uint64_t n, const uint8_t *dp,
                                       uint64_t q, uint32_t st0, uint32_t mask) {
        uint32_t st = st0;
        for (uint32_t k = 0; k < 32u; ++k) {
            if (vyre_dfa_step_dev_(tab, n, &st, __ldcg(dp + q + k)) & (mask >> k))
                hit(st, q + k);
        }
    }
};

/* Part `part` of `parts` of a DFA_MATCH by a whole warp (every lane calls it): lane-parts
 * part*32 .. part*32+31 of parts*32 together, scanned like vyre_dfa_scan_warp_part_ (the same
 * ways where the range is long, so a lane keeps VYRE_SCAN_WAYS table loads in flight instead
 * of one). This lane's positions and matches into *positions / *matches; DONE or FAULT (res). */
static __device__ __forceinline__ uint32_t vyre_dfa_match_warp_part_(const vyre_ctx_t *c,
                                                                     const uint32_t *a,
                                                                     uint32_t part, uint32_t parts,
                                                                     unsigned lane,
                                                                     uint32_t *positions,
                                                                     uint32_t *matches,
                                                                     uint32_t *res) {
    uint8_t *tp, *dp;
    uint64_t len, ctx;
    const uint64_t tbytes = vyre_dfa_range_(c, a, &tp, &dp, &len, &ctx);
    const uint64_t lo = a[2], L = len - ctx;
    if (parts == 0u) parts = 1u;
    const uint64_t span = (L * (part + 1u)) / parts - (L * part) / parts;
    if (VYRE_SCAN_WAYS < 2 || ctx == 0u || L == 0u || part >= parts ||
        span < 32u * VYRE_SCAN_WAYS * (ctx + 64u))
        return vyre_dfa_match_part(c, a, part * 32u + lane, parts * 32u, positions, matches, res);
    vyre_dfa_match_sink_ sink;
    vyre_match_out_init_(c, a, &sink.m);
    sink.status = VYRE_STATUS_DONE;
    const uint64_t A = lo + ctx + (L * part) / parts, B = lo + ctx + (L * (part + 1u)) / parts;
    uint32_t end;
    vyre_dfa_lane_ways_((const uint32_t *)tp, tbytes >> 2, dp, lo, ctx, 0u, A, B, lane, positions,
                        &end, sink);
    *matches = sink.m.matches;
    if (sink.status != VYRE_STATUS_DONE) {
        for (int i = 0; i < (int)VYRE_RESULT_WORDS; ++i) res[i] = sink.res[i];
        return sink.status;
    }
    return VYRE_STATUS_DONE;
}
#endif

/* After every lane-part is DONE: word a10 = records written (the counter clamped to a11), the
 * positions into obs[a5], results [positions, matches, records written, 0] into res. */
VYRE_FN uint32_t vyre_dfa_match_commit_(const vyre_ctx_t *c, const uint32_t *a,
                                        uint32_t positions, uint32_t matches, uint32_t *res) {
    uint32_t written = 0u;
    if (a[11] != 0u) {
        uint8_t *op;
        vyre_buf_view_(c, a[7], &op);
        uint32_t *const records = (uint32_t *)op + a[10];
        const uint32_t n = VYRE_LD_RLX(records);
        written = n < a[11] ? n : a[11];
        VYRE_ST_RLX(records, written);
    }
    if (positions) vyre_obs_add_(c, a[5], positions);
    res[0] = positions;
    res[1] = matches;
    res[2] = written;
    return VYRE_STATUS_DONE;
}

/* The whole slot on this thread: its VYRE_DFA_LANE_PARTS lane-parts in order, the lane-parts a
 * warp runs one per lane. The first part that faults (or is abandoned) ends the slot. */
VYRE_COLD uint32_t vyre_dfa_match_(const vyre_ctx_t *c, const uint32_t *a, uint32_t *res) {
    uint32_t s = vyre_dfa_match_begin_(c, a, res);
    if (s != VYRE_STATUS_DONE) return s;
    uint32_t positions = 0u, matches = 0u;
    for (uint32_t part = 0; part < VYRE_DFA_LANE_PARTS; ++part) {
        uint32_t pp, pm;
        s = vyre_dfa_match_part(c, a, part, VYRE_DFA_LANE_PARTS, &pp, &pm, res);
        if (s != VYRE_STATUS_DONE) return s;
        positions += pp;
        matches += pm;
    }
    return vyre_dfa_match_commit_(c, a, positions, matches, res);
}

/* Cooperative DFA_MATCH (the megakernel's warp path; vyre_dfa_scan_wants_lanes selects it):
 * begin: 1 = the claimed slot is an authorized DFA_MATCH whose out buffer is not control (so
 *   no protected words), its checks passed and its record counter is 0: args are filled in and
 *   the lane-parts may run, any number of them concurrently; 0 = run vyre_execute instead
 *   (it faults what begin refused, having written nothing).
 * commit_slot: once every lane-part ran (positions and matches summed over them), or with
 *   fault[0] != VYRE_FAULT_NONE the fault of one part that faulted: the results into the slot,
 *   the result for vyre_finish. */
VYRE_FN int vyre_dfa_match_coop_begin(const vyre_ctx_t *c, const uint32_t *w, uint32_t args[12]) {
    if (w[VYRE_SLOT_OPCODE] != VYRE_OP_DFA_MATCH || w[VYRE_SLOT_ARGS + 7] == VYRE_CONTROL_HANDLE ||
        !vyre_tenant_ok_(c, w[VYRE_SLOT_TENANT]))
        return 0;
    for (uint32_t i = 0; i < VYRE_SLOT_ARG_COUNT; ++i) args[i] = w[VYRE_SLOT_ARGS + i];
    uint32_t res[VYRE_RESULT_WORDS];
    return vyre_dfa_match_begin_(c, args, res) == VYRE_STATUS_DONE;
}

VYRE_FN vyre_result_t vyre_dfa_match_commit_slot(const vyre_ctx_t *c, uint32_t slot,
                                                 const uint32_t args[12], uint32_t positions,
                                                 uint32_t matches, const uint32_t fault[4]) {
    uint32_t res[VYRE_RESULT_WORDS] = {0u, 0u, 0u, 0u};
    vyre_result_t r;
    r.status = fault[0] != VYRE_FAULT_NONE
                   ? vyre_fault_(res, fault[0], fault[1], fault[2], fault[3])
                   : vyre_dfa_match_commit_(c, args, positions, matches, res);
    r.metric_op = VYRE_NO_METRIC;
    vyre_store_results(c, slot, res);
    return r;
}
#undef VYRE_LD_RO32_
#undef VYRE_LD_BYTE_

/* ==== opcode bodies ========================================================================= */

VYRE_COLD void vyre_memcpy_words_(const vyre_ctx_t *c, uint32_t src, uint32_t dst, uint32_t n) {
    /* ascending, element by element; indices do not wrap (src+i >= 2^32 is past the end).
     * Destinations past the end do nothing, so the loop stops at the end of control. */
    uint64_t cw = c->control_words;
    if ((uint64_t)dst >= cw) return;
    uint64_t count = n;
    if (count > cw - dst) count = cw - dst;
    for (uint64_t i = 0; i < count; ++i)
        VYRE_ST_RLX(c->control + dst + i, vyre_ctl_ld_(c, (uint64_t)src + i));
}

VYRE_COLD uint32_t vyre_buf_copy_(const vyre_ctx_t *c, const uint32_t *a, uint32_t *res) {
    uint8_t *sp, *dp;
    uint64_t sbytes = vyre_buf_view_(c, a[0], &sp);
    uint64_t dbytes = vyre_buf_view_(c, a[2], &dp);
    uint64_t n = a[4];
    if ((uint64_t)a[1] + n > sbytes) return vyre_fault_(res, VYRE_FAULT_OUT_OF_BOUNDS, a[0], a[1], 0u);
    if ((uint64_t)a[3] + n > dbytes) return vyre_fault_(res, VYRE_FAULT_OUT_OF_BOUNDS, a[2], a[3], 0u);
    if (n == 0u) return VYRE_STATUS_DONE;
    const uint8_t *s = sp + a[1];
    uint8_t *d = dp + a[3];
#ifdef __CUDA_ARCH__
    if (d <= s || d >= s + n) { /* forward (memmove semantics) */
        if ((((uintptr_t)s | (uintptr_t)d | n) & 3u) == 0u) {
            for (uint64_t i = 0; i < n; i += 4) *(uint32_t *)(d + i) = *(const uint32_t *)(s + i);
        } else {
            for (uint64_t i = 0; i < n; ++i) d[i] = s[i];
        }
    } else {
        for (uint64_t i = n; i-- > 0;) d[i] = s[i];
    }
#else
    memmove(d, s, (size_t)n);
#endif
    return VYRE_STATUS_DONE;
}

/* PRINTF: reserve 4 words at the cursor with a CAS so the cursor never passes capacity [fix];
 * a record that does not fit bumps the overflow word right after the last record. */
VYRE_COLD void vyre_printf_(const vyre_ctx_t *c, uint32_t slot, const uint32_t *a) {
    uint32_t *dbg = c->debug;
    if (dbg == NULL) return;
    const uint32_t cap = c->debug_records * VYRE_DEBUG_RECORD_WORDS;
    uint32_t cur = VYRE_LD_RLX(dbg + VYRE_DEBUG_CURSOR);
    for (;;) {
        if (cur > cap || cap - cur < VYRE_DEBUG_RECORD_WORDS) {
            VYRE_ADD_RLX(dbg + VYRE_DEBUG_HEADER_WORDS + cap, 1u);
            return;
        }
        if (VYRE_CAS_RLX(dbg + VYRE_DEBUG_CURSOR, &cur, cur + VYRE_DEBUG_RECORD_WORDS)) break;
    }
    uint32_t *rec = dbg + VYRE_DEBUG_HEADER_WORDS + cur;
    VYRE_ST_RLX(rec + 0, a[0]);
    VYRE_ST_RLX(rec + 1, a[1]);
    VYRE_ST_RLX(rec + 2, a[2]);
    VYRE_ST_RLX(rec + 3, slot);
}

/* LOAD_MISS(a0 = resource id, a1 = prefetch byte count, a2 = destination handle,
 * a3/a4 = offset lo/hi). IO slot fields written: op_type = READ, src_handle = a0,
 * dst_handle = a2, offset_lo = a3, offset_hi = a4, byte_count = a1, tag = ring slot index,
 * status = PUBLISHED last (release). See docs/interpreter.md. */
VYRE_COLD uint32_t vyre_load_miss_(const vyre_ctx_t *c, uint32_t slot, const uint32_t *a,
                                 uint32_t *res) {
    uint32_t n = c->io_slots < VYRE_IO_MAX_SLOTS ? c->io_slots : VYRE_IO_MAX_SLOTS;
    if (c->ioq == NULL || n == 0u) /* no io queue: cannot ever serve */
        return vyre_fault_(res, VYRE_FAULT_IO_UNAVAILABLE, a[0], 0u, 0u);
    uint32_t *io = NULL;
    uint32_t first = slot % n;
    for (uint32_t k = 0; k < n; ++k) {
        uint32_t i = first + k;
        if (i >= n) i -= n;
        uint32_t *st = c->ioq + (size_t)i * VYRE_IO_SLOT_WORDS + VYRE_IO_STATUS;
        uint32_t expected = VYRE_STATUS_EMPTY;
        if (VYRE_LD_RLX(st) == VYRE_STATUS_EMPTY && VYRE_CAS_ACQ(st, &expected, VYRE_STATUS_CLAIMED)) {
            io = c->ioq + (size_t)i * VYRE_IO_SLOT_WORDS;
            break;
        }
    }
    if (io == NULL) { /* [fix] no free io slot: park the ring slot, the worker retries it later */
        VYRE_ST_REL(vyre_slot_ptr_(c, slot) + VYRE_SLOT_STATUS, VYRE_STATUS_WAIT_IO);
        return VYRE_STATUS_CLAIMED;
    }
    VYRE_ST_RLX(io + VYRE_IO_OP_TYPE, VYRE_IO_READ);
    VYRE_ST_RLX(io + VYRE_IO_SRC_HANDLE, a[0]);
    VYRE_ST_RLX(io + VYRE_IO_DST_HANDLE, a[2]);
    VYRE_ST_RLX(io + VYRE_IO_OFFSET_LO, a[3]);
    VYRE_ST_RLX(io + VYRE_IO_OFFSET_HI, a[4]);
    VYRE_ST_RLX(io + VYRE_IO_BYTE_COUNT, a[1]);
    VYRE_ST_RLX(io + VYRE_IO_TAG, slot);
    VYRE_ST_REL(io + VYRE_IO_STATUS, VYRE_STATUS_PUBLISHED);
    uint32_t s;
    for (uint32_t round = 0;; ++round) {
        s = VYRE_LD_ACQ(io + VYRE_IO_STATUS);
        if (s == VYRE_IO_STATUS_OK || s == VYRE_IO_STATUS_ERROR) break;
        int stop = VYRE_LD_RLX(c->control + VYRE_CTRL_SHUTDOWN) != 0u;
        if (VYRE_IO_WITHDRAW && (stop || round >= VYRE_IO_WAIT_ROUNDS)) {
            /* withdraw the request if the host has not picked it up yet */
            uint32_t expected = VYRE_STATUS_PUBLISHED;
            if (VYRE_CAS_RLX(io + VYRE_IO_STATUS, &expected, VYRE_STATUS_EMPTY))
                return vyre_fault_(res, VYRE_FAULT_IO_UNAVAILABLE, a[0], stop ? 2u : 1u, 0u);
        }
        if (stop) /* hard stop: the request is abandoned */
            return vyre_fault_(res, VYRE_FAULT_IO_UNAVAILABLE, a[0], 2u, 0u);
        VYRE_PROGRESS(c);
        VYRE_BACKOFF(round < 64u ? round : 64u);
    }
    VYRE_ST_REL(io + VYRE_IO_STATUS, VYRE_STATUS_EMPTY); /* recycle */
    return s == VYRE_IO_STATUS_OK ? VYRE_STATUS_DONE
                                  : vyre_fault_(res, VYRE_FAULT_IO_ERROR, a[0], 0u, 0u);
}

/* ==== user ops (docs/ops.md) =================================================================
 * A non-system opcode (is_system in docs/spec.md §3 is false) goes to the build's dispatch:
 * VYRE_USER_DISPATCH(c, opcode, op) runs the op of `opcode` over op's lanes (vyre_op.h,
 * vyre_op_run_lanes) and returns 1, or 0 when no op has that opcode, or -1 when this build
 * has no user ops at all (vyre-runtime 0.6: the opcode does nothing and finishes DONE).
 * The CPU worker defines it as a call through the function pointer of its loaded ops; the
 * fused GPU build as a call of the generated vyre_user_dispatch.
 *
 * Running one slot's op over a warp, one lane per thread (the GPU):
 *   vyre_user_begin(c, slot, opcode, tenant, args, lane, lane + 1, &op);
 *   handled = VYRE_USER_DISPATCH(c, opcode, &op);          every lane
 *   merge the lanes in lane order with vyre_user_merge (or the same rule with shuffles:
 *   per result word the lowest lane whose result_kept_ has its bit; the lowest lane whose
 *   fault_kept_[0] != 0), then one lane: r = vyre_user_commit(c, slot, &merged, handled).
 * The whole op on one thread (the CPU, an inner op of a packed slot): lane 0 .. 32. */
#ifndef VYRE_USER_DISPATCH
#define VYRE_USER_DISPATCH(c, opcode, op) ((void)(c), (void)(opcode), (void)(op), -1)
#endif

/* docs/spec.md §3: is_system is false */
VYRE_FN int vyre_is_user_opcode(uint32_t op) {
    return (op & VYRE_SYSTEM_HIGH_BIT) == 0u && op > VYRE_OP_MAX_PRIMITIVE &&
           !(op >= VYRE_SYSTEM_RANGE_LO && op <= VYRE_SYSTEM_RANGE_HI);
}

/* op = a fresh run of lanes lane .. lane_end-1 of the op in the slot */
VYRE_FN void vyre_user_begin(const vyre_ctx_t *c, uint32_t slot, uint32_t opcode, uint32_t tenant,
                             const uint32_t *a, uint32_t lane, uint32_t lane_end, vyre_op_t *op) {
    for (uint32_t i = 0; i < VYRE_SLOT_ARG_COUNT; ++i) op->args[i] = a[i];
    op->opcode = opcode;
    op->tenant = tenant;
    op->slot = slot;
    op->lane = lane;
    op->lanes = VYRE_OP_LANES;
    for (uint32_t i = 0; i < VYRE_RESULT_WORDS; ++i) op->result[i] = 0u;
    op->fault = VYRE_FAULT_NONE;
    op->fault_detail[0] = op->fault_detail[1] = op->fault_detail[2] = 0u;
    op->lane_end_ = lane_end;
    op->result_mine_ = 0u;
    op->result_kept_ = 0u;
    op->fault_kept_[0] = op->fault_kept_[1] = op->fault_kept_[2] = op->fault_kept_[3] = 0u;
    op->control_words_ = c->control_words;
    op->observable_slots_ = c->observable_slots;
    op->buf_count_ = c->buf_count;
    op->control_ = c->control;
    op->bufs_ = c->bufs;
}

/* into (lower lanes) += from (the next higher lanes): the lowest lane's result words and fault */
VYRE_FN void vyre_user_merge(vyre_op_t *into, const vyre_op_t *from) {
    for (uint32_t i = 0; i < VYRE_RESULT_WORDS; ++i) {
        const uint32_t bit = 1u << i;
        if (!(into->result_kept_ & bit) && (from->result_kept_ & bit)) {
            into->result[i] = from->result[i];
            into->result_kept_ |= bit;
        }
    }
    if (into->fault_kept_[0] == VYRE_FAULT_NONE && from->fault_kept_[0] != VYRE_FAULT_NONE)
        for (uint32_t i = 0; i < 4u; ++i) into->fault_kept_[i] = from->fault_kept_[i];
}

/* the slot's outcome of a finished (merged) op: DONE with its results, or FAULT with the
 * reason; handled is the dispatch's answer */
VYRE_FN uint32_t vyre_user_outcome_(const vyre_op_t *op, int handled, uint32_t *res) {
    if (handled < 0) return VYRE_STATUS_DONE; /* no user ops in this build: 0.6 */
    if (handled == 0) return vyre_fault_(res, VYRE_FAULT_UNKNOWN_OP, op->opcode, 0u, 0u);
    if (op->fault_kept_[0] != VYRE_FAULT_NONE)
        return vyre_fault_(res, op->fault_kept_[0], op->fault_kept_[1], op->fault_kept_[2],
                           op->fault_kept_[3]);
    for (uint32_t i = 0; i < VYRE_RESULT_WORDS; ++i) res[i] = op->result[i];
    return VYRE_STATUS_DONE;
}

/* the last step of a warp-run op (see above): results into the slot, the result for the
 * caller's status store and counters */
VYRE_FN vyre_result_t vyre_user_commit(const vyre_ctx_t *c, uint32_t slot, const vyre_op_t *op,
                                       int handled) {
    uint32_t res[VYRE_RESULT_WORDS] = {0u, 0u, 0u, 0u};
    const uint32_t status = vyre_user_outcome_(op, handled, res);
    vyre_store_results(c, slot, res);
    vyre_result_t r;
    r.status = status;
    r.metric_op = (status == VYRE_STATUS_DONE && op->opcode < VYRE_METRICS_COUNT) ? op->opcode
                                                                                   : VYRE_NO_METRIC;
    return r;
}

/* the whole op on this thread: lanes 0..31 in turn */
VYRE_FN uint32_t vyre_user_run_(const vyre_ctx_t *c, uint32_t slot, uint32_t opcode,
                                uint32_t tenant, const uint32_t *a, uint32_t *res) {
    vyre_op_t op;
    vyre_user_begin(c, slot, opcode, tenant, a, 0u, VYRE_OP_LANES, &op);
    const int handled = VYRE_USER_DISPATCH(c, opcode, &op);
    return vyre_user_outcome_(&op, handled, res);
}

/* One op with its 12 args (authorization and the protected-word rule already checked).
 * Returns DONE, FAULT, or CLAIMED (the handler stored its own status); res (zeroed by the
 * caller) gets the op's result words, or on FAULT the reason and its details. */
VYRE_FN uint32_t vyre_run_op_(const vyre_ctx_t *c, uint32_t slot, uint32_t op, uint32_t tenant,
                              const uint32_t *a, uint32_t *res) {
    switch (op) {
    case VYRE_OP_NOP:
        break;
    case VYRE_OP_STORE_U32:
        vyre_ctl_st_(c, a[1], a[0]);
        break;
    case VYRE_OP_ATOMIC_ADD: /* result: the new value (0 past the end, where nothing is added) */
        if (a[1] < c->control_words) res[0] = VYRE_ADD_RLX(c->control + a[1], a[0]) + a[0];
        break;
    case VYRE_OP_LOAD_U32:
        res[0] = vyre_ctl_ld_(c, a[0]);
        vyre_obs_st_(c, a[1], res[0]);
        break;
    case VYRE_OP_COMPARE_SWAP: {
        uint32_t prev = 0u;
        if (a[0] < c->control_words) {
            prev = a[1];
            VYRE_CAS_RLX(c->control + a[0], &prev, a[2]); /* prev = the value seen */
        }
        vyre_obs_st_(c, a[0], prev);
        res[0] = prev;
        break;
    }
    case VYRE_OP_MEMCPY:
        vyre_memcpy_words_(c, a[0], a[1], a[2]);
        break;
    case VYRE_OP_DFA_STEP: {
        uint8_t *p;
        uint64_t bytes = vyre_buf_view_(c, a[3], &p);
        res[0] = vyre_word_at_(p, bytes, (uint64_t)a[0] * VYRE_DFA_ALPHABET + a[1]);
        vyre_obs_st_(c, a[2], res[0]);
        break;
    }
    case VYRE_OP_BATCH_FENCE: /* result: the new EPOCH */
        res[0] = VYRE_CTRL_EPOCH < c->control_words
                     ? VYRE_ADD_RLX(c->control + VYRE_CTRL_EPOCH, 1u) + 1u : 0u;
        vyre_obs_st_(c, 0u, a[1]);
        break;
    case VYRE_OP_DFA_SCAN: {
        uint32_t start = a[4] == VYRE_DFA_NO_STATE ? 0u : vyre_obs_ld_(c, a[4]);
        uint32_t acc, end;
        vyre_dfa_scan_part(c, a, start, 0u, 1u, &acc, &end);
        if (end == VYRE_DFA_NO_STATE) return VYRE_STATUS_CLAIMED; /* abandoned at SHUTDOWN */
        res[0] = acc;
        res[1] = end;
        return vyre_dfa_scan_commit(c, a, acc, end).status;
    }
    case VYRE_OP_DFA_MATCH:
        return vyre_dfa_match_(c, a, res);
    case VYRE_OP_BUF_COPY:
        return vyre_buf_copy_(c, a, res);
    case VYRE_OP_LOAD_MISS:
        return vyre_load_miss_(c, slot, a, res);
    case VYRE_OP_PRINTF:
        vyre_printf_(c, slot, a);
        break;
    case VYRE_OP_SHUTDOWN:
        VYRE_ST_REL(c->control + VYRE_CTRL_SHUTDOWN, 1u);
        break;
#ifdef VYRE_TEST_HOOKS
    case VYRE_TEST_OP_SPIN:
        /* no VYRE_PROGRESS: this stands for hung code, which reports nothing */
        for (uint32_t round = 0; VYRE_LD_ACQ(c->control + VYRE_CTRL_SHUTDOWN) == 0u; ++round)
            VYRE_BACKOFF(round < 64u ? round : 64u);
        return VYRE_STATUS_CLAIMED; /* never finishes: left CLAIMED by the hard stop */
    case VYRE_TEST_OP_STALL: {
        uint64_t until = vyre_now_ns_() + (uint64_t)a[0] * 1000000ull;
        while (vyre_now_ns_() < until) {
        }
        break;
    }
#endif
    default: /* a user op; without one (or a reserved value): nothing, DONE (the caller
              * counts the metric when op < 32) */
        if (vyre_is_user_opcode(op)) return vyre_user_run_(c, slot, op, tenant, a, res);
        break;
    }
    return VYRE_STATUS_DONE;
}

/* Packed slot (docs/spec.md §4.2): byte k of the 12 arg words; bytes past the payload read 0. */
VYRE_FN uint32_t vyre_packed_byte_(const uint32_t *a, uint32_t k) {
    return k < VYRE_PACKED_ARG_WORDS * 4u ? (a[k >> 2] >> ((k & 3u) * 8u)) & 0xFFu : 0u;
}

/* inner op i of a packed slot: its opcode, and its own args (missing args read 0) */
VYRE_FN uint32_t vyre_packed_inner_(const uint32_t *a, uint32_t n, uint32_t i, uint32_t *args) {
    uint32_t total = vyre_packed_byte_(a, 1u);
    uint32_t meta = (2u + 2u * n + 3u) >> 2;
    uint32_t off = vyre_packed_byte_(a, 3u + 2u * i);
    uint32_t next = (i + 1u < n) ? vyre_packed_byte_(a, 3u + 2u * (i + 1u)) : total;
    uint32_t cnt = next > off ? next - off : 0u;
    for (uint32_t j = 0; j < VYRE_SLOT_ARG_COUNT; ++j) {
        uint32_t w = meta + off + j;
        args[j] = (j < cnt && w < VYRE_PACKED_ARG_WORDS) ? a[w] : 0u;
    }
    return vyre_packed_byte_(a, 2u + 2u * i);
}

VYRE_FN vyre_result_t vyre_result_(uint32_t status, uint32_t metric_op) {
    vyre_result_t r;
    r.status = status;
    r.metric_op = metric_op;
    return r;
}

/* ==== execute / finish ====================================================================== */

/* the 16 words of a claimed slot. The caller's vyre_claim was an acquire, so the body the
 * host wrote before PUBLISHED is visible (a lane reading a slot another lane claimed must
 * synchronise with that lane first, e.g. __syncwarp). 16-byte loads on the GPU. */
VYRE_FN void vyre_load_slot_(const vyre_ctx_t *c, uint32_t slot, uint32_t *w) {
    const uint32_t *src = vyre_slot_ptr_(c, slot);
#ifdef __CUDA_ARCH__
    const uint4 *v = (const uint4 *)src;
    uint4 q1 = v[0], q2 = v[1], q3 = v[2], q4 = v[3];
    w[0] = q1.x; w[1] = q1.y; w[2] = q1.z; w[3] = q1.w;
    w[4] = q2.x; w[5] = q2.y; w[6] = q2.z; w[7] = q2.w;
    w[8] = q3.x; w[9] = q3.y; w[10] = q3.z; w[11] = q3.w;
    w[12] = q4.x; w[13] = q4.y; w[14] = q4.z; w[15] = q4.w;
#else
    memcpy(w, src, VYRE_SLOT_BYTES);
#endif
}

/* vyre_execute on slot words the caller has already loaded (after its claim): the megakernel
 * reads a slot once and decides from the same words whether a warp scans it together. */
/* `authorized` is vyre_tenant_ok_(c, tenant): the megakernel computes it once per warp for
 * all lanes of the same tenant, since every lane reading the same three control words over
 * PCIe serializes the whole GPU on one cache line. */
VYRE_FN vyre_result_t vyre_execute_into(const vyre_ctx_t *c, uint32_t slot, const uint32_t *w,
                                        int authorized, uint32_t *res, int store) {
    const uint32_t op = w[VYRE_SLOT_OPCODE];
    const uint32_t tenant = w[VYRE_SLOT_TENANT];
    const uint32_t *a = w + VYRE_SLOT_ARGS;

    for (uint32_t k = 0; k < VYRE_RESULT_WORDS; ++k) res[k] = 0u;
    uint32_t word = 0u;

    if (!authorized) {
        vyre_fault_(res, VYRE_FAULT_UNAUTHORIZED, tenant, 0u, 0u);
        if (store) vyre_store_results(c, slot, res);
        return vyre_result_(VYRE_STATUS_FAULT, VYRE_NO_METRIC);
    }

    if (op == VYRE_OP_PACKED_SLOT) {
        /* results: those of the last inner op; a faulting inner op (a user op) ends the slot
         * there, with d2 = its index */
        const uint32_t n = vyre_packed_byte_(a, 0u);
        uint32_t args[VYRE_SLOT_ARG_COUNT];
        uint32_t status = VYRE_STATUS_DONE;
        if (tenant != VYRE_TENANT_SYSTEM) { /* validate every inner op before running any */
            for (uint32_t i = 0; i < n && status == VYRE_STATUS_DONE; ++i) {
                uint32_t iop = vyre_packed_inner_(a, n, i, args);
                if (vyre_writes_protected_(iop, args, &word))
                    status = vyre_fault_(res, VYRE_FAULT_PROTECTED, VYRE_CONTROL_HANDLE, word, i);
            }
        }
        for (uint32_t i = 0; i < n && status == VYRE_STATUS_DONE; ++i) {
            uint32_t iop = vyre_packed_inner_(a, n, i, args);
            for (uint32_t k = 0; k < VYRE_RESULT_WORDS; ++k) res[k] = 0u;
            /* inner ops are 0..255: built-ins (always DONE) and user ops */
            if (vyre_run_op_(c, slot, iop, tenant, args, res) == VYRE_STATUS_FAULT) {
                res[3] = i;
                status = VYRE_STATUS_FAULT;
            } else if (iop < VYRE_METRICS_COUNT) {
                vyre_ctl_add_(c, VYRE_CTRL_METRICS_BASE + iop, 1u);
            }
        }
        if (store) vyre_store_results(c, slot, res);
        return vyre_result_(status, VYRE_NO_METRIC);
    }

    uint32_t status;
    if (tenant != VYRE_TENANT_SYSTEM && vyre_writes_protected_(op, a, &word))
        status = vyre_fault_(res, VYRE_FAULT_PROTECTED, VYRE_CONTROL_HANDLE, word, 0u);
    else
        status = vyre_run_op_(c, slot, op, tenant, a, res);
    if (status == VYRE_STATUS_CLAIMED) return vyre_result_(status, VYRE_NO_METRIC); /* parked: args kept */
    if (store) vyre_store_results(c, slot, res);
    return vyre_result_(status, (status == VYRE_STATUS_DONE && op < VYRE_METRICS_COUNT)
                                    ? op : VYRE_NO_METRIC);
}

VYRE_FN vyre_result_t vyre_execute_authorized(const vyre_ctx_t *c, uint32_t slot, const uint32_t *w,
                                              int authorized) {
    uint32_t res[VYRE_RESULT_WORDS];
    return vyre_execute_into(c, slot, w, authorized, res, 1);
}

VYRE_FN vyre_result_t vyre_execute_words(const vyre_ctx_t *c, uint32_t slot, const uint32_t *w) {
    return vyre_execute_authorized(c, slot, w, vyre_tenant_ok_(c, w[VYRE_SLOT_TENANT]));
}

VYRE_FN vyre_result_t vyre_execute(const vyre_ctx_t *c, uint32_t slot) {
    uint32_t w[VYRE_SLOT_WORDS];
    vyre_load_slot_(c, slot, w);
    return vyre_execute_words(c, slot, w);
}

VYRE_FN void vyre_finish(const vyre_ctx_t *c, uint32_t slot, vyre_result_t r) {
    if (r.status == VYRE_STATUS_CLAIMED) return; /* the handler stored its own status */
    if (r.metric_op < VYRE_METRICS_COUNT)
        vyre_ctl_add_(c, VYRE_CTRL_METRICS_BASE + r.metric_op, 1u);
    vyre_ctl_add_(c, r.status == VYRE_STATUS_FAULT ? VYRE_CTRL_FAULT_COUNT : VYRE_CTRL_DONE_COUNT,
                  1u);
    VYRE_ST_REL(vyre_slot_ptr_(c, slot) + VYRE_SLOT_STATUS, r.status);
}

#endif /* VYRE_INTERP_H */

