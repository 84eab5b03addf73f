/* vyre io_uring core on raw system calls. See uring.h for the contract.
 *
 * Memory ordering (shared with the kernel through the SQ/CQ mmaps):
 *   - SQ: the SQE body is written first, then the SQ tail is stored with RELEASE, so the
 *     kernel (which loads the tail with acquire) never sees a half-written SQE. The kernel
 *     advances the SQ head; we load it with ACQUIRE before reusing an SQE.
 *   - SQPOLL: after publishing the tail, a full (seq_cst) fence precedes the load of
 *     IORING_SQ_NEED_WAKEUP. Without it the tail store may be ordered after the flag load:
 *     we would read "awake" while the poller read the old tail and went to sleep, and the
 *     request would sit in the ring forever. (The kernel pairs it with its own smp_mb.)
 *   - CQ: the CQ tail is loaded with ACQUIRE before reading CQEs; the CQ head is stored with
 *     RELEASE after the CQEs were copied out, so the kernel never overwrites an unread CQE.
 *   The head we own (CQ head) and the tail we own (SQ tail) are only written by us.
 */
#define _GNU_SOURCE
#include "uring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__) && __has_include(<linux/io_uring.h>)
#define VYRE_HAVE_URING 1
#else
#define VYRE_HAVE_URING 0
#endif

#if VYRE_HAVE_URING
#include <linux/io_uring.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RLX(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

#ifndef IORING_SQ_CQ_OVERFLOW
#define IORING_SQ_CQ_OVERFLOW (1U << 1)
#endif
#ifndef IOSQE_ASYNC
#define IOSQE_ASYNC (1U << 4) /* IOSQE_ASYNC_BIT, Linux 5.6 */
#endif
#ifndef IORING_FEAT_FAST_POLL
#define IORING_FEAT_FAST_POLL (1U << 5) /* Linux 5.7 */
#endif

/* user_data of the cancel SQEs that vyre_rq_cancel_all issues; their CQEs are ignored */
#define VYRE_RQ_CANCEL_UD 0xFFFFFFFFFFFFFFFFull

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
    long rc = syscall(__NR_io_uring_setup, entries, p);
    return rc < 0 ? -errno : (int)rc;
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                     const void *arg, size_t argsz)
{
    long rc = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
    return rc < 0 ? -errno : (int)rc;
}

static int sys_register(int fd, unsigned opcode, const void *arg, unsigned nr)
{
    long rc = syscall(__NR_io_uring_register, fd, opcode, arg, nr);
    return rc < 0 ? -errno : (int)rc;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int vyre_uring_available(void) { return 1; }

static void uring_clear(vyre_uring_t *r)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

void vyre_uring_close(vyre_uring_t *r)
{
    if (r->fd < 0 && !r->sq_map)
        return;
    if (r->fd >= 0) {
        /* closing the ring fd also drops registrations; unregister explicitly anyway so the
         * pinned pages are released at once, not when the ring's exit work runs */
        if (r->nbufs)
            sys_register(r->fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
        if (r->nfiles)
            sys_register(r->fd, IORING_UNREGISTER_FILES, NULL, 0);
    }
    if (r->sqes)
        munmap(r->sqes, r->sqes_len);
    if (r->cq_map && r->cq_map != r->sq_map)
        munmap(r->cq_map, r->cq_map_len);
    if (r->sq_map)
        munmap(r->sq_map, r->sq_map_len);
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf_iovs);
    uring_clear(r);
}

int vyre_uring_setup(vyre_uring_t *r, unsigned entries, unsigned cq_entries, unsigned flags,
                     unsigned sq_thread_idle_ms)
{
    struct io_uring_params p;
    int fd, err;
    unsigned i;

    uring_clear(r);
    if (entries == 0)
        return -EINVAL;
    memset(&p, 0, sizeof p);
    if (cq_entries) {
        p.flags |= IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
    }
    if (flags & VYRE_URING_SQPOLL) {
        p.flags |= IORING_SETUP_SQPOLL;
        p.sq_thread_idle = sq_thread_idle_ms;
    }
    fd = sys_setup(entries, &p);
    if (fd < 0)
        return fd;
    r->fd = fd;
    r->setup_flags = p.flags;
    r->features = p.features;
    r->sq_entries = p.sq_entries;
    r->cq_entries = p.cq_entries;
    /* a kernel without IOSQE_ASYNC fails every SQE carrying it (-EINVAL). No feature bit
     * names it; FAST_POLL (5.7) implies it (5.6), so without that bit reads stay inline */
    r->async_reads = (flags & VYRE_URING_ASYNC_READS) && (p.features & IORING_FEAT_FAST_POLL);

    r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        /* one mapping serves both rings: it must be as large as the larger of the two */
        if (r->cq_map_len > r->sq_map_len)
            r->sq_map_len = r->cq_map_len;
        r->cq_map_len = r->sq_map_len;
    }
    r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                     IORING_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED) {
        err = -errno;
        r->sq_map = NULL;
        goto fail;
    }
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        r->cq_map = r->sq_map;
    } else {
        r->cq_map = mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                         fd, IORING_OFF_CQ_RING);
        if (r->cq_map == MAP_FAILED) {
            err = -errno;
            r->cq_map = NULL;
            goto fail;
        }
    }
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                   IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) {
        err = -errno;
        r->sqes = NULL;
        goto fail;
    }

    {
        char *sq = (char *)r->sq_map, *cq = (char *)r->cq_map;
        r->ksq_head = (unsigned *)(sq + p.sq_off.head);
        r->ksq_tail = (unsigned *)(sq + p.sq_off.tail);
        r->ksq_flags = (unsigned *)(sq + p.sq_off.flags);
        r->ksq_dropped = (unsigned *)(sq + p.sq_off.dropped);
        r->ksq_array = (unsigned *)(sq + p.sq_off.array);
        r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
        r->kcq_head = (unsigned *)(cq + p.cq_off.head);
        r->kcq_tail = (unsigned *)(cq + p.cq_off.tail);
        r->kcq_overflow = (unsigned *)(cq + p.cq_off.overflow);
        r->cqes = cq + p.cq_off.cqes;
        r->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    }
    /* SQE index i always sits at array slot i: the indirection array is written once */
    for (i = 0; i < r->sq_entries; i++)
        r->ksq_array[i] = i;
    r->sqe_tail = LOAD_RLX(r->ksq_tail);
    return 0;

fail:
    vyre_uring_close(r);
    return err;
}

/* ---- registration ---- */

int vyre_uring_register_files(vyre_uring_t *r, const int *fds, unsigned n)
{
    int rc;
    if (r->fd < 0)
        return -EBADF;
    if (n == 0)
        return -EINVAL;
    rc = sys_register(r->fd, IORING_REGISTER_FILES, fds, n);
    if (rc < 0)
        return rc;
    r->nfiles = n;
    return 0;
}

int vyre_uring_update_files(vyre_uring_t *r, unsigned offset, const int *fds, unsigned n)
{
    struct io_uring_files_update up;
    int rc;
    if (r->fd < 0)
        return -EBADF;
    if (!r->nfiles || offset + n > r->nfiles)
        return -EINVAL;
    memset(&up, 0, sizeof up);
    up.offset = offset;
    up.fds = (uint64_t)(uintptr_t)fds;
    rc = sys_register(r->fd, IORING_REGISTER_FILES_UPDATE, &up, n);
    if (rc < 0)
        return rc;
    return rc == (int)n ? 0 : -EIO;
}

int vyre_uring_unregister_files(vyre_uring_t *r)
{
    int rc;
    if (r->fd < 0)
        return -EBADF;
    if (!r->nfiles)
        return 0;
    rc = sys_register(r->fd, IORING_UNREGISTER_FILES, NULL, 0);
    if (rc < 0)
        return rc;
    r->nfiles = 0;
    return 0;
}

int vyre_uring_register_buffers(vyre_uring_t *r, void *const *addrs, const size_t *lens,
                                unsigned n)
{
    struct iovec *iov;
    unsigned i;
    int rc;
    if (r->fd < 0)
        return -EBADF;
    if (n == 0 || r->nbufs)
        return -EINVAL;
    iov = calloc(n, sizeof *iov);
    if (!iov)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        iov[i].iov_base = addrs[i];
        iov[i].iov_len = lens[i];
    }
    rc = sys_register(r->fd, IORING_REGISTER_BUFFERS, iov, n);
    if (rc < 0) {
        free(iov);
        return rc;
    }
    r->buf_iovs = iov;
    r->nbufs = n;
    return 0;
}

int vyre_uring_unregister_buffers(vyre_uring_t *r)
{
    int rc;
    if (r->fd < 0)
        return -EBADF;
    if (!r->nbufs)
        return 0;
    rc = sys_register(r->fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
    if (rc < 0)
        return rc;
    free(r->buf_iovs);
    r->buf_iovs = NULL;
    r->nbufs = 0;
    return 0;
}

int vyre_uring_buffer_contains(const vyre_uring_t *r, int index, const void *ptr, size_t len)
{
    const struct iovec *iov;
    uintptr_t lo, hi, p = (uintptr_t)ptr;
    if (index < 0 || (unsigned)index >= r->nbufs)
        return 0;
    iov = (const struct iovec *)r->buf_iovs + index;
    lo = (uintptr_t)iov->iov_base;
    hi = lo + iov->iov_len;
    return p >= lo && p <= hi && len <= hi - p;
}

/* ---- submission ---- */

unsigned vyre_uring_sq_space(const vyre_uring_t *r)
{
    if (r->fd < 0)
        return 0;
    return r->sq_entries - (r->sqe_tail - LOAD_ACQ(r->ksq_head));
}

static struct io_uring_sqe *get_sqe(vyre_uring_t *r)
{
    struct io_uring_sqe *sqe;
    if (vyre_uring_sq_space(r) == 0)
        return NULL;
    sqe = (struct io_uring_sqe *)r->sqes + (r->sqe_tail & r->sq_mask);
    /* an SQE is reused: every field we do not set must be zero (flags, ioprio, rw_flags,
     * buf_index, personality, file_index, addr3...) or the kernel reads stale values */
    memset(sqe, 0, sizeof *sqe);
    return sqe;
}

int vyre_uring_queue_read(vyre_uring_t *r, int fd, int fixed_file, void *buf, uint32_t len,
                          uint64_t offset, int buf_index, uint64_t user_data)
{
    struct io_uring_sqe *sqe;
    if (r->fd < 0)
        return -EBADF;
    if (buf_index >= 0 && !vyre_uring_buffer_contains(r, buf_index, buf, len))
        return -EFAULT;
    if (fixed_file && (fd < 0 || (unsigned)fd >= r->nfiles))
        return -EBADF;
    sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    sqe->opcode = buf_index >= 0 ? IORING_OP_READ_FIXED : IORING_OP_READ;
    sqe->fd = fd;
    sqe->flags = fixed_file ? IOSQE_FIXED_FILE : 0;
    if (r->async_reads)
        sqe->flags |= IOSQE_ASYNC;
    sqe->off = offset;
    sqe->addr = (uint64_t)(uintptr_t)buf;
    sqe->len = len;
    if (buf_index >= 0)
        sqe->buf_index = (uint16_t)buf_index;
    sqe->user_data = user_data;
    r->sqe_tail++;
    return 0;
}

int vyre_uring_queue_nop(vyre_uring_t *r, uint64_t user_data)
{
    struct io_uring_sqe *sqe;
    if (r->fd < 0)
        return -EBADF;
    sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    sqe->opcode = IORING_OP_NOP;
    sqe->fd = -1;
    sqe->user_data = user_data;
    r->sqe_tail++;
    return 0;
}

int vyre_uring_queue_cancel(vyre_uring_t *r, uint64_t target_user_data, uint64_t user_data)
{
    struct io_uring_sqe *sqe;
    if (r->fd < 0)
        return -EBADF;
    sqe = get_sqe(r);
    if (!sqe)
        return -EBUSY;
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = target_user_data;
    sqe->user_data = user_data;
    r->sqe_tail++;
    return 0;
}

int vyre_uring_submit(vyre_uring_t *r)
{
    unsigned published, to_submit;
    int rc;
    if (r->fd < 0)
        return -EBADF;
    published = r->sqe_tail - LOAD_RLX(r->ksq_tail);
    if (published)
        STORE_REL(r->ksq_tail, r->sqe_tail); /* SQE bodies before the tail */

    if (r->setup_flags & IORING_SETUP_SQPOLL) {
        /* full fence between the tail store above and the flag load below (see the top) */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (LOAD_RLX(r->ksq_flags) & IORING_SQ_NEED_WAKEUP) {
            r->enters++;
            r->wakeups++;
            rc = sys_enter(r->fd, 0, 0, IORING_ENTER_SQ_WAKEUP, NULL, 0);
            if (rc < 0)
                return rc;
        }
        return (int)published;
    }
    to_submit = r->sqe_tail - LOAD_ACQ(r->ksq_head);
    if (!to_submit)
        return 0;
    r->enters++;
    return sys_enter(r->fd, to_submit, 0, 0, NULL, 0);
}

/* ---- completion ---- */

unsigned vyre_uring_cq_ready(const vyre_uring_t *r)
{
    if (r->fd < 0)
        return 0;
    return LOAD_ACQ(r->kcq_tail) - LOAD_RLX(r->kcq_head);
}

int vyre_uring_overflowed(const vyre_uring_t *r)
{
    if (r->fd < 0)
        return 0;
    return LOAD_ACQ(r->kcq_overflow) != 0 || (LOAD_ACQ(r->ksq_flags) & IORING_SQ_CQ_OVERFLOW) != 0;
}

int vyre_uring_wait(vyre_uring_t *r, unsigned wait_nr, int64_t timeout_ns)
{
    int rc;
    unsigned to_submit = 0;
    if (r->fd < 0)
        return -EBADF;
    if (wait_nr == 0 || vyre_uring_cq_ready(r) >= wait_nr)
        return 0;
    if (vyre_uring_overflowed(r))
        return -EOVERFLOW;
    /* SQEs published but not yet taken (an earlier enter returned EAGAIN/EBUSY/EINTR) are
     * handed over by this same call, or we could wait for completions of reads the kernel
     * has never seen. Under SQPOLL the poller takes them. */
    if (!(r->setup_flags & IORING_SETUP_SQPOLL))
        to_submit = LOAD_RLX(r->ksq_tail) - LOAD_ACQ(r->ksq_head);
    r->enters++;
    if (timeout_ns < 0)
        return (rc = sys_enter(r->fd, to_submit, wait_nr, IORING_ENTER_GETEVENTS, NULL, 0)) < 0
                   ? rc : 0;
#ifdef IORING_ENTER_EXT_ARG
    if (r->features & IORING_FEAT_EXT_ARG) {
        struct __kernel_timespec ts;
        struct io_uring_getevents_arg arg;
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        memset(&arg, 0, sizeof arg);
        arg.sigmask = 0;
        arg.sigmask_sz = _NSIG / 8;
        arg.ts = (uint64_t)(uintptr_t)&ts;
        rc = sys_enter(r->fd, to_submit, wait_nr, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                       &arg, sizeof arg);
        return rc < 0 ? rc : 0;
    }
#endif
    {
        /* old kernels: the ring fd is pollable (POLLIN while CQEs are ready) */
        struct pollfd pfd;
        if (to_submit && (rc = sys_enter(r->fd, to_submit, 0, 0, NULL, 0)) < 0)
            return rc;
        pfd.fd = r->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        rc = poll(&pfd, 1, (int)((timeout_ns + 999999) / 1000000));
        if (rc < 0)
            return -errno;
        return rc == 0 ? -ETIME : 0;
    }
}

int vyre_uring_reap(vyre_uring_t *r, vyre_cqe_t *out, unsigned max)
{
    unsigned head, tail, n = 0;
    const struct io_uring_cqe *cqes;
    if (r->fd < 0)
        return -EBADF;
    if (vyre_uring_overflowed(r))
        return -EOVERFLOW;
    cqes = (const struct io_uring_cqe *)r->cqes;
    head = LOAD_RLX(r->kcq_head);
    tail = LOAD_ACQ(r->kcq_tail); /* CQE bodies after the tail */
    while (head != tail && n < max) {
        const struct io_uring_cqe *c = &cqes[head & r->cq_mask];
        out[n].user_data = c->user_data;
        out[n].res = c->res;
        out[n].flags = c->flags;
        head++;
        n++;
    }
    if (n)
        STORE_REL(r->kcq_head, head); /* the kernel may reuse the entries after this */
    return (int)n;
}

/* ---- read engine ---- */

int vyre_rq_init(vyre_rq_t *q, vyre_uring_t *ring, unsigned cap)
{
    unsigned i;
    memset(q, 0, sizeof *q);
    if (ring->fd < 0)
        return -EBADF;
    /* one SQE in flight per request, fewer requests than CQEs (one CQE is kept for a
     * cancel): the CQ cannot overflow by design */
    if (cap == 0 || cap >= ring->cq_entries)
        return -EINVAL;
    q->ring = ring;
    q->cap = cap;
    q->max_retries = 1000;
    q->reqs = calloc(cap, sizeof *q->reqs);
    q->free_list = calloc(cap, sizeof *q->free_list);
    q->pending = calloc(cap, sizeof *q->pending);
    q->finished = calloc(cap, sizeof *q->finished);
    q->cqe_buf = calloc(cap, sizeof *q->cqe_buf);
    if (!q->reqs || !q->free_list || !q->pending || !q->finished || !q->cqe_buf) {
        vyre_rq_free(q);
        return -ENOMEM;
    }
    for (i = 0; i < cap; i++)
        q->free_list[i] = cap - 1 - i;
    q->nfree = cap;
    return 0;
}

void vyre_rq_free(vyre_rq_t *q)
{
    free(q->reqs);
    free(q->free_list);
    free(q->pending);
    free(q->finished);
    free(q->cqe_buf);
    memset(q, 0, sizeof *q);
}

unsigned vyre_rq_busy(const vyre_rq_t *q) { return q->cap - q->nfree; }

static void push_pending(vyre_rq_t *q, unsigned idx)
{
    q->reqs[idx].state = VYRE_RQ_PENDING;
    q->pending[(q->pend_head + q->pend_count) % q->cap] = idx;
    q->pend_count++;
}

static void push_finished(vyre_rq_t *q, unsigned idx, int32_t err)
{
    q->reqs[idx].state = VYRE_RQ_FINISHED;
    q->reqs[idx].err = err;
    q->finished[(q->fin_head + q->fin_count) % q->cap] = idx;
    q->fin_count++;
}

static int alloc_req(vyre_rq_t *q)
{
    unsigned idx;
    vyre_rq_req_t *rq;
    uint32_t gen;
    if (q->nfree == 0)
        return -EBUSY;
    idx = q->free_list[--q->nfree];
    rq = &q->reqs[idx];
    gen = rq->gen + 1;
    if (gen == 0xFFFFFFFFu) /* never form the reserved cancel user_data */
        gen = 0;
    memset(rq, 0, sizeof *rq);
    rq->gen = gen;
    return (int)idx;
}

int vyre_rq_read(vyre_rq_t *q, int fd, int fixed_file, void *ptr, uint32_t len, uint64_t offset,
                 int buf_index, uint64_t tag)
{
    int idx;
    vyre_rq_req_t *rq;
    if (!q->reqs)
        return -EBADF;
    if (buf_index >= 0 && !vyre_uring_buffer_contains(q->ring, buf_index, ptr, len))
        return -EFAULT;
    if (fixed_file && (fd < 0 || (unsigned)fd >= q->ring->nfiles))
        return -EBADF;
    if (!fixed_file && fd < 0)
        return -EBADF;
    idx = alloc_req(q);
    if (idx < 0)
        return idx;
    rq = &q->reqs[idx];
    rq->tag = tag;
    rq->ptr = (uint8_t *)ptr;
    rq->offset = offset;
    rq->len = len;
    rq->fd = fd;
    rq->fixed_file = fixed_file ? 1 : 0;
    rq->buf_index = buf_index;
    rq->kind = VYRE_RQ_READ;
    push_pending(q, (unsigned)idx);
    return idx;
}

int vyre_rq_nop(vyre_rq_t *q, uint64_t tag)
{
    int idx;
    if (!q->reqs)
        return -EBADF;
    idx = alloc_req(q);
    if (idx < 0)
        return idx;
    q->reqs[idx].tag = tag;
    q->reqs[idx].kind = VYRE_RQ_NOP;
    q->reqs[idx].buf_index = -1;
    push_pending(q, (unsigned)idx);
    return idx;
}

static uint64_t req_ud(const vyre_rq_t *q, unsigned idx)
{
    return ((uint64_t)q->reqs[idx].gen << 32) | idx;
}

/* turn pending requests into SQEs (as many as the SQ has room for) and submit */
int vyre_rq_submit(vyre_rq_t *q)
{
    int rc;
    if (!q->reqs)
        return -EBADF;
    while (q->pend_count) {
        unsigned idx = q->pending[q->pend_head];
        vyre_rq_req_t *rq = &q->reqs[idx];
        if (rq->kind == VYRE_RQ_NOP) {
            rc = vyre_uring_queue_nop(q->ring, req_ud(q, idx));
        } else {
            uint32_t off = rq->done;
            rc = vyre_uring_queue_read(q->ring, rq->fd, rq->fixed_file, rq->ptr + off,
                                       rq->len - off, rq->offset + off, rq->buf_index,
                                       req_ud(q, idx));
        }
        if (rc == -EBUSY)
            break; /* SQ full: the rest stays pending */
        if (rc < 0) {
            /* cannot even be queued (bad fd / range): finish it with that error */
            q->pend_head = (q->pend_head + 1) % q->cap;
            q->pend_count--;
            push_finished(q, idx, rc);
            continue;
        }
        q->pend_head = (q->pend_head + 1) % q->cap;
        q->pend_count--;
        rq->state = VYRE_RQ_INFLIGHT;
        rq->sqes++;
        q->inflight++;
        q->n_sqes++;
    }
    rc = vyre_uring_submit(q->ring);
    if (rc == -EAGAIN || rc == -EBUSY || rc == -EINTR)
        return 0; /* the SQEs stay in the ring; the next submit or wait hands them over */
    return rc < 0 ? rc : 0;
}

static int handle_cqe(vyre_rq_t *q, const vyre_cqe_t *c)
{
    unsigned idx;
    uint32_t gen;
    vyre_rq_req_t *rq;
    if (c->user_data == VYRE_RQ_CANCEL_UD) {
        if (q->cancels)
            q->cancels--;
        return 0;
    }
    idx = (unsigned)(c->user_data & 0xFFFFFFFFu);
    gen = (uint32_t)(c->user_data >> 32);
    if (idx >= q->cap)
        return -EPROTO;
    rq = &q->reqs[idx];
    if (rq->state != VYRE_RQ_INFLIGHT || rq->gen != gen)
        return -EPROTO; /* a completion for no request in flight: never guess by order */
    q->inflight--;
    q->n_cqes++;
    if (rq->kind == VYRE_RQ_NOP) {
        push_finished(q, idx, c->res < 0 ? c->res : 0);
        return 0;
    }
    if (c->res == -EINTR || c->res == -EAGAIN) {
        if (rq->retries < q->max_retries) {
            rq->retries++;
            q->n_retry++;
            push_pending(q, idx);
        } else {
            push_finished(q, idx, c->res);
        }
    } else if (c->res < 0) {
        push_finished(q, idx, c->res);
    } else if (c->res == 0) {
        if (rq->done < rq->len)
            rq->eof = 1;
        push_finished(q, idx, 0);
    } else {
        if ((uint32_t)c->res > rq->len - rq->done)
            return -EPROTO;
        rq->done += (uint32_t)c->res;
        if (rq->done < rq->len) {
            q->n_short++;
            push_pending(q, idx); /* short read: resubmit the rest */
        } else {
            push_finished(q, idx, 0);
        }
    }
    return 0;
}

static int reap_all(vyre_rq_t *q)
{
    int n, i, rc, total = 0;
    for (;;) {
        n = vyre_uring_reap(q->ring, q->cqe_buf, q->cap);
        if (n < 0)
            return n;
        for (i = 0; i < n; i++) {
            rc = handle_cqe(q, &q->cqe_buf[i]);
            if (rc < 0)
                return rc;
        }
        total += n;
        if ((unsigned)n < q->cap)
            return total;
    }
}

int vyre_rq_poll(vyre_rq_t *q, unsigned min_done, int64_t timeout_ns, vyre_rq_done_t *out,
                 unsigned max_out)
{
    int64_t deadline = timeout_ns >= 0 ? now_ns() + timeout_ns : -1;
    unsigned n;
    int rc;
    if (!q->reqs)
        return -EBADF;
    for (;;) {
        rc = vyre_rq_submit(q);
        if (rc < 0)
            return rc;
        rc = reap_all(q);
        if (rc < 0)
            return rc;
        if (rc > 0 && q->pend_count)
            continue; /* continuations / retries to hand over first */
        if (q->fin_count >= min_done || (q->inflight == 0 && q->pend_count == 0))
            break;
        if (q->inflight == 0) {
            /* pending only, SQ full (SQPOLL consuming slowly): give the poller a moment */
            if (q->ring->setup_flags & IORING_SETUP_SQPOLL) {
                rc = sys_enter(q->ring->fd, 0, 0, IORING_ENTER_SQ_WAIT, NULL, 0);
                if (rc < 0 && rc != -EINTR)
                    return rc;
            }
            continue;
        }
        {
            int64_t left = -1;
            if (deadline >= 0) {
                left = deadline - now_ns();
                if (left <= 0) {
                    if (q->fin_count)
                        break;
                    return -ETIME;
                }
            }
            rc = vyre_uring_wait(q->ring, 1, left);
            if (rc == -ETIME) {
                if (q->fin_count)
                    break;
                return -ETIME;
            }
            if (rc == -EAGAIN || rc == -EBUSY)
                continue;
            if (rc < 0)
                return rc; /* -EINTR: nothing lost, the caller checks signals and calls again */
        }
    }
    n = 0;
    while (q->fin_count && n < max_out) {
        unsigned idx = q->finished[q->fin_head];
        vyre_rq_req_t *rq = &q->reqs[idx];
        q->fin_head = (q->fin_head + 1) % q->cap;
        q->fin_count--;
        out[n].tag = rq->tag;
        out[n].index = idx;
        out[n].bytes = rq->done;
        out[n].err = rq->err;
        out[n].eof = rq->eof;
        n++;
        rq->state = VYRE_RQ_FREE;
        q->free_list[q->nfree++] = idx;
    }
    return (int)n;
}

static int wait_reap(vyre_rq_t *q, int64_t deadline)
{
    int64_t left = deadline - now_ns();
    int rc;
    if (left <= 0)
        return -ETIME;
    rc = vyre_uring_wait(q->ring, 1, left);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
        return rc;
    rc = reap_all(q);
    return rc < 0 ? rc : 0;
}

/* Submit for cancel_all: EINTR is retried and EBUSY (the CQ is full: the waits that follow
 * reap it) and EAGAIN (transient) are not errors; any other failure is returned, since the reads it leaves in the
 * kernel would otherwise be waited for as if their cancels had been sent. */
static int cancel_submit(vyre_rq_t *q)
{
    int rc;
    do
        rc = vyre_uring_submit(q->ring);
    while (rc == -EINTR);
    return (rc == -EBUSY || rc == -EAGAIN) ? 0 : rc;
}

int vyre_rq_cancel_all(vyre_rq_t *q, int64_t timeout_ns)
{
    int64_t deadline;
    unsigned i;
    int rc;
    if (!q->reqs)
        return 0;
    deadline = now_ns() + (timeout_ns < 0 ? 0 : timeout_ns);
    /* requests that never got an SQE are simply finished as cancelled */
    while (q->pend_count) {
        unsigned idx = q->pending[q->pend_head];
        q->pend_head = (q->pend_head + 1) % q->cap;
        q->pend_count--;
        push_finished(q, idx, -ECANCELED);
    }
    if ((rc = cancel_submit(q)) < 0)
        return rc;
    if ((rc = reap_all(q)) < 0)
        return rc;
    for (i = 0; i < q->cap; i++) {
        /* one cancel at a time: in-flight reads (< cq_entries) + 1 cancel fit in the CQ */
        while (q->cancels) {
            if ((rc = wait_reap(q, deadline)) < 0)
                return rc;
        }
        if (q->reqs[i].state != VYRE_RQ_INFLIGHT)
            continue;
        while (vyre_uring_queue_cancel(q->ring, req_ud(q, i), VYRE_RQ_CANCEL_UD) == -EBUSY) {
            if ((rc = cancel_submit(q)) < 0)
                return rc;
            if ((rc = wait_reap(q, deadline)) < 0)
                return rc;
        }
        q->cancels++;
        if ((rc = cancel_submit(q)) < 0)
            return rc;
    }
    while (q->inflight || q->cancels) {
        if ((rc = wait_reap(q, deadline)) < 0)
            return rc;
    }
    /* short reads that completed meanwhile wanted a continuation: cancel those too */
    while (q->pend_count) {
        unsigned idx = q->pending[q->pend_head];
        q->pend_head = (q->pend_head + 1) % q->cap;
        q->pend_count--;
        push_finished(q, idx, -ECANCELED);
    }
    return 0;
}

#else /* !VYRE_HAVE_URING: every entry point says ENOSYS; callers use the preadv fallback */

int vyre_uring_available(void) { return 0; }
int vyre_uring_setup(vyre_uring_t *r, unsigned e, unsigned c, unsigned f, unsigned i)
{
    (void)e; (void)c; (void)f; (void)i;
    memset(r, 0, sizeof *r);
    r->fd = -1;
    return -ENOSYS;
}
void vyre_uring_close(vyre_uring_t *r) { (void)r; }
int vyre_uring_register_files(vyre_uring_t *r, const int *f, unsigned n)
{ (void)r; (void)f; (void)n; return -ENOSYS; }
int vyre_uring_update_files(vyre_uring_t *r, unsigned o, const int *f, unsigned n)
{ (void)r; (void)o; (void)f; (void)n; return -ENOSYS; }
int vyre_uring_unregister_files(vyre_uring_t *r) { (void)r; return -ENOSYS; }
int vyre_uring_register_buffers(vyre_uring_t *r, void *const *a, const size_t *l, unsigned n)
{ (void)r; (void)a; (void)l; (void)n; return -ENOSYS; }
int vyre_uring_unregister_buffers(vyre_uring_t *r) { (void)r; return -ENOSYS; }
int vyre_uring_buffer_contains(const vyre_uring_t *r, int i, const void *p, size_t l)
{ (void)r; (void)i; (void)p; (void)l; return 0; }
unsigned vyre_uring_sq_space(const vyre_uring_t *r) { (void)r; return 0; }
int vyre_uring_queue_read(vyre_uring_t *r, int fd, int ff, void *b, uint32_t l, uint64_t o,
                          int bi, uint64_t u)
{ (void)r; (void)fd; (void)ff; (void)b; (void)l; (void)o; (void)bi; (void)u; return -ENOSYS; }
int vyre_uring_queue_nop(vyre_uring_t *r, uint64_t u) { (void)r; (void)u; return -ENOSYS; }
int vyre_uring_queue_cancel(vyre_uring_t *r, uint64_t t, uint64_t u)
{ (void)r; (void)t; (void)u; return -ENOSYS; }
int vyre_uring_submit(vyre_uring_t *r) { (void)r; return -ENOSYS; }
int vyre_uring_wait(vyre_uring_t *r, unsigned w, int64_t t)
{ (void)r; (void)w; (void)t; return -ENOSYS; }
int vyre_uring_reap(vyre_uring_t *r, vyre_cqe_t *o, unsigned m)
{ (void)r; (void)o; (void)m; return -ENOSYS; }
unsigned vyre_uring_cq_ready(const vyre_uring_t *r) { (void)r; return 0; }
int vyre_uring_overflowed(const vyre_uring_t *r) { (void)r; return 0; }
int vyre_rq_init(vyre_rq_t *q, vyre_uring_t *r, unsigned c)
{ (void)r; (void)c; memset(q, 0, sizeof *q); return -ENOSYS; }
void vyre_rq_free(vyre_rq_t *q) { (void)q; }
int vyre_rq_read(vyre_rq_t *q, int fd, int ff, void *p, uint32_t l, uint64_t o, int bi, uint64_t t)
{ (void)q; (void)fd; (void)ff; (void)p; (void)l; (void)o; (void)bi; (void)t; return -ENOSYS; }
int vyre_rq_nop(vyre_rq_t *q, uint64_t t) { (void)q; (void)t; return -ENOSYS; }
int vyre_rq_submit(vyre_rq_t *q) { (void)q; return -ENOSYS; }
int vyre_rq_poll(vyre_rq_t *q, unsigned m, int64_t t, vyre_rq_done_t *o, unsigned x)
{ (void)q; (void)m; (void)t; (void)o; (void)x; return -ENOSYS; }
int vyre_rq_cancel_all(vyre_rq_t *q, int64_t t) { (void)q; (void)t; return 0; }
unsigned vyre_rq_busy(const vyre_rq_t *q) { (void)q; return 0; }

#endif
