/* vyre io_uring core: raw system calls, no liburing.
 *
 * Two layers:
 *   vyre_uring_*   one ring: setup (SQ/CQ mmap, IORING_FEAT_SINGLE_MMAP), registered files and
 *                  buffers, SQE preparation (always zeroed), submission with the right memory
 *                  ordering (release store of the SQ tail, acquire load of the CQ tail, release
 *                  store of the CQ head, full fence before testing IORING_SQ_NEED_WAKEUP under
 *                  SQPOLL), CQ overflow detection, teardown.
 *   vyre_rq_*      a read engine on top of one ring: a fixed table of read requests, each
 *                  identified in its SQEs by user_data = (generation << 32) | request index, so
 *                  completions are matched by user_data (never by arrival order). Short reads
 *                  are continued by resubmitting the rest; -EINTR / -EAGAIN completions are
 *                  resubmitted; a 0-byte completion is end of file (the request finishes short).
 *                  A request never has more than one SQE in flight and the table is never
 *                  larger than the CQ, so the CQ cannot overflow by design; an overflow is
 *                  still detected and reported (-EOVERFLOW).
 *
 * Every function returns 0 / a count on success and a negative errno on failure; nothing here
 * touches Python, so callers may run all of it without the GIL. Not thread-safe: one ring per
 * thread (the Python wrapper serialises access).
 *
 * On systems without io_uring (non-Linux, or headers without <linux/io_uring.h>) every entry
 * point returns -ENOSYS and callers take the preadv fallback.
 */
#ifndef VYRE_URING_H
#define VYRE_URING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* setup flags of vyre_uring_setup (not the kernel's IORING_SETUP_* values) */
#define VYRE_URING_SQPOLL 1u
/* IOSQE_ASYNC on every read SQE: page-cache reads otherwise complete inline in the submitting
 * thread (one CPU copies); punted to io-wq workers, the reads in flight copy in parallel.
 * Not applied before Linux 5.7 (no feature bit to tell): async_reads then stays 0. */
#define VYRE_URING_ASYNC_READS 2u

/* request-engine states */
#define VYRE_RQ_FREE 0u
#define VYRE_RQ_PENDING 1u   /* wants an SQE (new, continuation or retry) */
#define VYRE_RQ_INFLIGHT 2u  /* one SQE submitted or prepared */
#define VYRE_RQ_FINISHED 3u  /* done, waiting to be handed back by vyre_rq_poll */

/* kinds of a vyre_rq request */
#define VYRE_RQ_READ 0u
#define VYRE_RQ_NOP 1u

typedef struct vyre_uring {
    int fd;                         /* -1 when closed */
    unsigned setup_flags;           /* kernel IORING_SETUP_* actually used */
    unsigned features;              /* IORING_FEAT_* reported by the kernel */
    unsigned sq_entries, cq_entries;
    void *sq_map;
    size_t sq_map_len;
    void *cq_map;                   /* == sq_map with IORING_FEAT_SINGLE_MMAP */
    size_t cq_map_len;
    void *sqes;                     /* struct io_uring_sqe[sq_entries] */
    size_t sqes_len;
    unsigned *ksq_head, *ksq_tail, *ksq_flags, *ksq_dropped, *ksq_array;
    unsigned sq_mask;
    unsigned *kcq_head, *kcq_tail, *kcq_overflow;
    void *cqes;                     /* struct io_uring_cqe[cq_entries] */
    unsigned cq_mask;
    unsigned sqe_tail;              /* local tail: SQEs handed out by vyre_uring_get_sqe */
    unsigned nfiles;                /* registered file table size (0: none) */
    unsigned nbufs;                 /* registered buffers (0: none) */
    void *buf_iovs;                 /* copy of the registered iovecs (bounds checks) */
    uint64_t enters, wakeups;       /* io_uring_enter calls, SQPOLL wake-ups */
    int async_reads;                /* 1: read SQEs carry IOSQE_ASYNC */
} vyre_uring_t;

typedef struct {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} vyre_cqe_t;

/* ---- one ring ---- */
int vyre_uring_available(void);
int vyre_uring_setup(vyre_uring_t *r, unsigned entries, unsigned cq_entries, unsigned flags,
                     unsigned sq_thread_idle_ms);
void vyre_uring_close(vyre_uring_t *r);

int vyre_uring_register_files(vyre_uring_t *r, const int *fds, unsigned n);
int vyre_uring_update_files(vyre_uring_t *r, unsigned offset, const int *fds, unsigned n);
int vyre_uring_unregister_files(vyre_uring_t *r);
int vyre_uring_register_buffers(vyre_uring_t *r, void *const *addrs, const size_t *lens,
                                unsigned n);
int vyre_uring_unregister_buffers(vyre_uring_t *r);
/* 1 when [ptr, ptr+len) lies inside registered buffer `index` */
int vyre_uring_buffer_contains(const vyre_uring_t *r, int index, const void *ptr, size_t len);

/* SQEs handed out but not yet published to the kernel, and free SQ room */
unsigned vyre_uring_sq_space(const vyre_uring_t *r);
/* READ (buf_index < 0) or READ_FIXED (buf_index >= 0); fixed_file: fd is a registered index.
 * IOSQE_ASYNC is added when the ring was set up with VYRE_URING_ASYNC_READS.
 * -EBUSY when the SQ is full. */
int vyre_uring_queue_read(vyre_uring_t *r, int fd, int fixed_file, void *buf, uint32_t len,
                          uint64_t offset, int buf_index, uint64_t user_data);
int vyre_uring_queue_nop(vyre_uring_t *r, uint64_t user_data);
int vyre_uring_queue_cancel(vyre_uring_t *r, uint64_t target_user_data, uint64_t user_data);
/* publish prepared SQEs and (unless SQPOLL) enter the kernel; returns SQEs handed to the
 * kernel or -errno (-EINTR, -EAGAIN, -EBUSY: caller reaps / retries) */
int vyre_uring_submit(vyre_uring_t *r);
/* wait until at least `wait_nr` CQEs are ready; timeout_ns < 0: no limit. 0 / -ETIME / -errno */
int vyre_uring_wait(vyre_uring_t *r, unsigned wait_nr, int64_t timeout_ns);
/* copy up to `max` ready CQEs to out and release them to the kernel; -EOVERFLOW when the
 * kernel reports a CQ overflow (completions were or would have been dropped) */
int vyre_uring_reap(vyre_uring_t *r, vyre_cqe_t *out, unsigned max);
unsigned vyre_uring_cq_ready(const vyre_uring_t *r);
int vyre_uring_overflowed(const vyre_uring_t *r);

/* ---- read engine ---- */
typedef struct {
    uint64_t tag;          /* caller's tag */
    uint8_t *ptr;          /* destination */
    uint64_t offset;       /* file offset of ptr[0] */
    uint32_t len;          /* bytes wanted */
    uint32_t done;         /* bytes landed so far */
    int32_t fd;            /* fd, or registered file index when fixed_file */
    int32_t buf_index;     /* registered buffer index, -1: plain READ */
    int32_t err;           /* 0 or -errno of the final completion */
    uint32_t gen;          /* generation, part of user_data */
    uint32_t retries;      /* EINTR/EAGAIN resubmissions of this request */
    uint32_t sqes;         /* SQEs this request used (1 + continuations + retries) */
    uint8_t state;         /* VYRE_RQ_* */
    uint8_t kind;          /* VYRE_RQ_READ / VYRE_RQ_NOP */
    uint8_t fixed_file;
    uint8_t eof;           /* a 0-byte completion ended it short */
} vyre_rq_req_t;

typedef struct {
    uint64_t tag;
    uint32_t index;        /* request index (the Python wrapper releases its buffer) */
    uint32_t bytes;        /* bytes landed */
    int32_t err;           /* 0 or -errno */
    uint32_t eof;          /* 1 when end of file was reached before `len` bytes */
} vyre_rq_done_t;

typedef struct {
    vyre_uring_t *ring;
    vyre_rq_req_t *reqs;
    unsigned cap;
    unsigned *free_list;   /* stack of free indices */
    unsigned nfree;
    unsigned *pending;     /* FIFO of indices wanting an SQE */
    unsigned pend_head, pend_count;
    unsigned *finished;    /* FIFO of finished indices */
    unsigned fin_head, fin_count;
    unsigned inflight;     /* requests with one SQE prepared or submitted */
    unsigned max_retries;  /* EINTR/EAGAIN resubmissions before giving up */
    unsigned cancels;      /* cancel SQEs whose CQE has not arrived (at most 1) */
    vyre_cqe_t *cqe_buf;   /* scratch for reaping (cap entries) */
    uint64_t n_short, n_retry, n_sqes, n_cqes;
} vyre_rq_t;

/* cap < ring->cq_entries: every request has at most one SQE in flight, and one CQE is kept
 * for a cancel, so the CQ cannot overflow */
int vyre_rq_init(vyre_rq_t *q, vyre_uring_t *ring, unsigned cap);
void vyre_rq_free(vyre_rq_t *q);
/* returns the request index (>= 0), -EBUSY when every request is in use, -EINVAL / -EFAULT
 * on bad arguments (fixed buffer range outside its registration) */
int vyre_rq_read(vyre_rq_t *q, int fd, int fixed_file, void *ptr, uint32_t len, uint64_t offset,
                 int buf_index, uint64_t tag);
int vyre_rq_nop(vyre_rq_t *q, uint64_t tag);
/* queue SQEs for pending requests and submit them; returns 0 or -errno */
int vyre_rq_submit(vyre_rq_t *q);
/* Process completions until at least `min_done` requests are finished (or none is in flight),
 * then hand back up to `max_out` finished ones in completion order. timeout_ns < 0: no limit.
 * Returns the count written to out (>= 0), -ETIME on timeout with nothing finished, -EINTR
 * (call again; no state is lost), or another -errno. */
int vyre_rq_poll(vyre_rq_t *q, unsigned min_done, int64_t timeout_ns, vyre_rq_done_t *out,
                 unsigned max_out);
/* cancel every in-flight request and wait (at most timeout_ns) until none is in flight.
 * Returns 0, or -ETIME when some are still in flight (their buffers must then stay mapped). */
int vyre_rq_cancel_all(vyre_rq_t *q, int64_t timeout_ns);
unsigned vyre_rq_busy(const vyre_rq_t *q);   /* requests not free (pending+inflight+finished) */

#ifdef __cplusplus
}
#endif
#endif /* VYRE_URING_H */
