/* vyre io_uring read engine (vyre_rq_*) on one ring of csrc/uring.c. See uring.h for the
 * contract: whole reads identified by user_data = (generation << 32) | request index,
 * short reads continued, -EINTR / -EAGAIN resubmitted, a 0-byte completion is end of file;
 * the table is never larger than the CQ, so the CQ cannot overflow by design.
 */
#define _GNU_SOURCE
#include "uring.h"
#include "uring_sys.h"

#include <stdlib.h>
#include <string.h>

#if VYRE_HAVE_URING

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
