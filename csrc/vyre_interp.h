/* vyre slot interpreter: the execution of one claimed slot (SPEC §3-§9).
 *
 * One source for both backends: nvcc compiles it into the megakernel (cuda/megakernel.cu),
 * the host compiler into the CPU worker (csrc/cpu_worker.c). Only the atomics differ, and
 * they sit behind the VYRE_* macros below. Opcode semantics live here and nowhere else.
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
 *        Scan segment `part` of `parts` of a DFA_SCAN (exact when a6 > 0, see SPEC §3);
 *        parts == 1 is the sequential scan. No writes to control.
 */
#ifndef VYRE_INTERP_H
#define VYRE_INTERP_H

#include "vyre_abi.h"

#ifdef __CUDACC__
#include <cuda/atomic>
#include <stdint.h>
#define VYRE_FN static __host__ __device__ __forceinline__
#else
#include <stdint.h>
#include <stddef.h>
#define VYRE_FN static inline
#endif

typedef struct {
    uint64_t addr;   /* device address on the GPU backend, host address on the CPU backend */
    uint64_t bytes;
} vyre_buf_t;

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

#endif /* VYRE_INTERP_H */
