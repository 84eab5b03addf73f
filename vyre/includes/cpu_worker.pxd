# Cython declarations of csrc/cpu_worker.h: the CPU backend's worker pool.
from libc.stdint cimport int64_t, uint32_t, uint64_t

from vyre.includes.interp cimport vyre_buf_t, vyre_ctx_t

cdef extern from "cpu_worker.h" nogil:
    ctypedef struct vyre_cpu_pool:
        pass
    int VYRE_CPU_OK
    int VYRE_CPU_ERR_RUNNING
    int VYRE_CPU_ERR_THREAD
    int VYRE_CPU_ERR_TIMEOUT
    int VYRE_CPU_ERR_NOMEM
    unsigned long long VYRE_CPU_HEARTBEAT_NS
    vyre_cpu_pool *vyre_cpu_pool_new(const vyre_ctx_t *ctx)
    int vyre_cpu_pool_free(vyre_cpu_pool *p)
    int vyre_cpu_start(vyre_cpu_pool *p, uint32_t n_workers)
    int vyre_cpu_stop(vyre_cpu_pool *p, double timeout_s)
    void vyre_cpu_kick(vyre_cpu_pool *p)
    int vyre_cpu_running(const vyre_cpu_pool *p)
    uint32_t vyre_cpu_alive(const vyre_cpu_pool *p)
    uint32_t vyre_cpu_workers(const vyre_cpu_pool *p)
    uint64_t vyre_cpu_next_ticket(const vyre_cpu_pool *p)
    int vyre_cpu_set_next_ticket(vyre_cpu_pool *p, uint64_t t)
    uint64_t vyre_cpu_progress_count(const vyre_cpu_pool *p)
    void vyre_cpu_forget_workers(vyre_cpu_pool *p)
    void vyre_cpu_stats(const vyre_cpu_pool *p, uint64_t out[3])
    void vyre_cpu_set_buffer(vyre_buf_t *table, uint32_t i, uint64_t addr, uint64_t bytes)
    int64_t vyre_cpu_execute_one(vyre_cpu_pool *p, uint32_t slot)
    ctypedef int (*vyre_user_dispatch_fn)(uint32_t opcode, void *op)
    void vyre_cpu_set_user_dispatch(vyre_cpu_pool *p, vyre_user_dispatch_fn fn)
    void vyre_cpu_dfa_scan_part(const vyre_ctx_t *ctx, const uint32_t *args, uint32_t start_state,
                                uint32_t part, uint32_t parts, uint32_t *accepts,
                                uint32_t *end_state)
    int vyre_cpu_test_hooks()
    uint32_t vyre_cpu_io_wait_rounds()
