/* vyre call path: one request, one answer, no ring slot (docs/call.md, spec §12).
 *
 * The record layout is in vyre_abi.h. This header holds what both sides share:
 *   - vyre_call_encode / vyre_call_decode: a request's 16 words <-> (seq, opcode, tenant, args);
 *   - host-side 16-byte piece stores and loads (C only: the caller, the CPU server);
 *   - vyre_call_execute / vyre_call_run: run a decoded request through the slot interpreter
 *     (when vyre_interp.h was included first), on a scratch slot that receives the request's
 *     words and what a handler stores into "its slot"; the answer's result words come from
 *     the interpreter, not from scratch.
 *
 * Why pieces: a GPU reads the whole request in one warp-wide load, one 16-byte piece per lane,
 * without first waiting for a flag (a flag then a body is two PCIe round trips; measured on the
 * H200, docs/call.md). Pieces are single-copy atomic (an aligned 16-byte store on the host, an
 * aligned 16-byte load on the device), the four may not be, so each carries the sequence
 * number and a reader that sees four equal ones holds one request.
 */
#ifndef VYRE_CALL_H
#define VYRE_CALL_H

#include <stdint.h>

#include "vyre_abi.h"

#ifdef __CUDACC__
#define VYRE_CALL_FN static __host__ __device__ __forceinline__
#else
#define VYRE_CALL_FN static inline
#endif

/* words of lane `lane` of a call area */
VYRE_CALL_FN uint32_t *vyre_call_lane(uint32_t *area, uint32_t lane) {
    return area + (uint64_t)lane * VYRE_CALL_LANE_WORDS;
}

/* The next sequence number of a lane after `seq` (1..0xFFFF, never 0). */
VYRE_CALL_FN uint32_t vyre_call_next_seq(uint32_t seq) {
    seq = (seq + 1u) & VYRE_CALL_SEQ_MASK;
    return seq ? seq : 1u;
}

/* The 16 request words of (seq, opcode, tenant, args[12]). */
VYRE_CALL_FN void vyre_call_encode(uint32_t *out, uint32_t seq, uint32_t opcode, uint32_t tenant,
                                   const uint32_t *args) {
    const uint32_t half[4] = {opcode & 0xFFFFu, opcode >> 16, tenant & 0xFFFFu, tenant >> 16};
    for (uint32_t k = 0; k < VYRE_CALL_PIECES; ++k) {
        uint32_t *p = out + k * VYRE_CALL_PIECE_WORDS;
        p[0] = (seq & VYRE_CALL_SEQ_MASK) | (half[k] << VYRE_CALL_HALF_SHIFT);
        p[1] = args[3u * k];
        p[2] = args[3u * k + 1u];
        p[3] = args[3u * k + 2u];
    }
}

/* The sequence number of 16 request words read piece by piece, or 0 when the pieces disagree
 * (a torn read) or the lane holds no request; opcode, tenant and args are filled in when not 0. */
VYRE_CALL_FN uint32_t vyre_call_decode(const uint32_t *in, uint32_t *opcode, uint32_t *tenant,
                                       uint32_t *args) {
    const uint32_t seq = in[0] & VYRE_CALL_SEQ_MASK;
    for (uint32_t k = 1; k < VYRE_CALL_PIECES; ++k)
        if ((in[k * VYRE_CALL_PIECE_WORDS] & VYRE_CALL_SEQ_MASK) != seq) return 0u;
    if (seq == 0u) return 0u;
    uint32_t half[4];
    for (uint32_t k = 0; k < VYRE_CALL_PIECES; ++k) {
        const uint32_t *p = in + k * VYRE_CALL_PIECE_WORDS;
        half[k] = p[0] >> VYRE_CALL_HALF_SHIFT;
        args[3u * k] = p[1];
        args[3u * k + 1u] = p[2];
        args[3u * k + 2u] = p[3];
    }
    *opcode = half[0] | (half[1] << 16);
    *tenant = half[2] | (half[3] << 16);
    return seq;
}

#ifndef __CUDA_ARCH__
/* ---- host side: 16-byte pieces -------------------------------------------------------- */
#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
/* Aligned SSE stores and loads of 16 bytes are single-copy atomic on the x86-64 CPUs this runs
 * on (and are what the measured GPU prototype relied on). Written as one instruction in asm:
 * with intrinsics the compiler may split a copy into two 8-byte moves (it did: a reader saw a
 * new sequence number beside an old result word). The memory clobber also keeps a polling
 * loop's loads in the loop. */
static inline void vyre_call_store16(uint32_t *dst, const uint32_t *src) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)src);
    __asm__ __volatile__("movdqa %1, %0" : "=m"(*(__m128i *)(void *)dst) : "x"(v) : "memory");
}
static inline void vyre_call_load16(uint32_t *dst, const uint32_t *src) {
    __m128i v;
    __asm__ __volatile__("movdqa %1, %0" : "=x"(v) : "m"(*(const __m128i *)(const void *)src) : "memory");
    _mm_storeu_si128((__m128i *)(void *)dst, v);
}
#else
static inline void vyre_call_store16(uint32_t *dst, const uint32_t *src) {
    unsigned __int128 v;
    __builtin_memcpy(&v, src, 16);
    __atomic_store_n((unsigned __int128 *)(void *)dst, v, __ATOMIC_RELAXED);
}
static inline void vyre_call_load16(uint32_t *dst, const uint32_t *src) {
    unsigned __int128 v = __atomic_load_n((unsigned __int128 *)(void *)src, __ATOMIC_RELAXED);
    __builtin_memcpy(dst, &v, 16);
}
#endif

/* Write a request into `lane_words` (release: what the caller wrote before is visible to a
 * server that reads the request). */
static inline void vyre_call_put_request(uint32_t *lane_words, uint32_t seq, uint32_t opcode,
                                         uint32_t tenant, const uint32_t *args) {
    uint32_t w[VYRE_SLOT_WORDS];
    vyre_call_encode(w, seq, opcode, tenant, args);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (uint32_t k = 0; k < VYRE_CALL_PIECES; ++k)
        vyre_call_store16(lane_words + VYRE_CALL_REQUEST + k * VYRE_CALL_PIECE_WORDS,
                          w + k * VYRE_CALL_PIECE_WORDS);
}

/* Read a request (see vyre_call_decode); acquire once whole. */
static inline uint32_t vyre_call_get_request(const uint32_t *lane_words, uint32_t *opcode,
                                             uint32_t *tenant, uint32_t *args) {
    uint32_t w[VYRE_SLOT_WORDS];
    for (uint32_t k = 0; k < VYRE_CALL_PIECES; ++k)
        vyre_call_load16(w + k * VYRE_CALL_PIECE_WORDS,
                         lane_words + VYRE_CALL_REQUEST + k * VYRE_CALL_PIECE_WORDS);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return vyre_call_decode(w, opcode, tenant, args);
}

/* Store an answer (release: the op's writes come first). `result` has VYRE_RESULT_WORDS. */
static inline void vyre_call_put_answer(uint32_t *lane_words, uint32_t seq, uint32_t status,
                                        const uint32_t *result) {
    const uint32_t a[4] = {seq, status, result[0], result[1]};
    const uint32_t b[4] = {seq, result[2], result[3], 0u};
    __atomic_thread_fence(__ATOMIC_RELEASE);
    vyre_call_store16(lane_words + VYRE_CALL_ANSWER + VYRE_CALL_ANSWER_SEQ2, b);
    vyre_call_store16(lane_words + VYRE_CALL_ANSWER, a);
}

/* 1 when the lane's answer is the one to request `seq`: out[0] = status, out[1..4] = result
 * words; 0 otherwise (not answered yet, or a torn read: poll again). */
static inline int vyre_call_get_answer(const uint32_t *lane_words, uint32_t seq, uint32_t *out) {
    uint32_t a[4], b[4];
    vyre_call_load16(a, lane_words + VYRE_CALL_ANSWER);
    if (a[0] != seq) return 0;
    vyre_call_load16(b, lane_words + VYRE_CALL_ANSWER + VYRE_CALL_ANSWER_SEQ2);
    if (b[0] != seq) return 0;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    out[0] = a[1];
    out[1] = a[2];
    out[2] = a[3];
    out[3] = b[1];
    out[4] = b[2];
    return 1;
}
#endif /* !__CUDA_ARCH__ */

#ifdef VYRE_INTERP_H
/* The 16 words of the slot a call runs as: CLAIMED, its opcode, tenant and all 12 args, the
 * default priority. Args 8..11 share slot words 12..15 with the results, as on the ring: the op
 * reads them from these words; the results start at 0 in the interpreter's result words
 * (vyre_execute_into), so what the op does not write reads 0. */
VYRE_FN void vyre_call_slot(uint32_t *w, uint32_t opcode, uint32_t tenant, const uint32_t *args) {
    w[VYRE_SLOT_STATUS] = VYRE_STATUS_CLAIMED;
    w[VYRE_SLOT_OPCODE] = opcode;
    w[VYRE_SLOT_TENANT] = tenant;
    w[VYRE_SLOT_PRIORITY] = VYRE_PRIORITY_DEFAULT;
    for (uint32_t i = 0; i < VYRE_SLOT_ARG_COUNT; ++i) w[VYRE_SLOT_ARGS + i] = args[i];
}

/* The call's outcome once the op ran with status `status`, the result words it stored in
 * `result`: DONE or FAULT (on FAULT, result: reason, details). An op that needs a ring slot
 * (LOAD_MISS parks its slot for the host's io service, which answers ring slots only; any
 * handler that kept its slot, status CLAIMED: nothing would finish it) is NOT_CALLABLE. */
VYRE_FN uint32_t vyre_call_outcome(uint32_t opcode, uint32_t status, uint32_t *result) {
    if (opcode == VYRE_OP_LOAD_MISS || status == VYRE_STATUS_CLAIMED) {
        result[0] = VYRE_FAULT_NOT_CALLABLE;
        result[1] = opcode;
        result[2] = result[3] = 0u;
        return VYRE_STATUS_FAULT;
    }
    return status;
}

/* Run one call through the slot interpreter's entry (tenant verdict `authorized` given, the
 * protected-word rule, the op, its result words) on `one`, a context whose ring is a 16-word
 * scratch slot of the server's own (ring = scratch, slot_count = 1): the op runs as slot 0 of
 * that one-slot ring, so what it writes into its slot (a status or words a handler stores)
 * lands in scratch, never in the caller's ring. A server that keeps such a context
 * (the GPU's: one per server thread, its ring set per call) copies no context per call (on
 * the GPU the copy's loads are L2 round trips). Returns DONE or FAULT; result gets
 * VYRE_RESULT_WORDS words (vyre_call_outcome): the words vyre_execute_into produced, taken
 * from it directly, since reading scratch back is a dependent device-memory load on every call
 * (on the GPU an L2 round trip behind the stores). */
VYRE_FN uint32_t vyre_call_run(const vyre_ctx_t *one, uint32_t opcode, uint32_t tenant,
                               const uint32_t *args, int authorized, uint32_t *result) {
    uint32_t w[VYRE_SLOT_WORDS];
    vyre_call_slot(w, opcode, tenant, args);
    /* The scratch pointer read once: through one->ring, which may alias *one, each store would
     * reload it (on the GPU a dependent local-memory load, L2 where the poll's acquire emptied
     * L1). On the GPU four 16-byte stores (docs/decisions.md, "Where a call's time goes"). */
#ifdef __CUDA_ARCH__
    uint4 *scratch = (uint4 *)(void *)one->ring;
    for (uint32_t k = 0; k < VYRE_SLOT_WORDS / 4u; ++k)
        scratch[k] = make_uint4(w[4u * k], w[4u * k + 1u], w[4u * k + 2u], w[4u * k + 3u]);
#else
    uint32_t *scratch = one->ring;
    for (uint32_t i = 0; i < VYRE_SLOT_WORDS; ++i) scratch[i] = w[i];
#endif
    if (opcode == VYRE_OP_LOAD_MISS) return vyre_call_outcome(opcode, VYRE_STATUS_FAULT, result);
    /* no result words into scratch: nobody reads them back (the answer takes `result`) */
    vyre_result_t r = vyre_execute_into(one, 0u, w, authorized, result, 0);
    return vyre_call_outcome(opcode, r.status, result);
}

/* vyre_call_run on the context `c` with its ring replaced by the scratch slot `scratch`. */
VYRE_FN uint32_t vyre_call_execute(const vyre_ctx_t *c, uint32_t *scratch, uint32_t opcode,
                                   uint32_t tenant, const uint32_t *args, int authorized,
                                   uint32_t *result) {
    vyre_ctx_t one = *c;
    one.ring = scratch;
    one.slot_count = 1u;
    return vyre_call_run(&one, opcode, tenant, args, authorized, result);
}
#endif /* VYRE_INTERP_H */

#endif /* VYRE_CALL_H */
