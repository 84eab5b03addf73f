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
#include "uring_sys.h"

#include <stdlib.h>
#include <string.h>

#if VYRE_HAVE_URING

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

/* IORING_UNREGISTER_FILES / _BUFFERS: 1 when they were dropped, 0 when none were
 * registered, else a negative errno */
static int unregister(const vyre_uring_t *r, unsigned opcode, unsigned registered)
{
    int rc;
    if (r->fd < 0)
        return -EBADF;
    if (!registered)
        return 0;
    rc = sys_register(r->fd, opcode, NULL, 0);
    return rc < 0 ? rc : 1;
}

int vyre_uring_unregister_files(vyre_uring_t *r)
{
    int rc = unregister(r, IORING_UNREGISTER_FILES, r->nfiles);
    if (rc <= 0)
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
    int rc = unregister(r, IORING_UNREGISTER_BUFFERS, r->nbufs);
    if (rc <= 0)
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

#endif
