/* vyre_op.h: the C API of a user op (docs/ops.md).
 *
 * An op is one C function body, written once and compiled for both backends:
 *
 *     VYRE_OP(axpy) {
 *         const uint32_t n = vyre_arg(op, 3);
 *         float *x = (float *)vyre_buf_ptr(op, vyre_arg(op, 0), 4ull * vyre_arg(op, 2), 4ull * n, 0);
 *         ...
 *         for (uint32_t i = op->lane; i < n; i += op->lanes) y[i] += a * x[i];
 *         if (op->lane == 0) vyre_op_result(op, 0, n);
 *     }
 *
 * Lanes: an op runs as `op->lanes` (32) lanes. On the GPU they are the 32 threads of a warp,
 * running concurrently; on the CPU the same body runs once per lane, lane 0 first. So a lane
 * must not depend on what another lane of the same op wrote (no barrier exists), and a
 * data-parallel op splits its work by `op->lane` as above.
 *
 * Every buffer access goes through the checked accessors below: a handle that names no
 * buffer, an index or byte range past the end, or (for a tenant other than 0) a write to a
 * control word below VYRE_CTRL_OBSERVABLE_BASE does nothing and faults the op with a reason
 * (VYRE_FAULT_* in vyre_abi.h); the op keeps running, so check vyre_op_failed() where
 * later work depends on it. Writes made before a fault stay.
 *
 * Results: VYRE_RESULT_WORDS words land in the op's slot (words 12..15) with its DONE status.
 * Write them from one lane; when several lanes write the same word, the lowest lane's value
 * is kept (within a lane, its last write). A FAULT replaces them with the reason and details.
 *
 * This header is the ABI between vyre and the compiled ops: vyre compiles it together with
 * the ops, and the interpreter (vyre_interp.h) includes it. Fields ending in '_' are private.
 */
#ifndef VYRE_OP_H
#define VYRE_OP_H

#include "vyre_abi.h"

#ifdef __CUDACC__
#include <cuda/atomic>
#include <stdint.h>
#include <string.h>
#define VYRE_OP_API static __host__ __device__ __forceinline__
#else
#include <stdint.h>
#include <string.h>
#define VYRE_OP_API static inline
#endif

/* bumped when vyre_op_t or the meaning of a field changes; the loaders compare it */
#define VYRE_OP_ABI_VERSION 1u
#define VYRE_OP_LANES 32u

typedef struct {
    uint64_t addr;   /* device address on the GPU backend, host address on the CPU backend */
    uint64_t bytes;
} vyre_buf_t;

typedef struct vyre_op {
    uint32_t args[VYRE_SLOT_ARG_COUNT]; /* a0..a11 as published */
    uint32_t opcode;
    uint32_t tenant;
    uint32_t slot;                      /* ring slot index */
    uint32_t lane;                      /* this lane, 0 .. lanes-1 */
    uint32_t lanes;                     /* VYRE_OP_LANES */
    uint32_t result[VYRE_RESULT_WORDS]; /* what this op returns (see the header comment) */
    uint32_t fault;                     /* 0, or the first VYRE_FAULT_* of this lane */
    uint32_t fault_detail[3];           /* d0, d1, d2 of that fault */
    /* private: the run state and the execution context */
    uint32_t lane_end_;                 /* vyre_op_run_lanes runs lane .. lane_end_-1 */
    uint32_t result_mine_;              /* bit i: this lane wrote result[i] */
    uint32_t result_kept_;              /* bit i: a lane run so far wrote result[i] (kept) */
    uint32_t fault_kept_[4];            /* the lowest lane's fault so far: reason, d0, d1, d2 */
    uint32_t control_words_;
    uint32_t observable_slots_;
    uint32_t buf_count_;
    uint32_t *control_;                 /* handle 0 */
    const vyre_buf_t *bufs_;            /* buffer table, buf_count_ entries */
} vyre_op_t;

/* An op. The body sees `vyre_op_t *op`. VYRE_OP_FN may be defined by the build (e.g. a
 * __noinline__ device function on the GPU). */
#ifndef VYRE_OP_FN
#ifdef __CUDACC__
#define VYRE_OP_FN static __device__
#else
#define VYRE_OP_FN static
#endif
#endif
#define VYRE_OP(name) VYRE_OP_FN void vyre_op_##name(vyre_op_t *op)
/* A helper function of an op's source (compiled for the device too): VYRE_OP_HELPER int f(...) */
#define VYRE_OP_HELPER VYRE_OP_API

/* ---- faults ------------------------------------------------------------------------------ */

VYRE_OP_API uint32_t vyre_op_clamp32_(uint64_t v) { return v > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)v; }

/* Record a fault with its details (the first one of a lane wins). d2 is always the lane. */
VYRE_OP_API void vyre_op_fault_at(vyre_op_t *op, uint32_t reason, uint32_t d0, uint32_t d1) {
    if (op->fault != VYRE_FAULT_NONE) return;
    op->fault = reason;
    op->fault_detail[0] = d0;
    op->fault_detail[1] = d1;
    op->fault_detail[2] = op->lane;
}

/* The op gives up: the slot ends in FAULT with reason VYRE_FAULT_RAISED and d0 = code. */
VYRE_OP_API void vyre_op_fault(vyre_op_t *op, uint32_t code) {
    vyre_op_fault_at(op, VYRE_FAULT_RAISED, code, 0u);
}

/* 1 once this lane has faulted (other lanes' faults are not visible: lanes are independent) */
VYRE_OP_API int vyre_op_failed(const vyre_op_t *op) { return op->fault != VYRE_FAULT_NONE; }

/* ---- arguments and results ------------------------------------------------------------- */

VYRE_OP_API uint32_t vyre_arg(const vyre_op_t *op, uint32_t i) {
    return i < VYRE_SLOT_ARG_COUNT ? op->args[i] : 0u;
}

/* result word i = v (i < VYRE_RESULT_WORDS, else a BAD_RESULT fault) */
VYRE_OP_API void vyre_op_result(vyre_op_t *op, uint32_t i, uint32_t v) {
    if (i >= VYRE_RESULT_WORDS) {
        vyre_op_fault_at(op, VYRE_FAULT_BAD_RESULT, i, 0u);
        return;
    }
    if (op->result_kept_ & (1u << i)) return; /* a lower lane wrote it first */
    op->result[i] = v;
    op->result_mine_ |= 1u << i;
}

/* ---- buffers ----------------------------------------------------------------------------- */

/* Handle h -> (pointer, byte length); a handle past the table or with address 0 is empty. */
VYRE_OP_API uint64_t vyre_op_view_(const vyre_op_t *op, uint32_t h, uint8_t **p) {
    if (h == VYRE_CONTROL_HANDLE) {
        *p = (uint8_t *)op->control_;
        return (uint64_t)op->control_words_ * 4u;
    }
    if (h >= op->buf_count_ || h >= VYRE_MAX_BUFFERS || op->bufs_ == 0) {
        *p = 0;
        return 0;
    }
    *p = (uint8_t *)(uintptr_t)op->bufs_[h].addr;
    return *p ? op->bufs_[h].bytes : 0;
}

/* byte length of buffer h (0 for a handle that names no buffer) */
VYRE_OP_API uint64_t vyre_buf_bytes(const vyre_op_t *op, uint32_t h) {
    uint8_t *p;
    return vyre_op_view_(op, h, &p);
}

/* The address of word idx of buffer h, or 0 after recording the fault. */
VYRE_OP_API uint32_t *vyre_op_word_(vyre_op_t *op, uint32_t h, uint64_t idx, int write) {
    uint8_t *p;
    const uint64_t bytes = vyre_op_view_(op, h, &p);
    if (idx >= (bytes >> 2)) {
        vyre_op_fault_at(op, VYRE_FAULT_OUT_OF_BOUNDS, h, vyre_op_clamp32_(idx));
        return 0;
    }
    if (((uintptr_t)p & 3u) != 0u) {
        vyre_op_fault_at(op, VYRE_FAULT_MISALIGNED, h, vyre_op_clamp32_(idx));
        return 0;
    }
    if (write && h == VYRE_CONTROL_HANDLE && op->tenant != VYRE_TENANT_SYSTEM &&
        idx < VYRE_CTRL_OBSERVABLE_BASE) {
        vyre_op_fault_at(op, VYRE_FAULT_PROTECTED, h, (uint32_t)idx);
        return 0;
    }
    return (uint32_t *)p + idx;
}

/* Control words (handle 0) are shared with the host and other lanes: relaxed atomics, as in
 * the interpreter. Other buffers are plain memory. Read-modify-writes are atomic among the
 * lanes of one backend (on the GPU of device scope, as the interpreter's). */
#ifdef __CUDA_ARCH__
#define VYRE_OP_SYS_(p) (cuda::atomic_ref<uint32_t, cuda::thread_scope_system>(*(p)))
#define VYRE_OP_DEV_(p) (cuda::atomic_ref<uint32_t, cuda::thread_scope_device>(*(p)))
#define VYRE_OP_LD_(h, p) ((h) == 0u ? VYRE_OP_SYS_(p).load(cuda::std::memory_order_relaxed) : *(p))
#define VYRE_OP_ST_(h, p, v)                                                   \
    do {                                                                       \
        if ((h) == 0u) VYRE_OP_SYS_(p).store((v), cuda::std::memory_order_relaxed); \
        else *(p) = (v);                                                       \
    } while (0)
#define VYRE_OP_ADD_(p, v) (VYRE_OP_DEV_(p).fetch_add((v), cuda::std::memory_order_relaxed))
#define VYRE_OP_XCHG_(p, v) (VYRE_OP_DEV_(p).exchange((v), cuda::std::memory_order_relaxed))
#define VYRE_OP_CAS_(p, expp, d)                                                               \
    (VYRE_OP_DEV_(p).compare_exchange_strong(*(expp), (d), cuda::std::memory_order_relaxed,  \
                                             cuda::std::memory_order_relaxed))
#else
#define VYRE_OP_LD_(h, p) ((h) == 0u ? __atomic_load_n((p), __ATOMIC_RELAXED) : *(p))
#define VYRE_OP_ST_(h, p, v)                                                   \
    do {                                                                       \
        if ((h) == 0u) __atomic_store_n((p), (v), __ATOMIC_RELAXED);           \
        else *(p) = (v);                                                       \
    } while (0)
#define VYRE_OP_ADD_(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define VYRE_OP_XCHG_(p, v) __atomic_exchange_n((p), (v), __ATOMIC_RELAXED)
#define VYRE_OP_CAS_(p, expp, d) \
    __atomic_compare_exchange_n((p), (expp), (d), 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)
#endif

/* word idx of buffer h; 0 (and an OUT_OF_BOUNDS fault) past the end */
VYRE_OP_API uint32_t vyre_load_u32(vyre_op_t *op, uint32_t h, uint64_t idx) {
    uint32_t *p = vyre_op_word_(op, h, idx, 0);
    return p ? VYRE_OP_LD_(h, p) : 0u;
}

/* word idx of buffer h = v (nothing, and a fault, out of bounds or protected) */
VYRE_OP_API void vyre_store_u32(vyre_op_t *op, uint32_t h, uint64_t idx, uint32_t v) {
    uint32_t *p = vyre_op_word_(op, h, idx, 1);
    if (p) VYRE_OP_ST_(h, p, v);
}

/* atomic word += v; returns the value before (0 after a fault) */
VYRE_OP_API uint32_t vyre_atomic_add_u32(vyre_op_t *op, uint32_t h, uint64_t idx, uint32_t v) {
    uint32_t *p = vyre_op_word_(op, h, idx, 1);
    return p ? VYRE_OP_ADD_(p, v) : 0u;
}

/* atomic exchange; returns the value before (0 after a fault) */
VYRE_OP_API uint32_t vyre_atomic_exch_u32(vyre_op_t *op, uint32_t h, uint64_t idx, uint32_t v) {
    uint32_t *p = vyre_op_word_(op, h, idx, 1);
    return p ? VYRE_OP_XCHG_(p, v) : 0u;
}

/* atomic compare-and-swap; returns the value seen (== expected: swapped). 0 after a fault,
 * which is not a swap unless expected was 0: check vyre_op_failed() when it matters. */
VYRE_OP_API uint32_t vyre_atomic_cas_u32(vyre_op_t *op, uint32_t h, uint64_t idx,
                                         uint32_t expected, uint32_t desired) {
    uint32_t *p = vyre_op_word_(op, h, idx, 1);
    if (!p) return 0u;
    uint32_t seen = expected;
    VYRE_OP_CAS_(p, &seen, desired);
    return seen;
}

/* A pointer to bytes [offset, offset + nbytes) of buffer h, or NULL (and a fault) when the
 * range does not fit, or when writable and a tenant other than 0 would reach a protected
 * control word. Accesses through it are plain; on the GPU keep them aligned to their size. */
VYRE_OP_API void *vyre_buf_ptr(vyre_op_t *op, uint32_t h, uint64_t offset, uint64_t nbytes,
                               int writable) {
    uint8_t *p;
    const uint64_t bytes = vyre_op_view_(op, h, &p);
    if (offset > bytes || nbytes > bytes - offset || p == 0) {
        vyre_op_fault_at(op, VYRE_FAULT_OUT_OF_BOUNDS, h, vyre_op_clamp32_(offset));
        return 0;
    }
    if (writable && h == VYRE_CONTROL_HANDLE && op->tenant != VYRE_TENANT_SYSTEM && nbytes != 0u &&
        offset < VYRE_CTRL_OBSERVABLE_BASE * 4u) {
        vyre_op_fault_at(op, VYRE_FAULT_PROTECTED, h, (uint32_t)(offset >> 2));
        return 0;
    }
    return p + offset;
}

/* ---- observables: obs[i] = control word VYRE_CTRL_OBSERVABLE_BASE + i ------------------- */

VYRE_OP_API uint32_t *vyre_op_obs_(vyre_op_t *op, uint32_t i) {
    if (i >= op->observable_slots_ ||
        (uint64_t)i + VYRE_CTRL_OBSERVABLE_BASE >= (uint64_t)op->control_words_) {
        vyre_op_fault_at(op, VYRE_FAULT_OUT_OF_BOUNDS, VYRE_CONTROL_HANDLE,
                         vyre_op_clamp32_((uint64_t)i + VYRE_CTRL_OBSERVABLE_BASE));
        return 0;
    }
    return op->control_ + VYRE_CTRL_OBSERVABLE_BASE + i;
}
VYRE_OP_API uint32_t vyre_obs_load(vyre_op_t *op, uint32_t i) {
    uint32_t *p = vyre_op_obs_(op, i);
    return p ? VYRE_OP_LD_(0u, p) : 0u;
}
VYRE_OP_API void vyre_obs_store(vyre_op_t *op, uint32_t i, uint32_t v) {
    uint32_t *p = vyre_op_obs_(op, i);
    if (p) VYRE_OP_ST_(0u, p, v);
}
/* returns the value before */
VYRE_OP_API uint32_t vyre_obs_add(vyre_op_t *op, uint32_t i, uint32_t v) {
    uint32_t *p = vyre_op_obs_(op, i);
    return p ? VYRE_OP_ADD_(p, v) : 0u;
}

/* ---- float helpers (bit casts; results travel as u32 words) ------------------------------ */

VYRE_OP_API uint32_t vyre_f32_bits(float f) {
    uint32_t u;
#ifdef __CUDA_ARCH__
    u = __float_as_uint(f);
#else
    memcpy(&u, &f, 4);
#endif
    return u;
}
VYRE_OP_API float vyre_bits_f32(uint32_t u) {
    float f;
#ifdef __CUDA_ARCH__
    f = __uint_as_float(u);
#else
    memcpy(&f, &u, 4);
#endif
    return f;
}

/* ---- running an op (used by the generated dispatch and the interpreter) ------------------ */

/* Run lanes op->lane .. op->lane_end_-1 of fn one after the other (the CPU's lane loop, and a
 * GPU lane that runs a whole op alone), keeping the lowest lane's result words and fault in
 * result[] / result_kept_ / fault_kept_. Each lane starts with fault = 0, so a lane sees only
 * its own faults on every backend. A GPU warp running one lane per thread calls it with
 * lane_end_ = lane + 1 and merges the lanes afterwards (vyre_user_merge in vyre_interp.h). */
VYRE_OP_API void vyre_op_lane_done_(vyre_op_t *op) {
    op->result_kept_ |= op->result_mine_;
    if (op->fault != VYRE_FAULT_NONE && op->fault_kept_[0] == VYRE_FAULT_NONE) {
        op->fault_kept_[0] = op->fault;
        op->fault_kept_[1] = op->fault_detail[0];
        op->fault_kept_[2] = op->fault_detail[1];
        op->fault_kept_[3] = op->fault_detail[2];
    }
}
#define vyre_op_run_lanes(op, fn)                                              \
    do {                                                                       \
        const uint32_t vyre_end_ = (op)->lane_end_;                            \
        for (uint32_t vyre_l_ = (op)->lane; vyre_l_ < vyre_end_; ++vyre_l_) {  \
            (op)->lane = vyre_l_;                                              \
            (op)->result_mine_ = 0u;                                           \
            (op)->fault = VYRE_FAULT_NONE;                                     \
            fn(op);                                                            \
            vyre_op_lane_done_(op);                                            \
        }                                                                      \
    } while (0)

/* The dispatch a build generates: run the op of `opcode` over op's lanes; 1 = ran, 0 = no op
 * has this opcode. */
typedef int (*vyre_user_dispatch_fn)(uint32_t opcode, vyre_op_t *op);

#endif /* VYRE_OP_H */
