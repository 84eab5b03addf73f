# Cython declarations of csrc/uring.h (io_uring on raw system calls and the read engine).
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

cdef extern from "uring.h" nogil:
    unsigned VYRE_URING_SQPOLL
    unsigned VYRE_URING_ASYNC_READS

    ctypedef struct vyre_uring_t:
        int fd
        unsigned setup_flags
        unsigned features
        unsigned sq_entries
        unsigned cq_entries
        unsigned nfiles
        unsigned nbufs
        uint64_t enters
        uint64_t wakeups
        int async_reads
        void *sq_map
        void *cq_map

    ctypedef struct vyre_cqe_t:
        uint64_t user_data
        int32_t res
        uint32_t flags

    int vyre_uring_available()
    int vyre_uring_setup(vyre_uring_t *r, unsigned entries, unsigned cq_entries, unsigned flags,
                         unsigned sq_thread_idle_ms)
    void vyre_uring_close(vyre_uring_t *r)
    int vyre_uring_register_files(vyre_uring_t *r, const int *fds, unsigned n)
    int vyre_uring_update_files(vyre_uring_t *r, unsigned offset, const int *fds, unsigned n)
    int vyre_uring_unregister_files(vyre_uring_t *r)
    int vyre_uring_register_buffers(vyre_uring_t *r, void *const *addrs, const size_t *lens,
                                    unsigned n)
    int vyre_uring_unregister_buffers(vyre_uring_t *r)
    unsigned vyre_uring_sq_space(const vyre_uring_t *r)
    int vyre_uring_queue_read(vyre_uring_t *r, int fd, int fixed_file, void *buf, uint32_t len,
                              uint64_t offset, int buf_index, uint64_t user_data)
    int vyre_uring_queue_nop(vyre_uring_t *r, uint64_t user_data)
    int vyre_uring_submit(vyre_uring_t *r)
    int vyre_uring_wait(vyre_uring_t *r, unsigned wait_nr, int64_t timeout_ns)
    int vyre_uring_reap(vyre_uring_t *r, vyre_cqe_t *out, unsigned max)
    unsigned vyre_uring_cq_ready(const vyre_uring_t *r)
    int vyre_uring_overflowed(const vyre_uring_t *r)

    ctypedef struct vyre_rq_done_t:
        uint64_t tag
        uint32_t index
        uint32_t bytes
        int32_t err
        uint32_t eof

    ctypedef struct vyre_rq_t:
        unsigned cap
        unsigned nfree
        unsigned inflight
        unsigned pend_count
        unsigned fin_count
        unsigned max_retries
        uint64_t n_short
        uint64_t n_retry
        uint64_t n_sqes
        uint64_t n_cqes

    int vyre_rq_init(vyre_rq_t *q, vyre_uring_t *ring, unsigned cap)
    void vyre_rq_free(vyre_rq_t *q)
    int vyre_rq_read(vyre_rq_t *q, int fd, int fixed_file, void *ptr, uint32_t len,
                     uint64_t offset, int buf_index, uint64_t tag)
    int vyre_rq_nop(vyre_rq_t *q, uint64_t tag)
    int vyre_rq_submit(vyre_rq_t *q)
    int vyre_rq_poll(vyre_rq_t *q, unsigned min_done, int64_t timeout_ns, vyre_rq_done_t *out,
                     unsigned max_out)
    int vyre_rq_cancel_all(vyre_rq_t *q, int64_t timeout_ns)
    unsigned vyre_rq_busy(const vyre_rq_t *q)
