// User ops on a warp (vyre_op.h): included by cuda/megakernel.cu; the worker and the call
// server both run a user op this way.
#pragma once

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
