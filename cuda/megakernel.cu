// The persistent megakernel: the loop around csrc/vyre_interp.h on the GPU (docs/spec.md §7).
//
// Measured on a PCIe H100 (docs/decisions.md): system-scope atomics on mapped host memory are
// serialized (about 10 M/s for the whole GPU) and are not atomic against host stores. So the
// hot path uses none per slot:
//   * tickets: the host publishes ticket t into slot t % slot_count, strictly in ticket order,
//     then writes the number of published tickets into a mapped 64-bit doorbell. Each warp
//     takes 32 consecutive tickets from a device-memory counter (a real atomic, one per 32
//     slots); lane i owns ticket base+i. Tickets are exclusive, so once the doorbell says the
//     ticket is published, its slot holds that publication and nobody else will claim it:
//     the claim PUBLISHED->CLAIMED is a plain (posted) store, not a CAS over PCIe.
//   * one poller warp reads the doorbell, SHUTDOWN and the tenant table over PCIe in a tight
//     loop, all in one warp-wide load (one round trip, ~0.6 us), and mirrors them into device
//     memory; the other warps poll the mirrors in L2. The warp holding the next unpublished
//     ticket spins; the rest back off with __nanosleep, so an idle kernel costs one PCIe read
//     of 160 bytes per pass.
//   * the tenant mirror trails the doorbell mirror by one pass (the table words of a pass are
//     as new as the doorbell value of the pass before): a worker loads its slot as soon as the
//     doorbell mirror covers it and waits for `tenants_asof` only before the verdict, so the
//     table read is off the latency path (docs/decisions.md, "Where one op's round trip goes").
//   * workers never read-modify-write control words for bookkeeping: 527 warps doing that on
//     the same few cache lines (which the host also reads) took ~1 ms per access in a trace.
//     DONE_COUNT, FAULT_COUNT and METRICS are counted per warp in device memory and a flusher
//     warp adds them into control every few microseconds; they may trail a slot's DONE status by one poller pass (the
//     facade settles them before it reports them, docs/decisions.md).
//   * a long DFA_SCAN is the one op that keeps a warp busy for long: its owner puts it on the
//     assist board in device memory, cut into parts, and warps with nothing to run take parts
//     instead of sleeping (below), so one chunk's scan spreads over the GPU.
#include <cstddef>
#include "vyre_interp.h"
#include "vyre_call.h"

typedef struct {
    vyre_ctx_t ctx;
    unsigned long long *tickets;        // device: next ticket to hand out
    unsigned long long *published;      // device: mirror of the doorbell
    unsigned int *shutdown;             // device: SD_STOP (control[SHUTDOWN]) or SD_PAUSE
    unsigned int *live;                 // device: worker warps still running
    // mapped host: [0] tickets published, [1] pause request, [2] the kernel is leaving on its
    // own (idle exit or yield; low word), [3] the final doorbell mirror of such an exit
    unsigned long long *doorbell;
    unsigned int *counters;             // device: DONE, FAULT, METRICS[32] not yet in control
    unsigned int *tenants;              // device: tenant table mirror
    unsigned long long *tenants_asof;   // device: the tenant mirror is valid for tickets below it
    struct vyre_assist *assist;         // device: the assist board (below)
    unsigned long long heartbeat_ns;    // HEARTBEAT period
    unsigned int idle_sleep_ns;         // longest back-off of an idle warp
    unsigned int coop_min_bytes;        // DFA_SCAN ranges at least this long use all 32 lanes
    unsigned int assist_part_bytes;     // a split DFA_SCAN's part (one warp's share); 0: never split
    unsigned int idle_exit_us;          // leave after this long without a publication (0: never)
    unsigned int yield_after_us;        // leave after this long resident, busy or not (0: never)
    unsigned int call_lanes;            // call lanes served by warp 2 of block 0; 0: no call warp
    uint32_t *calls;                    // mapped host: the call area (docs/call.md)
    uint32_t *call_scratch;             // device: one 16-word scratch slot per call lane
} vyre_launch_t;
static_assert(sizeof(vyre_launch_t) == 184 && offsetof(vyre_launch_t, calls) == 168,
              "vyre/backends/cuda/backend.py: _LAUNCH");

// The assist board. Tickets go to warps 32 at a time, so the scan slots of one chunk land on
// one or two warps while the others sleep (one warp alone is slow: docs/decisions.md). A warp
// holding a long cooperative DFA_SCAN therefore opens an entry: the scan's args and start
// state, cut into `parts` of assist_part_bytes; idle warps take parts and add their accepts,
// the owner takes parts too (so it never waits on a part nobody took) and commits once every
// part is done. Part k of P counts the bytes of docs/spec.md §3's lane-parts k*32 .. k*32+31 of P*32
// (vyre_dfa_scan_warp_part_), so the sum over parts is exact.
// word: {gen:32 | parts:16 | next:16}. parts 0 and next 0: free; parts 0 and next 1: being
// filled by its owner; next < parts: parts left to take. Taking a part is a CAS on the whole
// word, so a stale read (an entry freed and reopened since) can never take a part of the new
// scan without having seen its args; the owner frees only after `done` reached parts.
#define ASSIST_N 64
#define AW_GEN(w) ((unsigned)((w) >> 32))
#define AW_PARTS(w) ((unsigned)((w) >> 16) & 0xFFFFu)
#define AW_NEXT(w) ((unsigned)(w) & 0xFFFFu)
#define AW_MAKE(gen, parts, next) \
    (((unsigned long long)(gen) << 32) | ((unsigned long long)(parts) << 16) | (unsigned long long)(next))
#define ASSIST_MAX_PARTS 0xFFFFu
struct vyre_assist_body {
    unsigned done, accepts, end_state, start_state;
    unsigned args[VYRE_SLOT_ARG_COUNT];
    unsigned pad_[16];  // one 128-byte line per entry
};
struct vyre_assist {
    unsigned open;    // entries with parts left: idle warps look at the board only when > 0
    unsigned helped;  // parts scanned by warps other than the owner (cuda.py: assist_helped)
    unsigned pad_[30];
    unsigned long long word[ASSIST_N];
    struct vyre_assist_body body[ASSIST_N];
};
// vyre/backends/cuda.py places the board at device state + 512 and sizes the state to match
static_assert(sizeof(struct vyre_assist) == 8832, "cuda.py: _ASSIST_BYTES");
static_assert(sizeof(struct vyre_assist_body) == 128 && VYRE_SLOT_ARG_COUNT == 12, "assist_run reads a body as 4 x 16 bytes");
static_assert(offsetof(struct vyre_assist_body, start_state) == 12 && offsetof(struct vyre_assist_body, args) == 16,
              "assist_run: start_state is q[0].w, args are q[1..3]");
static_assert(ASSIST_N == 64, "the board is scanned as word[lane] and word[lane + 32]");
static_assert(offsetof(struct vyre_assist, helped) == 4, "cuda.py: _ASSIST_HELPED_AT");

#define FULL_MASK 0xFFFFFFFFu
// values of vyre_launch_t::shutdown. SD_STOP: leave at once (the SHUTDOWN word, docs/spec.md §2). SD_PAUSE: the
// doorbell mirror is final; finish every ticket below it, then leave, so the host can relaunch
// with the ticket counter at the mirror and nothing is lost or run twice (docs/decisions.md).
#define SD_RUN 0u
#define SD_STOP 1u
#define SD_PAUSE 2u
// layout of vyre_launch_t::counters
#define CNT_DONE 0
#define CNT_FAULT 1
#define CNT_METRICS 2
#define CNT_WORDS (2 + VYRE_METRICS_COUNT)
// layout of vyre_launch_t::tenants: [0] 1 = the table sits at the default base, [1] TABLE_LEN,
// [2 ..] the masks of tenants 0..28
#define TM_DEFAULT 0
#define TM_LEN 1
#define TM_MASKS 2
#define TM_WORDS (2 + VYRE_TENANT_MASK_COUNT)

static __device__ __forceinline__ unsigned long long vyre_globaltimer();
#ifdef VYRE_EXP_TRACE
// kernel development only: per warp round [tickets taken, first claim, slot loaded, executed,
// status stored, smid, ticket base, loop iterations]
#define VYRE_TRACE_ROUNDS 16384
__device__ unsigned long long vyre_trace[VYRE_TRACE_ROUNDS * 8];
__device__ unsigned int vyre_trace_n;
#define TRACE_T(var) unsigned long long var = vyre_globaltimer()
#else
#define TRACE_T(var)
#endif
#ifdef VYRE_EXP_LAT
// kernel development only: per ticket (mod VYRE_LAT_N) [mirror seen by the worker, slot
// loaded, executed, status stored], and per doorbell value [poller saw it, mirror stored]
#define VYRE_LAT_N 65536
__device__ unsigned long long vyre_lat[VYRE_LAT_N * 4];
__device__ unsigned long long vyre_lat_poll[VYRE_LAT_N * 2];
#define LAT_T(var) const unsigned long long var = vyre_globaltimer()
#else
#define LAT_T(var)
#endif

static __device__ __forceinline__ unsigned long long vyre_globaltimer() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// an add to a control word; device scope, as every RMW on host memory (csrc/vyre_interp.h)
static __device__ __forceinline__ void sys_add(uint32_t *p, uint32_t v) {
    cuda::atomic_ref<uint32_t, cuda::thread_scope_device>(*p).fetch_add(v, cuda::std::memory_order_relaxed);
}

static __device__ __forceinline__ void sys_store_release(uint32_t *p, uint32_t v) {
    cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(*p).store(v, cuda::std::memory_order_release);
}

// The GPU's claim (see the header): the lane owns the slot through its ticket.
static __device__ __forceinline__ void claim_owned(const vyre_ctx_t *c, uint32_t slot) {
    cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(
        c->ring[(size_t)slot * VYRE_SLOT_WORDS + VYRE_SLOT_STATUS])
        .store(VYRE_STATUS_CLAIMED, cuda::std::memory_order_relaxed);
}

// The poller is the only writer of DONE_COUNT, FAULT_COUNT and METRICS on the GPU: it adds
// what the workers counted in device memory since its last pass. Metrics first, then a fence,
// then the slot counts, so a host that sees DONE_COUNT + FAULT_COUNT reach n also sees the
// metrics of those n slots.
static __device__ void flush_counters(const vyre_launch_t &L, unsigned *flushed) {
    uint32_t *control = L.ctx.control;
    // snapshot the counts first (acquire): every slot they include had its metric added to
    // device memory before (workers fence between the two), so the metrics read next cover it
    unsigned count[2];
    for (int i = CNT_DONE; i <= CNT_FAULT; i++)
        count[i] = cuda::atomic_ref<unsigned, cuda::thread_scope_device>(L.counters[i])
                       .load(cuda::std::memory_order_acquire);
    bool moved = false;
    for (int i = CNT_METRICS; i < CNT_WORDS; i++) {
        const unsigned now = cuda::atomic_ref<unsigned, cuda::thread_scope_device>(L.counters[i])
                                 .load(cuda::std::memory_order_relaxed);
        if (now != flushed[i]) {
            sys_add(&control[VYRE_CTRL_METRICS_BASE + (i - CNT_METRICS)], now - flushed[i]);
            flushed[i] = now;
            moved = true;
        }
    }
    if (moved) cuda::atomic_thread_fence(cuda::std::memory_order_release, cuda::thread_scope_system);
    const unsigned word[2] = {VYRE_CTRL_DONE_COUNT, VYRE_CTRL_FAULT_COUNT};
    for (int i = CNT_DONE; i <= CNT_FAULT; i++) {
        if (count[i] != flushed[i]) {
            sys_add(&control[word[i]], count[i] - flushed[i]);
            flushed[i] = count[i];
        }
    }
}

// 16-byte acquire load at system scope. On this path loads of one thread are served one after
// another (~0.6 us each on the H100), loads of different lanes in one instruction together, so
// the poller spreads what it reads over its lanes.
static __device__ __forceinline__ uint4 ld_acq_sys_v4(const uint32_t *p) {
    uint4 v;
    asm volatile("ld.acquire.sys.global.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
    return v;
}

// The doorbell pair (tickets published, pause word) as two 64-bit elements: each element of a
// vector access is single-copy atomic at its own size, so the ticket count cannot tear when it
// crosses 2^32 (a v4.u32 load of the same bytes promises that only per 32-bit half).
static __device__ __forceinline__ ulonglong2 ld_acq_sys_v2u64(const unsigned long long *p) {
    ulonglong2 v;
    asm volatile("ld.acquire.sys.global.v2.u64 {%0,%1}, [%2];" : "=l"(v.x), "=l"(v.y) : "l"(p) : "memory");
    return v;
}

// When the call warp last answered a request (globaltimer ns): the poller's idle exit treats
// it as a publication. A module global: megakernels of one module share it, which can only keep
// one resident a little longer.
__device__ unsigned long long vyre_call_served_at;

// The poller: one warp-wide load per pass brings SHUTDOWN, the doorbell, the pause word and
// the tenant table (lanes 0..7: control words 0..31, lane 8: words 140..143, lane 9: the
// doorbell pair), so a publication is seen within about one PCIe round trip (the same table
// read as nine loads of one lane took 5.4 us on the H100).
static __device__ __noinline__ void poller(const vyre_launch_t &L) {
    static_assert(VYRE_CTRL_SHUTDOWN == 0u && VYRE_CTRL_TENANT_BASE == 2u, "lane 0 holds words 0..3");
    static_assert(VYRE_TENANT_MASK_BASE + VYRE_TENANT_MASK_COUNT == 32u, "lanes 0..7 hold the masks");
    const unsigned lane = threadIdx.x & 31;
    const uint32_t *control = L.ctx.control;
    const uint32_t *src = lane < 8 ? control + 4 * lane
                        : lane == 8 ? control + (VYRE_CTRL_TENANT_TABLE_LEN & ~3u)
                                    : (const uint32_t *)L.doorbell;
    cuda::atomic_ref<unsigned long long, cuda::thread_scope_device> mirror(*L.published);
    cuda::atomic_ref<unsigned long long, cuda::thread_scope_device> asof(*L.tenants_asof);
    cuda::atomic_ref<unsigned int, cuda::thread_scope_device> sd_mirror(*L.shutdown);
    unsigned long long seen = mirror.load(cuda::std::memory_order_relaxed);  // > 0 on a resume
    // the tenant words of this pass are as new as `prev`, the doorbell value mirrored by the
    // pass before (their loads issue after that pass's acquire load returned it)
    unsigned long long prev = seen, covered = 0;
    bool pausing = false;
    // Leaving on its own (docs/decisions.md, "Living next to CuPy and PyTorch"): lane 9 stores
    // the exit word, fences at system scope, and only then reads the doorbell the last time.
    // The host stores the doorbell, fences, and reads the exit word. One of the two sees the
    // other's store: the kernel covers the new tickets, or the host relaunches for them.
    // times from lane 0 only: every lane must take the same branch below (shuffles inside)
    const unsigned long long launched_at = __shfl_sync(FULL_MASK, vyre_globaltimer(), 0), first = seen;
    unsigned long long fresh_at = launched_at;
    bool leaving = false;
    for (;;) {
        uint4 q = make_uint4(0u, 0u, 0u, 0u);
        // acquire: the next pass's loads and the workers' slot loads follow this doorbell value
        if (lane < 9) {
            q = ld_acq_sys_v4(src);
        } else if (lane == 9) {
            const ulonglong2 d = ld_acq_sys_v2u64(L.doorbell);
            q = make_uint4((uint32_t)d.x, (uint32_t)(d.x >> 32), (uint32_t)d.y, (uint32_t)(d.y >> 32));
        }
        __syncwarp();  // orders every lane's next loads after lane 9's acquire
        LAT_T(lat_seen_);
        const uint32_t sd = __shfl_sync(FULL_MASK, q.x, 0);
        const unsigned long long db = ((unsigned long long)__shfl_sync(FULL_MASK, q.y, 9) << 32) |
                                      __shfl_sync(FULL_MASK, q.x, 9);
        const bool pause = (__shfl_sync(FULL_MASK, q.z, 9) | __shfl_sync(FULL_MASK, q.w, 9)) != 0u;
        if (sd != 0u) {
            if (lane == 0) sd_mirror.store(SD_STOP, cuda::std::memory_order_release);
            return;
        }
        // the tenant mirror: TM_DEFAULT, TM_LEN and the masks, each from the lane that read it
        const uint32_t len = __shfl_sync(FULL_MASK, (VYRE_CTRL_TENANT_TABLE_LEN & 1u) ? q.y : q.x, 8);
        if (lane == 0) {
            cuda::atomic_ref<unsigned, cuda::thread_scope_device>(L.tenants[TM_DEFAULT])
                .store(q.z == VYRE_TENANT_MASK_BASE, cuda::std::memory_order_relaxed);
            cuda::atomic_ref<unsigned, cuda::thread_scope_device>(L.tenants[TM_LEN])
                .store(len, cuda::std::memory_order_relaxed);
        }
        if (lane < 8) {
            const uint32_t v[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
            for (unsigned i = 0; i < 4; i++) {
                const unsigned word = 4 * lane + i;
                if (word >= VYRE_TENANT_MASK_BASE)
                    cuda::atomic_ref<unsigned, cuda::thread_scope_device>(
                        L.tenants[TM_MASKS + word - VYRE_TENANT_MASK_BASE])
                        .store(v[i], cuda::std::memory_order_relaxed);
            }
        }
        const bool fresh = !pausing && db > seen;
        const bool catch_up = prev > covered;
        if (fresh || catch_up) {
            // release: the host's writes before `db` (acquired above) and this pass's tenant
            // words precede the mirrors (a device-scope fence: ~half a system-scope one)
            cuda::atomic_thread_fence(cuda::std::memory_order_acq_rel, cuda::thread_scope_device);
            if (lane == 0) {
                if (catch_up) asof.store(prev, cuda::std::memory_order_relaxed);
                if (fresh) mirror.store(db, cuda::std::memory_order_relaxed);
            }
#ifdef VYRE_EXP_LAT
            if (fresh && lane == 0) {
                vyre_lat_poll[((db - 1) % VYRE_LAT_N) * 2] = lat_seen_;
                vyre_lat_poll[((db - 1) % VYRE_LAT_N) * 2 + 1] = vyre_globaltimer();
            }
#endif
            if (catch_up) covered = prev;
            if (fresh) seen = db;
        }
        prev = seen;  // once pausing, `seen` no longer moves
        // a pause: `seen` is final; leave once the tenant mirror covers it, so the workers can
        // finish every ticket below it
        if (pause) pausing = true;
        if (leaving) pausing = true;  // this pass read the doorbell after the exit word
        if (!pausing && (L.idle_exit_us | L.yield_after_us) != 0u) {
            const unsigned long long now = __shfl_sync(FULL_MASK, vyre_globaltimer(), 0);
            if (fresh) fresh_at = now;
            // a call served counts as a publication: a kernel answering calls stays resident
            if (L.call_lanes) {
                const unsigned long long served_at =
                    cuda::atomic_ref<unsigned long long, cuda::thread_scope_device>(vyre_call_served_at)
                        .load(cuda::std::memory_order_relaxed);
                if (served_at > fresh_at) fresh_at = served_at;
            }
            // idle: no publication for idle_exit_us and every ticket seen so far finished
            // (the per-launch DONE + FAULT counts; mod 2^32 like the counters)
            // a yield waits while a split scan has parts left: leaving sends its helpers home
            // and the owner would scan the rest alone (measured: many seconds for tiny parts)
            bool go = L.yield_after_us != 0u && now - launched_at >= 1000ull * L.yield_after_us &&
                      __shfl_sync(FULL_MASK, lane == 0 ? cuda::atomic_ref<unsigned, cuda::thread_scope_device>(
                                                             L.assist->open).load(cuda::std::memory_order_relaxed)
                                                       : 0u, 0) == 0u;
            if (!go && L.idle_exit_us != 0u && now - fresh_at >= 1000ull * L.idle_exit_us) {
                unsigned finished = 0;
                if (lane == 0)
                    finished = cuda::atomic_ref<unsigned, cuda::thread_scope_device>(L.counters[CNT_DONE])
                                   .load(cuda::std::memory_order_relaxed) +
                               cuda::atomic_ref<unsigned, cuda::thread_scope_device>(L.counters[CNT_FAULT])
                                   .load(cuda::std::memory_order_relaxed);
                go = __shfl_sync(FULL_MASK, finished, 0) == (unsigned)(seen - first);
            }
            if (go) {
                if (lane == 9) {
                    cuda::atomic_ref<unsigned, cuda::thread_scope_system>(
                        *(unsigned *)(L.doorbell + 2)).store(1u, cuda::std::memory_order_relaxed);
                    cuda::atomic_thread_fence(cuda::std::memory_order_seq_cst, cuda::thread_scope_system);
                }
                __syncwarp();
                leaving = true;  // the next pass's doorbell read is the final one
            }
        }
        if (pausing && covered >= seen) {
            if (lane == 0) {
                if (leaving)  // the host compares it with its doorbell: relaunch or stay away
                    cuda::atomic_ref<unsigned long long, cuda::thread_scope_system>(L.doorbell[3])
                        .store(seen, cuda::std::memory_order_relaxed);
                sd_mirror.store(SD_PAUSE, cuda::std::memory_order_release);
            }
            return;
        }
    }
}

// The flusher: folds the workers' device-memory counters into control every few microseconds
// and bumps HEARTBEAT; at shutdown it waits for every worker warp to leave, then flushes last.
static __device__ __noinline__ void flusher(const vyre_launch_t &L) {
    if ((threadIdx.x & 31) != 0) return;
    uint32_t *control = L.ctx.control;
    cuda::atomic_ref<unsigned int, cuda::thread_scope_device> sd_mirror(*L.shutdown);
    cuda::atomic_ref<unsigned int, cuda::thread_scope_device> live(*L.live);
    unsigned flushed[CNT_WORDS];
    for (int i = 0; i < CNT_WORDS; i++) flushed[i] = 0;
    unsigned long long last_beat = vyre_globaltimer();
    sys_add(&control[VYRE_CTRL_HEARTBEAT], 1u);
    for (;;) {
        if (sd_mirror.load(cuda::std::memory_order_acquire) != 0u) {
            while (live.load(cuda::std::memory_order_acquire) != 0u) __nanosleep(1000);
            flush_counters(L, flushed);
            return;
        }
        flush_counters(L, flushed);
        const unsigned long long now = vyre_globaltimer();
        if (now - last_beat >= L.heartbeat_ns) {
            sys_add(&control[VYRE_CTRL_HEARTBEAT], 1u);
            last_beat = now;
        }
        __nanosleep(4000);
    }
}

#ifndef VYRE_NO_COOP_SCAN
typedef cuda::atomic_ref<unsigned long long, cuda::thread_scope_device> assist_word_ref;
typedef cuda::atomic_ref<unsigned, cuda::thread_scope_device> dev_u32_ref;

// Part k of parts by the whole warp (vyre_dfa_scan_warp_part_); returns the warp's accepts (all lanes) and
// the end state of its last lane-part (lane 31's).
static __device__ __forceinline__ uint32_t warp_scan_part(const vyre_ctx_t *c, const uint32_t args[12],
                                                          uint32_t start, unsigned k, unsigned parts,
                                                          uint32_t *end_state) {
    const unsigned lane = threadIdx.x & 31;
    uint32_t accepts = 0, end = 0;
    vyre_dfa_scan_warp_part_(c, args, start, k, parts, lane, &accepts, &end);
    for (int off = 16; off > 0; off >>= 1) accepts += __shfl_xor_sync(FULL_MASK, accepts, off);
    *end_state = __shfl_sync(FULL_MASK, end, 31);
    return accepts;
}

// Take the next part of entry e (lane 0 CASes, acquire: the entry's args were written before
// the word that opened it). Returns the part or -1 when none is left; *word gets the word.
static __device__ int assist_take(struct vyre_assist *a, unsigned e, unsigned long long *word) {
    const unsigned lane = threadIdx.x & 31;
    int k = -1;
    unsigned long long w = 0;
    if (lane == 0) {
        assist_word_ref ref(a->word[e]);
        w = ref.load(cuda::std::memory_order_acquire);
        while (AW_NEXT(w) < AW_PARTS(w)) {
            if (ref.compare_exchange_weak(w, w + 1u, cuda::std::memory_order_acquire,
                                          cuda::std::memory_order_acquire)) {
                k = (int)AW_NEXT(w);
                if (AW_NEXT(w) + 1u == AW_PARTS(w)) dev_u32_ref(a->open).fetch_sub(1u, cuda::std::memory_order_relaxed);
                break;
            }
        }
    }
    *word = __shfl_sync(FULL_MASK, w, 0);
    return __shfl_sync(FULL_MASK, k, 0);
}

// Scan part k of entry e and report it (warp-collective). The last part's lane 31 ends the
// whole range, so its end state is the scan's; `done` is released after the accepts.
static __device__ void assist_run(const vyre_ctx_t *c, struct vyre_assist *a, unsigned e,
                                  unsigned k, unsigned parts) {
    const unsigned lane = threadIdx.x & 31;
    struct vyre_assist_body *b = &a->body[e];
    // lane 0 read the word with its acquire CAS, so lane 0 reads the body (64 bytes) and shares it
    uint4 q[4] = {};
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < 4; i++) q[i] = reinterpret_cast<const uint4 *>(b)[i];
    }
    uint32_t args[VYRE_SLOT_ARG_COUNT];
#pragma unroll
    for (int i = 0; i < 3; i++) {
        args[4 * i] = __shfl_sync(FULL_MASK, q[i + 1].x, 0);
        args[4 * i + 1] = __shfl_sync(FULL_MASK, q[i + 1].y, 0);
        args[4 * i + 2] = __shfl_sync(FULL_MASK, q[i + 1].z, 0);
        args[4 * i + 3] = __shfl_sync(FULL_MASK, q[i + 1].w, 0);
    }
    const uint32_t start = __shfl_sync(FULL_MASK, q[0].w, 0);
    uint32_t end;
    const uint32_t accepts = warp_scan_part(c, args, start, k, parts, &end);
    if (lane == 0) {
        if (k + 1u == parts) dev_u32_ref(b->end_state).store(end, cuda::std::memory_order_relaxed);
        if (accepts) dev_u32_ref(b->accepts).fetch_add(accepts, cuda::std::memory_order_relaxed);
        dev_u32_ref(b->done).fetch_add(1u, cuda::std::memory_order_release);
    }
    __syncwarp();
}

// An idle warp takes one part of an open entry, if any (spread over entries by warp id).
// Returns whether it scanned one. Out of line (the scan's registers stay out of the poll
// loop); assist_help is the inline check an idle warp makes every pass.
static __device__ __noinline__ bool assist_take_part(const vyre_launch_t &L) {
    struct vyre_assist *a = L.assist;
    const unsigned lane = threadIdx.x & 31;
    const unsigned long long w0 = assist_word_ref(a->word[lane]).load(cuda::std::memory_order_relaxed);
    const unsigned long long w1 = assist_word_ref(a->word[lane + 32]).load(cuda::std::memory_order_relaxed);
    const unsigned long long left = (unsigned long long)__ballot_sync(FULL_MASK, AW_NEXT(w0) < AW_PARTS(w0)) |
                                    ((unsigned long long)__ballot_sync(FULL_MASK, AW_NEXT(w1) < AW_PARTS(w1)) << 32);
    if (!left) return false;
    const unsigned rot = ((blockIdx.x * (blockDim.x >> 5)) + (threadIdx.x >> 5)) & 63u;
    const unsigned long long r = rot ? (left >> rot) | (left << (64u - rot)) : left;
    const unsigned e = (unsigned)(__ffsll((long long)r) - 1 + rot) & 63u;
    unsigned long long w;
    const int k = assist_take(a, e, &w);
    if (k < 0) return false;
    assist_run(&L.ctx, a, e, (unsigned)k, AW_PARTS(w));
    if (lane == 0) dev_u32_ref(a->helped).fetch_add(1u, cuda::std::memory_order_relaxed);
    return true;
}

static __device__ __forceinline__ bool assist_help(const vyre_launch_t &L) {
    const unsigned lane = threadIdx.x & 31;
    unsigned open = lane == 0 ? dev_u32_ref(L.assist->open).load(cuda::std::memory_order_relaxed) : 0u;
    return __shfl_sync(FULL_MASK, open, 0) != 0u && assist_take_part(L);
}

// How many parts a scan of args is cut into: its counted bytes (clamped to the buffer as the
// scan clamps them) over part_bytes, at most ASSIST_MAX_PARTS.
static __device__ unsigned assist_parts(const vyre_ctx_t *c, const uint32_t args[12], unsigned part_bytes) {
    uint8_t *tp, *dp;
    uint64_t len, ctx;
    vyre_dfa_range_(c, args, &tp, &dp, &len, &ctx);
    const uint64_t parts = (len - ctx + part_bytes - 1u) / part_bytes;
    return parts < 1u ? 1u : parts > ASSIST_MAX_PARTS ? ASSIST_MAX_PARTS : (unsigned)parts;
}

// The warp's DFA_SCANs with context (a6 > 0) over long ranges (coop_mask), split over lanes
// (docs/spec.md §3: exact, each segment re-reading at least `a6` bytes from state 0) and, through the
// assist board, over idle warps. Each owner lane begins its own scan; lanes that get a board
// entry open it at once, so all of this warp's scans are on the board together; the warp then
// takes parts of its own entries, scans the rest itself, and commits each when all parts are in.
static __device__ __noinline__ void coop_dfa_scans(const vyre_launch_t &L, unsigned coop_mask, uint32_t slot,
                                      const uint32_t *w, vyre_result_t *res) {
    const vyre_ctx_t *c = &L.ctx;
    struct vyre_assist *a = L.assist;
    const unsigned lane = threadIdx.x & 31;
    const bool mine = (coop_mask >> lane) & 1u;
    uint32_t args[VYRE_SLOT_ARG_COUNT];
    uint32_t start_state = 0;
    int ok = 0;
    if (mine) {
        ok = vyre_dfa_scan_begin(c, w, args, &start_state);
        if (!ok) *res = vyre_execute_words(c, slot, w);  // refused (tenant) or malformed
    }
    const unsigned ok_mask = __ballot_sync(FULL_MASK, ok);
    // one board entry per scan worth splitting: the lane that wants the n-th one takes the
    // n-th free entry (a lost CAS race just means no entry)
    unsigned parts = 1, gen = 0;
    int entry = -1;
    if (L.assist_part_bytes != 0u && ok_mask) {
        if (ok) parts = assist_parts(c, args, L.assist_part_bytes);
        const bool wants = ok && (parts > 1u || __popc(ok_mask) > 1);
        const unsigned want_mask = __ballot_sync(FULL_MASK, wants);
        const unsigned long long w0 = assist_word_ref(a->word[lane]).load(cuda::std::memory_order_relaxed);
        const unsigned long long w1 = assist_word_ref(a->word[lane + 32]).load(cuda::std::memory_order_relaxed);
        const unsigned f0 = __ballot_sync(FULL_MASK, AW_PARTS(w0) == 0u && AW_NEXT(w0) == 0u);
        const unsigned f1 = __ballot_sync(FULL_MASK, AW_PARTS(w1) == 0u && AW_NEXT(w1) == 0u);
        const unsigned rank = __popc(want_mask & ((1u << lane) - 1u));
        int e = -1;
        if (wants) {  // the rank-th free entry
            unsigned long long f = (unsigned long long)f0 | ((unsigned long long)f1 << 32);
            for (unsigned i = 0; i < rank && f; i++) f &= f - 1u;
            if (f) e = __ffsll((long long)f) - 1;
        }
        const unsigned src = e < 0 ? 0u : (unsigned)e & 31u;
        const unsigned long long seen0 = __shfl_sync(FULL_MASK, w0, src);
        const unsigned long long seen1 = __shfl_sync(FULL_MASK, w1, src);
        if (e >= 0) {
            unsigned long long seen = e < 32 ? seen0 : seen1;
            gen = AW_GEN(seen) + 1u;
            assist_word_ref ref(a->word[e]);
            // acquire: pairs with the release that freed the entry, so the last scan's helpers
            // and owner are done with the body before we rewrite it
            if (ref.compare_exchange_strong(seen, AW_MAKE(gen, 0u, 1u), cuda::std::memory_order_acquire,
                                            cuda::std::memory_order_relaxed)) {
                struct vyre_assist_body *b = &a->body[e];
                dev_u32_ref(b->done).store(0u, cuda::std::memory_order_relaxed);
                dev_u32_ref(b->accepts).store(0u, cuda::std::memory_order_relaxed);  // end_state: stored by whoever runs the last part
                b->start_state = start_state;
                for (int i = 0; i < (int)VYRE_SLOT_ARG_COUNT; i++) b->args[i] = args[i];
                // counted open before any helper can take (and uncount) its last part
                dev_u32_ref(a->open).fetch_add(1u, cuda::std::memory_order_relaxed);
                // release: helpers that take a part (acquire CAS) see the body above
                ref.store(AW_MAKE(gen, parts, 0u), cuda::std::memory_order_release);
                entry = e;
            }
        }
    }
    const unsigned board_mask = __ballot_sync(FULL_MASK, entry >= 0);
    // 1. parts of our own entries, until helpers and we have taken them all
    for (unsigned m = board_mask; m; m &= m - 1) {
        const int owner = __ffs(m) - 1;
        const unsigned e = (unsigned)__shfl_sync(FULL_MASK, entry, owner);
        unsigned long long word;
        int k;
        while ((k = assist_take(a, e, &word)) >= 0) assist_run(c, a, e, (unsigned)k, AW_PARTS(word));
    }
    // 2. the scans that got no entry: all 32 lanes on one at a time
    for (unsigned m = ok_mask & ~board_mask; m; m &= m - 1) {
        const int owner = __ffs(m) - 1;
        uint32_t oargs[VYRE_SLOT_ARG_COUNT];
        for (int i = 0; i < (int)VYRE_SLOT_ARG_COUNT; i++) oargs[i] = __shfl_sync(FULL_MASK, args[i], owner);
        const uint32_t ostart = __shfl_sync(FULL_MASK, start_state, owner);
        uint32_t end;
        const uint32_t accepts = warp_scan_part(c, oargs, ostart, 0u, 1u, &end);
        if (lane == (unsigned)owner) *res = vyre_dfa_scan_commit_slot(c, slot, args, accepts, end);
    }
    // 3. each entry once its parts are all in: commit, free (the gen stays; the next opening
    //    bumps it)
    if (entry >= 0) {
        struct vyre_assist_body *b = &a->body[entry];
        while (dev_u32_ref(b->done).load(cuda::std::memory_order_acquire) < parts) __nanosleep(64);
        const uint32_t accepts = dev_u32_ref(b->accepts).load(cuda::std::memory_order_relaxed);
        const uint32_t end = dev_u32_ref(b->end_state).load(cuda::std::memory_order_relaxed);
        // release: our reads of the body above come before its next owner's writes
        assist_word_ref(a->word[entry]).store(AW_MAKE(gen, 0u, 0u), cuda::std::memory_order_release);
        *res = vyre_dfa_scan_commit_slot(c, slot, args, accepts, end);
    }
    __syncwarp();
}
#endif

static __device__ void worker(const vyre_launch_t &L);
static __device__ __noinline__ void call_server(const vyre_launch_t &L);
#ifdef VYRE_USER_OPS
// How a warp runs the user ops it holds (user_mask): with at most VYRE_USER_WARP_OPS of them,
// each in turn on all 32 threads, thread i running lane i of the op (vyre_op.h), so a
// data-parallel op gets the whole warp; with more, every thread runs its own slot's op, lanes
// 0..31 one after the other as the CPU does, so 32 ops progress at once and a warp full of
// small ops costs about what a warp of built-ins costs (docs/decisions.md, "User ops on the
// GPU"). Lanes of an op are independent (vyre_op.h), so both give the same results.
#ifndef VYRE_USER_WARP_OPS
#define VYRE_USER_WARP_OPS 2
#endif
// The warp-wide way: the lanes' result words and faults are merged with shuffles by
// vyre_user_merge's rule (per word the lowest lane that wrote it, the lowest lane's fault),
// and the owner commits. `ok` is each lane's tenant verdict. Out of line, as the ops
// themselves, so that neither holds registers in the built-in path.
static __device__ __noinline__ void user_ops(const vyre_ctx_t *c, unsigned user_mask, uint32_t slot,
                                             const uint32_t *w, int ok, vyre_result_t *res) {
    const unsigned lane = threadIdx.x & 31;
    if (__popc(user_mask) > VYRE_USER_WARP_OPS) {  // each thread its own op (the interpreter's path)
        if ((user_mask >> lane) & 1u) *res = vyre_execute_authorized(c, slot, w, ok);
        __syncwarp();
        return;
    }
    for (unsigned m = user_mask; m; m &= m - 1) {
        const int owner = __ffs(m) - 1;
        if (!__shfl_sync(FULL_MASK, ok, owner)) {  // refused: the interpreter's UNAUTHORIZED fault
            if ((int)lane == owner) *res = vyre_execute_authorized(c, slot, w, 0);
            continue;
        }
        uint32_t a[VYRE_SLOT_ARG_COUNT];
#pragma unroll
        for (int i = 0; i < (int)VYRE_SLOT_ARG_COUNT; i++) a[i] = __shfl_sync(FULL_MASK, w[VYRE_SLOT_ARGS + i], owner);
        const uint32_t opcode = __shfl_sync(FULL_MASK, w[VYRE_SLOT_OPCODE], owner);
        const uint32_t tenant = __shfl_sync(FULL_MASK, w[VYRE_SLOT_TENANT], owner);
        const uint32_t oslot = __shfl_sync(FULL_MASK, slot, owner);
        vyre_op_t op;
        vyre_user_begin(c, oslot, opcode, tenant, a, lane, lane + 1u, &op);
        const int handled = VYRE_USER_DISPATCH(c, opcode, &op);
        uint32_t kept = 0;
#pragma unroll
        for (unsigned i = 0; i < VYRE_RESULT_WORDS; i++) {
            const unsigned wrote = __ballot_sync(FULL_MASK, (op.result_kept_ >> i) & 1u);
            const uint32_t v = __shfl_sync(FULL_MASK, op.result[i], wrote ? __ffs(wrote) - 1 : 0);
            op.result[i] = wrote ? v : 0u;
            kept |= wrote ? 1u << i : 0u;
        }
        op.result_kept_ = kept;
        const unsigned faulted = __ballot_sync(FULL_MASK, op.fault_kept_[0] != VYRE_FAULT_NONE);
#pragma unroll
        for (int i = 0; i < 4; i++)
            op.fault_kept_[i] = __shfl_sync(FULL_MASK, op.fault_kept_[i], faulted ? __ffs(faulted) - 1 : 0);
        // every lane's writes before the owner's commit and its release store of the status
        __syncwarp();
        if ((int)lane == owner) *res = vyre_user_commit(c, slot, &op, handled);
    }
    __syncwarp();
}
#endif

static __device__ __noinline__ void worker(const vyre_launch_t &L);

// Registers per thread are capped so that VYRE_MIN_BLOCKS_PER_SM blocks of VYRE_BLOCK_THREADS
// fit on an SM (docs/decisions.md, "Registers and resident warps").
#ifndef VYRE_BLOCK_THREADS
#define VYRE_BLOCK_THREADS 128
#endif
#ifndef VYRE_MIN_BLOCKS_PER_SM
#define VYRE_MIN_BLOCKS_PER_SM 4
#endif
extern "C" __global__ void __launch_bounds__(VYRE_BLOCK_THREADS, VYRE_MIN_BLOCKS_PER_SM)
vyre_megakernel(const vyre_launch_t *launch) {
    const vyre_launch_t L = *launch;
    if (blockIdx.x == 0 && (threadIdx.x >> 5) < (L.call_lanes ? 3u : 2u)) {
        const unsigned warp = threadIdx.x >> 5;
        if (warp == 0) poller(L); else if (warp == 1) flusher(L); else call_server(L);
        return;
    }
    worker(L);
    __syncwarp();
    __threadfence();  // this warp's counts are visible before the flusher sees it leave
    if ((threadIdx.x & 31) == 0) atomicSub(L.live, 1u);
}

static __device__ __noinline__ void worker(const vyre_launch_t &L) {
    const vyre_ctx_t *c = &L.ctx;
    const unsigned lane = threadIdx.x & 31;
    cuda::atomic_ref<unsigned long long, cuda::thread_scope_device> published(*L.published);
    cuda::atomic_ref<unsigned int, cuda::thread_scope_device> shutdown(*L.shutdown);
    cuda::atomic_ref<unsigned long long, cuda::thread_scope_device> tenants_asof(*L.tenants_asof);
    const unsigned long long n = c->slot_count;

    for (;;) {
        // SD_STOP: leave now. SD_PAUSE: keep taking batches, since published tickets nobody
        // holds yet must still run; the inner loop leaves once a whole batch is past the
        // final mirror (tickets taken beyond it are harmless: the relaunch resets the counter)
        if (__shfl_sync(FULL_MASK, shutdown.load(cuda::std::memory_order_relaxed), 0) == SD_STOP) return;
        unsigned long long base = 0;
        if (lane == 0) base = atomicAdd(L.tickets, 32ull);
        base = __shfl_sync(FULL_MASK, base, 0);
        const unsigned long long ticket = base + lane;
        TRACE_T(tr0);
#ifdef VYRE_EXP_TRACE
        unsigned long long tr1 = 0, tr2 = 0, tr3 = 0, tr4 = 0, iters = 0;
#endif
        const uint32_t slot = (uint32_t)(ticket % n);
        bool done = false;
        bool parked = false;  // our slot waits in WAIT_IO (LOAD_MISS found no free io slot)
        unsigned sleep_ns = 32;
        for (;;) {
            // acquire loads, not relaxed loads and a fence: an acquire fence costs ~0.7 us here
            // (measured), an acquire load about an L2 round trip. The pause is read first, so it
            // is seen together with the final mirror value stored before it.
            const unsigned sd = __shfl_sync(FULL_MASK, shutdown.load(cuda::std::memory_order_acquire), 0);
            if (sd == SD_STOP) return;
            const unsigned long long pub =
                __shfl_sync(FULL_MASK, published.load(cuda::std::memory_order_acquire), 0);
            // pausing: leave once every ticket of ours below the final mirror has finished
            if (sd == SD_PAUSE && __all_sync(FULL_MASK, done || ticket >= pub)) return;
            const bool frontier = pub >= base && pub < base + 32;  // holds the next ticket
            const bool claimed = !done && !parked && ticket < pub;
            const bool retried = parked && vyre_claim_from(c, slot, VYRE_STATUS_WAIT_IO) != 0;
            const bool run = claimed || retried;
            const unsigned run_mask = __ballot_sync(FULL_MASK, run);
#ifdef VYRE_EXP_TRACE
            iters++;
            if (!tr1 && run_mask) tr1 = vyre_globaltimer();
#endif
            LAT_T(lat_run);  // "slot load" below spans the tenant-mirror wait it overlaps
            uint32_t w[VYRE_SLOT_WORDS];
            // the one read of the slot body, issued before the claim store to the same line
            if (run) vyre_load_slot_(c, slot, w);
            if (claimed) claim_owned(c, slot);
            // while the slot is on its way: the verdict needs tenant words at least as new as
            // the doorbell that published the highest of these tickets; the poller's mirror
            // trails the doorbell mirror by one pass, about one slot round trip. Loaded whole,
            // one word per lane. (Reading the table in host memory here instead, or spreading
            // the slot's loads over lanes, made this stage 2-4 us: measured, docs/decisions.md.)
            unsigned tw = 0;
            if (run_mask) {
                const unsigned long long need = base + (31 - __clz(run_mask));
                while (__shfl_sync(FULL_MASK, tenants_asof.load(cuda::std::memory_order_acquire), 0) <= need)
                    if (__shfl_sync(FULL_MASK, shutdown.load(cuda::std::memory_order_relaxed), 0) == SD_STOP) return;
                if (lane < TM_WORDS)
                    tw = cuda::atomic_ref<unsigned, cuda::thread_scope_device>(L.tenants[lane])
                             .load(cuda::std::memory_order_relaxed);
            }
            vyre_result_t r;
            r.status = VYRE_STATUS_CLAIMED;
            r.metric_op = VYRE_NO_METRIC;
            bool coop = false;
#ifdef VYRE_EXP_LAT
            if (run) { volatile uint32_t sink = w[0] + w[15]; (void)sink; }
            LAT_T(lat_loaded);
#endif
#ifdef VYRE_EXP_TRACE
            if (run) { volatile uint32_t sink = w[0] + w[15]; (void)sink; }
            if (!tr2 && __ballot_sync(FULL_MASK, run)) tr2 = vyre_globaltimer();
#endif
#ifndef VYRE_NO_COOP_SCAN
            if (run) coop = vyre_dfa_scan_wants_lanes(w, L.coop_min_bytes);
            const unsigned coop_mask = __ballot_sync(FULL_MASK, coop);
            if (coop_mask) coop_dfa_scans(L, coop_mask, slot, w, &r);
#endif
            // user ops (a fused build, vyre/ops/cuda_build.py) run on the whole warp below;
            // the tenant verdict is made for them with the plain slots'
#ifdef VYRE_USER_OPS
            const bool user = run && !coop && vyre_is_user_opcode(w[VYRE_SLOT_OPCODE]);
#else
            const bool user = false;
#endif
            const bool plain = run && !coop && !user;
            const unsigned plain_mask = __ballot_sync(FULL_MASK, plain || user);
            if (plain_mask) {
                const uint32_t tenant = w[VYRE_SLOT_TENANT];
                const unsigned deflt = __shfl_sync(FULL_MASK, tw, TM_DEFAULT);
                const unsigned len = __shfl_sync(FULL_MASK, tw, TM_LEN);
                const unsigned mask = __shfl_sync(FULL_MASK, tw, TM_MASKS + (tenant < VYRE_TENANT_MASK_COUNT ? tenant : 0u));
                int ok = -1;  // -1: a moved or longer table, read in host memory
                if (deflt && tenant < VYRE_TENANT_MASK_COUNT) ok = vyre_tenant_verdict(tenant, len, mask);
                else if (deflt && tenant >= len) ok = 0;
                const bool slow = (plain || user) && ok < 0;
                const unsigned slow_mask = __ballot_sync(FULL_MASK, slow);
                if (slow) {  // one read per tenant per warp, shared with the lanes of that tenant
                    const unsigned same = __match_any_sync(slow_mask, tenant);
                    const int leader = __ffs(same) - 1;
                    if ((int)lane == leader) ok = vyre_tenant_ok_(c, tenant);
                    ok = __shfl_sync(same, ok, leader);
                }
                if (plain) r = vyre_execute_authorized(c, slot, w, ok);
#ifdef VYRE_USER_OPS
                const unsigned user_mask = __ballot_sync(FULL_MASK, user);
                if (user_mask) user_ops(c, user_mask, slot, w, ok, &r);
#endif
            }

            LAT_T(lat_exec);
#ifdef VYRE_EXP_TRACE
            if (!tr3 && run_mask) tr3 = vyre_globaltimer();
#endif
            if (run_mask) {
                const bool counted = run && r.status != VYRE_STATUS_CLAIMED;
                const unsigned done_mask = __ballot_sync(FULL_MASK, counted && r.status == VYRE_STATUS_DONE);
                const unsigned fault_mask = __ballot_sync(FULL_MASK, counted && r.status == VYRE_STATUS_FAULT);
                // the status first: the caller waits on it, and its release orders the op's
                // writes before it; the bookkeeping below (device memory) trails it, as
                // DONE_COUNT may (lazy counters, docs/decisions.md)
                if (counted) sys_store_release(&c->ring[(size_t)slot * VYRE_SLOT_WORDS + VYRE_SLOT_STATUS], r.status);
#ifdef VYRE_EXP_LAT
                if (counted) {
                    unsigned long long *t = vyre_lat + (ticket % VYRE_LAT_N) * 4;
                    t[0] = lat_run; t[1] = lat_loaded; t[2] = lat_exec; t[3] = vyre_globaltimer();
                }
#endif
                if (run) {
                    parked = r.status == VYRE_STATUS_CLAIMED &&
                             cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(
                                 c->ring[(size_t)slot * VYRE_SLOT_WORDS + VYRE_SLOT_STATUS])
                                     .load(cuda::std::memory_order_relaxed) == VYRE_STATUS_WAIT_IO;
                    done = !parked;
                }
                const bool metric = counted && r.metric_op != VYRE_NO_METRIC;
                const unsigned metric_mask = __ballot_sync(FULL_MASK, metric);
                // device-memory counters (fast atomics); the flusher folds them into control
                if (metric) {
                    const unsigned same = __match_any_sync(metric_mask, r.metric_op);
                    if ((unsigned)(__ffs(same) - 1) == lane)
                        atomicAdd(&L.counters[CNT_METRICS + r.metric_op], (unsigned)__popc(same));
                }
                // the flusher reads DONE/FAULT first and then METRICS: a slot's metric must be
                // in device memory before its count
                __syncwarp();
                __threadfence();
                if (lane == 0) {
                    if (done_mask) atomicAdd(&L.counters[CNT_DONE], (unsigned)__popc(done_mask));
                    if (fault_mask) atomicAdd(&L.counters[CNT_FAULT], (unsigned)__popc(fault_mask));
                }
                __syncwarp();
                sleep_ns = 32;
            }
#ifdef VYRE_EXP_TRACE
            if (!tr4 && run_mask) tr4 = vyre_globaltimer();
#endif
            if (__all_sync(FULL_MASK, done)) break;
            const unsigned parked_mask = __ballot_sync(FULL_MASK, parked);
            if (!(run_mask & ~parked_mask) && !frontier) {
#ifndef VYRE_NO_COOP_SCAN
                // rather than sleep, scan a part of someone's long DFA_SCAN (the frontier warp
                // never does: it is the one that sees the next publication first)
                if (!parked_mask && L.assist_part_bytes != 0u && assist_help(L)) {
                    sleep_ns = 32;
                    continue;
                }
#endif
                __nanosleep(sleep_ns);
                sleep_ns = sleep_ns * 2 > L.idle_sleep_ns ? L.idle_sleep_ns : sleep_ns * 2;
            }
        }
#ifdef VYRE_EXP_TRACE
        if (lane == 0) {
            unsigned i = atomicAdd(&vyre_trace_n, 1u);
            if (i < VYRE_TRACE_ROUNDS) {
                unsigned smid; asm("mov.u32 %0, %%smid;" : "=r"(smid));
                unsigned long long *t = vyre_trace + (size_t)i * 8;
                t[0] = tr0; t[1] = tr1; t[2] = tr2; t[3] = tr3; t[4] = tr4; t[5] = smid; t[6] = base; t[7] = iters;
            }
        }
#endif
    }
}

// ---- the call path (docs/call.md) ---------------------------------------------------------
// A call is one request and one answer in mapped host memory, beside the ring: the warp reads
// whole requests speculatively (no flag, then body: that would be two PCIe round trips), one
// 16-byte piece per thread, and every piece carries the request's sequence number, so a torn
// read shows as unequal numbers and is simply read again next pass.
#define CALL_GROUP_LANES 8u          // lanes one warp-wide load covers (32 threads x 16 bytes)
#define CALL_GROUPS (VYRE_CALL_MAX_LANES / CALL_GROUP_LANES)
#define CALL_HOT_NS 1000000ull       // poll back to back this long after the last call

static __device__ __forceinline__ void st_rlx_sys_v4(uint32_t *p, uint4 v) {
    asm volatile("st.relaxed.sys.global.v4.u32 [%0], {%1,%2,%3,%4};"
                 :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}

static __device__ __forceinline__ uint32_t ld_rlx_sys(const uint32_t *p) {
    return cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(*const_cast<uint32_t *>(p))
        .load(cuda::std::memory_order_relaxed);
}

// Run one whole request (w: its 16 words) of call lane `lane`: its status, result words into
// `result`, *opcode.
static __device__ uint32_t call_serve(const vyre_launch_t &L, unsigned lane, const uint32_t *w,
                                      uint32_t *result, uint32_t *opcode_out) {
    uint32_t opcode = 0, tenant = 0, args[VYRE_SLOT_ARG_COUNT];
    (void)vyre_call_decode(w, &opcode, &tenant, args);
    *opcode_out = opcode;
    // the tenant verdict from the poller's mirror, as the workers take it; the control words
    // in host memory only for a moved or longer table (or before the poller's first pass)
    cuda::atomic_ref<unsigned, cuda::thread_scope_device> deflt(L.tenants[TM_DEFAULT]);
    const unsigned len = cuda::atomic_ref<unsigned, cuda::thread_scope_device>(L.tenants[TM_LEN])
                             .load(cuda::std::memory_order_relaxed);
    int ok;
    if (deflt.load(cuda::std::memory_order_relaxed) && tenant < VYRE_TENANT_MASK_COUNT)
        ok = vyre_tenant_verdict(tenant, len,
                                 cuda::atomic_ref<unsigned, cuda::thread_scope_device>(
                                     L.tenants[TM_MASKS + tenant]).load(cuda::std::memory_order_relaxed));
    else if (deflt.load(cuda::std::memory_order_relaxed) && tenant >= len)
        ok = 0;
    else
        ok = vyre_tenant_ok_(&L.ctx, tenant);
    return vyre_call_execute(&L.ctx, L.call_scratch + (size_t)lane * VYRE_SLOT_WORDS, opcode,
                             tenant, args, ok, result);
}

// Warp 2 of block 0 when call lanes exist. One acquire load per thread per 8 lanes each pass
// (thread t: piece t % 4 of lane t / 4 of the group): the acquire orders the op's reads after
// the request, as the ring's doorbell load does for slots. The thread holding piece 0 of a lane
// whose four pieces carry one new sequence number runs it.
static __device__ __noinline__ void call_server(const vyre_launch_t &L) {
    static_assert(VYRE_CALL_PIECES == 4u && VYRE_CALL_PIECE_WORDS == 4u, "a piece is one uint4 per thread");
    static_assert(VYRE_CALL_ANSWER_SEQ2 == 4u && VYRE_CALL_ANSWER % 8u == 0u && VYRE_CALL_LANE_WORDS % 8u == 0u,
                  "an answer is two adjacent uint4 in one 32-byte aligned span");
    static_assert(VYRE_CALL_MAX_LANES % CALL_GROUP_LANES == 0u, "whole groups");
    const unsigned t = threadIdx.x & 31;
    const unsigned lead = t & ~3u;
    const unsigned n = L.call_lanes < VYRE_CALL_MAX_LANES ? L.call_lanes : VYRE_CALL_MAX_LANES;
    const unsigned groups = (n + CALL_GROUP_LANES - 1u) / CALL_GROUP_LANES;
    cuda::atomic_ref<unsigned int, cuda::thread_scope_device> shutdown(*L.shutdown);
    // the last sequence answered per lane (kept by its lead thread); resumed from the answers
    // the area holds, so a relaunch after a pause never runs a request twice
    unsigned last[CALL_GROUPS];
#pragma unroll
    for (unsigned g = 0; g < CALL_GROUPS; g++) {
        const unsigned lane = g * CALL_GROUP_LANES + (t >> 2);
        last[g] = (g < groups && lane < n && (t & 3u) == 0u)
                      ? ld_rlx_sys(L.calls + (size_t)lane * VYRE_CALL_LANE_WORDS + VYRE_CALL_ANSWER)
                      : 0u;
    }
    unsigned long long busy_at = vyre_globaltimer();
    unsigned sleep_ns = 32;
    for (;;) {
        // SD_STOP or SD_PAUSE: leave; a request not answered yet is answered after a relaunch
        if (shutdown.load(cuda::std::memory_order_relaxed) != SD_RUN) return;
        uint4 q[CALL_GROUPS];
#pragma unroll
        for (unsigned g = 0; g < CALL_GROUPS; g++) {
            const unsigned lane = g * CALL_GROUP_LANES + (t >> 2);
            q[g] = make_uint4(0u, 0u, 0u, 0u);
            if (g < groups && lane < n)
                q[g] = ld_acq_sys_v4(L.calls + (size_t)lane * VYRE_CALL_LANE_WORDS + VYRE_CALL_REQUEST +
                                     (t & 3u) * VYRE_CALL_PIECE_WORDS);
        }
        bool served = false;
#pragma unroll
        for (unsigned g = 0; g < CALL_GROUPS; g++) {
            if (g >= groups) break;
            const unsigned lane = g * CALL_GROUP_LANES + (t >> 2);
            const unsigned seq = q[g].x & VYRE_CALL_SEQ_MASK;
            const unsigned s0 = __shfl_sync(FULL_MASK, seq, lead);
            const unsigned agree = __ballot_sync(FULL_MASK, seq == s0);
            const bool ready = (t & 3u) == 0u && lane < n && ((agree >> lead) & 0xFu) == 0xFu &&
                               s0 != 0u && s0 != last[g];
            const unsigned ready_mask = __ballot_sync(FULL_MASK, ready);
            if (!ready_mask) continue;
            uint32_t w[VYRE_SLOT_WORDS];  // the lane's request at its lead thread
#pragma unroll
            for (unsigned k = 0; k < VYRE_CALL_PIECES; k++) {
                w[4 * k] = __shfl_sync(FULL_MASK, q[g].x, lead + k);
                w[4 * k + 1] = __shfl_sync(FULL_MASK, q[g].y, lead + k);
                w[4 * k + 2] = __shfl_sync(FULL_MASK, q[g].z, lead + k);
                w[4 * k + 3] = __shfl_sync(FULL_MASK, q[g].w, lead + k);
            }
            uint32_t status = 0, opcode = 0, result[VYRE_RESULT_WORDS] = {0u, 0u, 0u, 0u};
            if (ready) {
                status = call_serve(L, lane, w, result, &opcode);
                cuda::atomic_ref<unsigned long long, cuda::thread_scope_device>(vyre_call_served_at)
                    .store(vyre_globaltimer(), cuda::std::memory_order_relaxed);
                last[g] = s0;
            }
            // the answer: its two 16-byte pieces stored by the lead thread and the next one in
            // one instruction (one 32-byte write), behind a system-scope release of what the
            // op wrote (a NOP wrote nothing: the fence is most of its time here)
            const bool answers = __shfl_sync(FULL_MASK, ready, lead) && (t & 3u) < 2u;
            const uint32_t a_status = __shfl_sync(FULL_MASK, status, lead);
            const uint32_t a_op = __shfl_sync(FULL_MASK, opcode, lead);
            uint32_t r[VYRE_RESULT_WORDS];
#pragma unroll
            for (unsigned i = 0; i < VYRE_RESULT_WORDS; i++) r[i] = __shfl_sync(FULL_MASK, result[i], lead);
            if (answers) {
                if (a_op != VYRE_OP_NOP)
                    cuda::atomic_thread_fence(cuda::std::memory_order_release, cuda::thread_scope_system);
                uint32_t *answer = L.calls + (size_t)lane * VYRE_CALL_LANE_WORDS + VYRE_CALL_ANSWER;
                if ((t & 3u) == 0u)
                    st_rlx_sys_v4(answer, make_uint4(s0, a_status, r[0], r[1]));
                else
                    st_rlx_sys_v4(answer + VYRE_CALL_ANSWER_SEQ2, make_uint4(s0, r[2], r[3], 0u));
            }
            __syncwarp();
            served = true;
        }
        const unsigned long long now = vyre_globaltimer();
        if (served) {
            busy_at = now;
            sleep_ns = 32;
        } else if (now - busy_at > CALL_HOT_NS) {
            // idle: poll less often, so an idle call path costs the ring little PCIe
            __nanosleep(sleep_ns);
            sleep_ns = sleep_ns * 2 > L.idle_sleep_ns ? L.idle_sleep_ns : sleep_ns * 2;
        }
    }
}
