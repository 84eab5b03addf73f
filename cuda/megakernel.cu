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
    struct vyre_assist *assist;         // device: the assist board (cuda/assist.cuh)
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

#include "assist.cuh"  // the assist board and the cooperative DFA_SCAN

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
// Every ticket of this launch finished: its DONE + FAULT counts (mod 2^32, like the counters)
// reached `tickets`. All lanes call it; lane 0 loads.
static __device__ bool launch_finished(const vyre_launch_t &L, unsigned long long tickets) {
    unsigned finished = 0;
    if ((threadIdx.x & 31) == 0)
        finished = cuda::atomic_ref<unsigned, cuda::thread_scope_device>(L.counters[CNT_DONE])
                       .load(cuda::std::memory_order_relaxed) +
                   cuda::atomic_ref<unsigned, cuda::thread_scope_device>(L.counters[CNT_FAULT])
                       .load(cuda::std::memory_order_relaxed);
    return __shfl_sync(FULL_MASK, finished, 0) == (unsigned)tickets;
}
// the longest a launch leaving on its own waits for its tickets before pausing its workers
#define LEAVE_DRAIN_NS 50000000ull

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
    unsigned long long leave_at = 0;
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
            if (!go && L.idle_exit_us != 0u && now - fresh_at >= 1000ull * L.idle_exit_us)
                go = launch_finished(L, seen - first);
            if (go) {
                leave_at = now;
                if (lane == 9) {
                    cuda::atomic_ref<unsigned, cuda::thread_scope_system>(
                        *(unsigned *)(L.doorbell + 2)).store(1u, cuda::std::memory_order_relaxed);
                    cuda::atomic_thread_fence(cuda::std::memory_order_seq_cst, cuda::thread_scope_system);
                }
                __syncwarp();
                leaving = true;  // the next pass's doorbell read is the final one
            }
        }
        // Leaving on its own, the workers keep running (and helping split scans) until every
        // ticket this launch saw has finished: a pause now would send idle warps home and leave
        // each split DFA_SCAN / DFA_MATCH in flight to its owner warp alone (measured on the
        // H200: ingest at 9 GB/s with 5 ms yields against 42 GB/s without). Bounded, so an op
        // that waits on the host cannot hold a yield forever.
        if (leaving && covered >= seen && !launch_finished(L, seen - first) &&
            __shfl_sync(FULL_MASK, vyre_globaltimer(), 0) - leave_at < LEAVE_DRAIN_NS) {
            __nanosleep(1000);
            continue;
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

#include "user_ops.cuh"     // user ops on a warp (worker and call server)
#include "call_server.cuh"  // warp 2 of block 0: the call path (docs/call.md)

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
