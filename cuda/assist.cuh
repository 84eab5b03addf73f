// The assist board and the cooperative DFA_SCAN (docs/decisions.md): included by
// cuda/megakernel.cu after vyre_launch_t; one job, kept apart so each file reads alone.
#pragma once

// The assist board. Tickets go to warps 32 at a time, so the scan slots of one chunk land on
// one or two warps while the others sleep (one warp alone is slow: docs/decisions.md). A warp
// holding a long cooperative DFA_SCAN therefore opens an entry: the scan's args and start
// state, cut into `parts` of assist_part_bytes; idle warps take parts and add their accepts,
// the owner takes parts too (so it never waits on a part nobody took) and commits once every
// part is done. Part k of P counts the bytes of docs/spec.md §3's lane-parts k*32 .. k*32+31 of P*32
// (vyre_dfa_scan_warp_part_), so the sum over parts is exact. A DFA_MATCH entry is cut the same
// way (lane-parts of vyre_dfa_match_warp_part_): its positions go to `accepts`, its matches to
// `matches`, and a part that faults leaves its fault for the owner.
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
    unsigned match;     // 1: a DFA_MATCH (accepts: its positions; no end state)
    unsigned matches;   // DFA_MATCH: the matches of the parts done
    unsigned fault[4];  // DFA_MATCH: reason and details of a part that faulted (reason 0: none)
    unsigned pad_[10];  // one 128-byte line per entry
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
static_assert(offsetof(struct vyre_assist_body, start_state) == 12 && offsetof(struct vyre_assist_body, args) == 16 &&
              offsetof(struct vyre_assist_body, match) == 64,
              "assist_run: start_state is q[0].w, args are q[1..3], match is q[4].x");
static_assert(VYRE_DFA_LANE_PARTS == 32, "a DFA_MATCH slot's lane-parts are the warp's lanes");
static_assert(ASSIST_N == 64, "the board is scanned as word[lane] and word[lane + 32]");
static_assert(offsetof(struct vyre_assist, helped) == 4, "cuda.py: _ASSIST_HELPED_AT");

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

// Part k of parts of a DFA_MATCH by the whole warp: lane-parts k*32 .. k*32+31 of parts*32
// (vyre_dfa_match_warp_part_). Returns on every lane the warp's positions, *matches the warp's matches,
// fault[] the fault of the lowest lane that faulted (fault[0] = VYRE_FAULT_NONE: none). Out of
// line: its registers stay out of the scan paths. The closing __syncwarp orders every lane's
// counter adds and records before what the caller does next (the owner's commit, `done`).
static __device__ __noinline__ uint32_t warp_match_part(const vyre_ctx_t *c, const uint32_t args[12],
                                                        unsigned k, unsigned parts, uint32_t *matches,
                                                        uint32_t fault[4]) {
    const unsigned lane = threadIdx.x & 31;
    uint32_t pos = 0, m = 0, res[VYRE_RESULT_WORDS] = {0u, 0u, 0u, 0u};
    const uint32_t s = vyre_dfa_match_warp_part_(c, args, k, parts, lane, &pos, &m, res);
    for (int off = 16; off > 0; off >>= 1) {
        pos += __shfl_xor_sync(FULL_MASK, pos, off);
        m += __shfl_xor_sync(FULL_MASK, m, off);
    }
    const unsigned fm = __ballot_sync(FULL_MASK, s == VYRE_STATUS_FAULT);
    const int src = fm ? __ffs(fm) - 1 : 0;
#pragma unroll
    for (int i = 0; i < (int)VYRE_RESULT_WORDS; i++) {
        const uint32_t v = __shfl_sync(FULL_MASK, res[i], src);
        fault[i] = fm ? v : 0u;
    }
    *matches = m;
    __syncwarp();
    return pos;
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

// Part k of a DFA_MATCH entry's body b by the warp: positions, matches and (the first to
// report one) a fault into the body; `done` is the caller's. Out of line, like warp_match_part.
static __device__ __noinline__ void assist_run_match(const vyre_ctx_t *c, struct vyre_assist_body *b,
                                                     const uint32_t args[12], unsigned k, unsigned parts) {
    uint32_t matches, fault[VYRE_RESULT_WORDS];
    const uint32_t positions = warp_match_part(c, args, k, parts, &matches, fault);
    if ((threadIdx.x & 31) != 0) return;
    if (positions) dev_u32_ref(b->accepts).fetch_add(positions, cuda::std::memory_order_relaxed);
    if (matches) dev_u32_ref(b->matches).fetch_add(matches, cuda::std::memory_order_relaxed);
    unsigned none = VYRE_FAULT_NONE;
    if (fault[0] != VYRE_FAULT_NONE &&
        dev_u32_ref(b->fault[0]).compare_exchange_strong(none, fault[0], cuda::std::memory_order_relaxed)) {
        for (int i = 1; i < (int)VYRE_RESULT_WORDS; i++)
            dev_u32_ref(b->fault[i]).store(fault[i], cuda::std::memory_order_relaxed);
    }
}

// Scan part k of entry e and report it (warp-collective). The last part's lane 31 ends the
// whole range, so its end state is the scan's; `done` is released after the accepts.
static __device__ void assist_run(const vyre_ctx_t *c, struct vyre_assist *a, unsigned e,
                                  unsigned k, unsigned parts) {
    const unsigned lane = threadIdx.x & 31;
    struct vyre_assist_body *b = &a->body[e];
    // lane 0 read the word with its acquire CAS, so lane 0 reads the body (64 bytes) and shares it
    uint4 q[5] = {};
    if (lane == 0) {
#pragma unroll
        for (int i = 0; i < 5; i++) q[i] = reinterpret_cast<const uint4 *>(b)[i];
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
    if (__shfl_sync(FULL_MASK, q[4].x, 0) != 0u) {
        assist_run_match(c, b, args, k, parts);
    } else {
        uint32_t end;
        const uint32_t accepts = warp_scan_part(c, args, start, k, parts, &end);
        if (lane == 0) {
            if (k + 1u == parts) dev_u32_ref(b->end_state).store(end, cuda::std::memory_order_relaxed);
            if (accepts) dev_u32_ref(b->accepts).fetch_add(accepts, cuda::std::memory_order_relaxed);
        }
    }
    if (lane == 0) dev_u32_ref(b->done).fetch_add(1u, cuda::std::memory_order_release);
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

// A DFA_MATCH slot that got no board entry, by the whole warp (args: the owner's, on every
// lane); the owner lane gets the slot's result.
static __device__ __noinline__ void coop_match_whole(const vyre_ctx_t *c, uint32_t slot, const uint32_t args[12],
                                                     bool owner, vyre_result_t *res) {
    uint32_t matches, fault[VYRE_RESULT_WORDS];
    const uint32_t positions = warp_match_part(c, args, 0u, 1u, &matches, fault);
    if (owner) *res = vyre_dfa_match_commit_slot(c, slot, args, positions, matches, fault);
}

// A DFA_MATCH entry whose parts are all done: its sums and fault read, the entry freed (the gen
// stays), the slot's result.
static __device__ __noinline__ vyre_result_t match_entry_commit(const vyre_ctx_t *c, uint32_t slot,
                                                                const uint32_t args[12],
                                                                struct vyre_assist_body *b,
                                                                unsigned long long *word, unsigned gen) {
    const uint32_t positions = dev_u32_ref(b->accepts).load(cuda::std::memory_order_relaxed);
    const uint32_t matches = dev_u32_ref(b->matches).load(cuda::std::memory_order_relaxed);
    uint32_t fault[VYRE_RESULT_WORDS];
    for (int i = 0; i < (int)VYRE_RESULT_WORDS; i++)
        fault[i] = dev_u32_ref(b->fault[i]).load(cuda::std::memory_order_relaxed);
    // release: our reads of the body above come before its next owner's writes
    assist_word_ref(*word).store(AW_MAKE(gen, 0u, 0u), cuda::std::memory_order_release);
    return vyre_dfa_match_commit_slot(c, slot, args, positions, matches, fault);
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
    const bool match = mine && w[VYRE_SLOT_OPCODE] == VYRE_OP_DFA_MATCH;
    if (mine) {
        ok = match ? vyre_dfa_match_coop_begin(c, w, args) : vyre_dfa_scan_begin(c, w, args, &start_state);
        if (!ok) *res = vyre_execute_words(c, slot, w);  // refused (tenant) or malformed
    }
    // a DFA_MATCH's zeroed record counter before any lane or helper appends to it
    __syncwarp();
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
                dev_u32_ref(b->matches).store(0u, cuda::std::memory_order_relaxed);
                dev_u32_ref(b->fault[0]).store(VYRE_FAULT_NONE, cuda::std::memory_order_relaxed);
                b->match = match ? 1u : 0u;
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
        if (__shfl_sync(FULL_MASK, match, owner)) {
            coop_match_whole(c, slot, oargs, lane == (unsigned)owner, res);
            continue;
        }
        uint32_t end;
        const uint32_t accepts = warp_scan_part(c, oargs, ostart, 0u, 1u, &end);
        if (lane == (unsigned)owner) *res = vyre_dfa_scan_commit_slot(c, slot, args, accepts, end);
    }
    // 3. each entry once its parts are all in: commit, free (the gen stays; the next opening
    //    bumps it)
    if (entry >= 0) {
        struct vyre_assist_body *b = &a->body[entry];
        while (dev_u32_ref(b->done).load(cuda::std::memory_order_acquire) < parts) __nanosleep(64);
        if (match) {
            *res = match_entry_commit(c, slot, args, b, &a->word[entry], gen);
        } else {
            const uint32_t accepts = dev_u32_ref(b->accepts).load(cuda::std::memory_order_relaxed);
            const uint32_t end = dev_u32_ref(b->end_state).load(cuda::std::memory_order_relaxed);
            // release: our reads of the body above come before its next owner's writes
            assist_word_ref(a->word[entry]).store(AW_MAKE(gen, 0u, 0u), cuda::std::memory_order_release);
            *res = vyre_dfa_scan_commit_slot(c, slot, args, accepts, end);
        }
    }
    __syncwarp();
}
#endif
