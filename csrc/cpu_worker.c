/* vyre CPU backend: persistent worker threads around the slot interpreter. See cpu_worker.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <stdint.h>

/* the interpreter's wait steps (LOAD_MISS, the test spin op) use the worker's backoff */
static void vyre_cpu_backoff(uint32_t round);
#define VYRE_BACKOFF(round) vyre_cpu_backoff(round)
/* ... and its long work beats HEARTBEAT, so one busy worker is not taken for a hung pool */
struct vyre_ctx;
static void vyre_cpu_progress(const struct vyre_ctx *c);
#define VYRE_PROGRESS(c) vyre_cpu_progress(c)
/* ... and user ops go through the dispatch of the pool's loaded ops (vyre_cpu_set_user_dispatch) */
struct vyre_op;
static int vyre_cpu_user_dispatch(const struct vyre_ctx *c, uint32_t opcode, struct vyre_op *op);
#define VYRE_USER_DISPATCH(c, opcode, op) vyre_cpu_user_dispatch((c), (opcode), (op))
static void vyre_cpu_scan_progress(const struct vyre_ctx *c);
#define VYRE_SCAN_PROGRESS(c) vyre_cpu_scan_progress(c)

#include "cpu_worker.h"

#define NO_TICKET UINT64_MAX
#define SPIN_POLLS 128u  /* idle polls with a pause hint before yielding */
#define YIELD_POLLS 8u   /* then sched_yield polls before sleeping */
#define FIRST_SLEEP_NS 20000ull
#define LONG_IDLE_SLEEPS 128u /* ~0.1 s of short sleeps, then idle sleeps (an idle pool) */

enum { POOL_IDLE = 0, POOL_RUNNING = 1, POOL_STOPPING = 2 };

typedef struct {
    _Alignas(64) uint64_t held;      /* ticket being polled (not yet claimed), or NO_TICKET */
    uint64_t executed;               /* slots this worker executed (relaxed, for stats) */
    vyre_cpu_pool *pool;
    pthread_t thread;
} vyre_cpu_worker;

struct vyre_cpu_pool {
    vyre_ctx_t ctx;                  /* first: the interpreter's ctx leads back to its pool */
    vyre_user_dispatch_fn user_dispatch; /* loaded ops (atomic pointer), or NULL: none */
    _Alignas(64) uint64_t ticket;    /* next ticket (fetch_add by workers) */
    _Alignas(64) uint32_t sleepers;  /* workers inside a futex sleep */
    uint32_t kick_seq;               /* futex word: bumped by kick / stop */
    _Alignas(64) uint64_t last_beat_ns;
    uint64_t progress;               /* beats from inside long slots (VYRE_PROGRESS) */
    uint64_t sleeps, wakes, executed_total;
    pthread_mutex_t mu;
    pthread_cond_t cv;               /* signalled by each exiting worker */
    uint32_t alive;                  /* guarded by mu */
    uint32_t n_workers;
    int state;                       /* guarded by mu */
    int reaping;                     /* guarded by mu: a stop() is joining the workers */
    vyre_cpu_worker *workers;
};
_Static_assert(offsetof(struct vyre_cpu_pool, ctx) == 0, "vyre_cpu_user_dispatch finds the pool from its ctx");

/* ---------------------------------------------------------------------------- primitives */

/* Every ctx the interpreter runs with here is the ctx member of a pool (the first member). A
 * pointer swapped while workers run is safe: a slot published after the swap was claimed with
 * an acquire that saw it, and a superseded library is never unloaded (the Python side keeps
 * every one the pool has used). */
static int vyre_cpu_user_dispatch(const vyre_ctx_t *c, uint32_t opcode, vyre_op_t *op) {
    const vyre_cpu_pool *p = (const vyre_cpu_pool *)(const void *)c;
    vyre_user_dispatch_fn fn = __atomic_load_n(&p->user_dispatch, __ATOMIC_ACQUIRE);
    return fn == NULL ? -1 : fn(opcode, op);
}

/* A mutex or condition call on the pool's own, initialised objects fails only when memory is
 * corrupt or the pool is misused: continuing could run slots twice or free memory in use. */
static void must(int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "vyre cpu_worker: %s failed (error %d); aborting\n", what, rc);
        abort();
    }
}

static void lock(vyre_cpu_pool *p) { must(pthread_mutex_lock(&p->mu), "pthread_mutex_lock"); }
static void unlock(vyre_cpu_pool *p) { must(pthread_mutex_unlock(&p->mu), "pthread_mutex_unlock"); }
static void broadcast(vyre_cpu_pool *p) {
    must(pthread_cond_broadcast(&p->cv), "pthread_cond_broadcast");
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    nanosleep(&ts, NULL);
}

static void futex_wait_ns(uint32_t *addr, uint32_t val, uint64_t ns) {
#ifdef __linux__
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
#else
    (void)addr;
    (void)val;
    sleep_ns(ns);
#endif
}

static void futex_wake_all(uint32_t *addr) {
#ifdef __linux__
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)addr;
#endif
}

static void vyre_cpu_backoff(uint32_t round) {
    if (round < 16u) {
        cpu_relax();
    } else if (round < 24u) {
        sched_yield();
    } else {
        uint32_t k = round - 24u;
        uint64_t ns = 10000ull << (k < 7u ? k : 7u);
        sleep_ns(ns < VYRE_CPU_MAX_SLEEP_NS ? ns : VYRE_CPU_MAX_SLEEP_NS);
    }
}


/* the pool's progress counter, in its worker threads (NULL on other threads) */
static __thread uint64_t *tls_progress;

/* HEARTBEAT from inside a long slot: at most once a period per busy thread */
static void vyre_cpu_progress(const vyre_ctx_t *c) {
    static __thread uint64_t last_ns;
    uint64_t now = now_ns();
    if (now - last_ns >= VYRE_CPU_HEARTBEAT_NS && c->control_words > VYRE_CTRL_HEARTBEAT) {
        last_ns = now;
        __atomic_fetch_add(c->control + VYRE_CTRL_HEARTBEAT, 1u, __ATOMIC_RELAXED);
    }
}

/* ... and a MiB of a scan done: counted in the pool's progress counter, which tells the
 * host's watchdog that a slot CLAIMED for long is working (a wait, such as LOAD_MISS's for
 * its io, beats but is not counted: a wait nobody ends must still be reported) */
static void vyre_cpu_scan_progress(const vyre_ctx_t *c) {
    vyre_cpu_progress(c);
    if (tls_progress != NULL) __atomic_fetch_add(tls_progress, 1u, __ATOMIC_RELAXED);
}

/* HEARTBEAT: whoever passes by first after the period bumps control[143] once */
static void maybe_beat(vyre_cpu_pool *p) {
    uint64_t now = now_ns();
    uint64_t last = __atomic_load_n(&p->last_beat_ns, __ATOMIC_RELAXED);
    if (now - last >= VYRE_CPU_HEARTBEAT_NS &&
        __atomic_compare_exchange_n(&p->last_beat_ns, &last, now, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) {
        if (p->ctx.control_words > VYRE_CTRL_HEARTBEAT)
            __atomic_fetch_add(p->ctx.control + VYRE_CTRL_HEARTBEAT, 1u, __ATOMIC_RELAXED);
    }
}

static inline int shutting_down(const vyre_cpu_pool *p) {
    return __atomic_load_n(p->ctx.control + VYRE_CTRL_SHUTDOWN, __ATOMIC_ACQUIRE) != 0u;
}

/* Sleep until kicked, or ns elapse. The sleeper count is raised (a full barrier) before the
 * slot is looked at again, and kick() fences before reading the count: either the sleeper
 * sees the publication, or the kicker sees the sleeper. */
static void sleep_on_kick(vyre_cpu_pool *p, const uint32_t *status, uint64_t ns) {
    uint32_t seq = __atomic_load_n(&p->kick_seq, __ATOMIC_ACQUIRE);
    __atomic_fetch_add(&p->sleepers, 1u, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(status, __ATOMIC_SEQ_CST) != VYRE_STATUS_PUBLISHED && !shutting_down(p)) {
        __atomic_fetch_add(&p->sleeps, 1u, __ATOMIC_RELAXED);
        futex_wait_ns(&p->kick_seq, seq, ns);
    }
    __atomic_fetch_sub(&p->sleepers, 1u, __ATOMIC_RELAXED);
}

/* one idle step while polling a slot that is not published yet */
static void idle_step(vyre_cpu_pool *p, const uint32_t *status, uint32_t *idle) {
    uint32_t i = (*idle)++;
    if (i < SPIN_POLLS) {
        cpu_relax();
        return;
    }
    maybe_beat(p);
    if (i < SPIN_POLLS + YIELD_POLLS) {
        sched_yield();
        return;
    }
    uint32_t k = i - SPIN_POLLS - YIELD_POLLS;
    uint64_t ns = FIRST_SLEEP_NS << (k < 6u ? k : 6u);
    /* a kick wakes sleepers at once: the timeout only bounds the latency of a publication
     * nobody kicked, so a pool idle for long sleeps longer (many idle workers must not keep
     * the cores busy waking up) */
    if (ns > VYRE_CPU_MAX_SLEEP_NS) ns = VYRE_CPU_MAX_SLEEP_NS;
    sleep_on_kick(p, status, k < LONG_IDLE_SLEEPS ? ns : VYRE_CPU_IDLE_SLEEP_NS);
}

/* A slot this worker parked in WAIT_IO (LOAD_MISS found no free io slot): the worker keeps
 * it and retries WAIT_IO -> CLAIMED with backoff until it finishes, or SHUTDOWN. */
static void retry_parked(vyre_cpu_pool *p, vyre_cpu_worker *w, uint32_t slot) {
    const vyre_ctx_t *c = &p->ctx;
    const uint32_t *status = c->ring + (size_t)slot * VYRE_SLOT_WORDS;
    for (uint32_t round = 0;; ++round) {
        if (__atomic_load_n(status, __ATOMIC_ACQUIRE) != VYRE_STATUS_WAIT_IO) return;
        if (shutting_down(p)) return;
        vyre_cpu_backoff(round < 64u ? round : 64u);
        if (round >= 24u) maybe_beat(p);
        if (vyre_claim_from(c, slot, VYRE_STATUS_WAIT_IO)) {
            vyre_result_t r = vyre_execute(c, slot);
            vyre_finish(c, slot, r);
            __atomic_store_n(&w->executed, w->executed + 1u, __ATOMIC_RELAXED);
            if (r.status != VYRE_STATUS_CLAIMED) return;
        }
    }
}

static void *worker_main(void *arg) {
    vyre_cpu_worker *w = (vyre_cpu_worker *)arg;
    vyre_cpu_pool *p = w->pool;
    const vyre_ctx_t *c = &p->ctx;
    const uint64_t n = c->slot_count;
    uint32_t beat_tick = 0;

    tls_progress = &p->progress;
    maybe_beat(p);
    while (n != 0u && !shutting_down(p)) {
        uint64_t t = __atomic_fetch_add(&p->ticket, 1u, __ATOMIC_RELAXED);
        __atomic_store_n(&w->held, t, __ATOMIC_RELAXED);
        const uint32_t slot = (uint32_t)(t % n);
        const uint32_t *status = c->ring + (size_t)slot * VYRE_SLOT_WORDS;
        uint32_t idle = 0;
        int claimed = 0;
        for (;;) {
            if (__atomic_load_n(status, __ATOMIC_RELAXED) == VYRE_STATUS_PUBLISHED &&
                vyre_claim(c, slot)) {
                claimed = 1;
                break;
            }
            if (shutting_down(p)) break;
            idle_step(p, status, &idle);
        }
        if (!claimed) break; /* SHUTDOWN while polling: the ticket stays held (see stop) */
        __atomic_store_n(&w->held, NO_TICKET, __ATOMIC_RELAXED);
        vyre_result_t r = vyre_execute(c, slot);
        vyre_finish(c, slot, r);
        __atomic_store_n(&w->executed, w->executed + 1u, __ATOMIC_RELAXED);
        if (r.status == VYRE_STATUS_CLAIMED) retry_parked(p, w, slot);
        if ((++beat_tick & 63u) == 0u) maybe_beat(p);
    }
    lock(p);
    p->alive--;
    broadcast(p);
    unlock(p);
    return NULL;
}

/* ---------------------------------------------------------------------------- pool API */

vyre_cpu_pool *vyre_cpu_pool_new(const vyre_ctx_t *ctx) {
    size_t size = (sizeof(vyre_cpu_pool) + 63u) & ~(size_t)63u;
    vyre_cpu_pool *p = (vyre_cpu_pool *)aligned_alloc(64, size);
    if (p == NULL) return NULL;
    memset(p, 0, size);
    p->ctx = *ctx;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        free(p);
        return NULL;
    }
    /* the stop deadline is on CLOCK_MONOTONIC: a cv on another clock would misread it */
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0) rc = pthread_cond_init(&p->cv, &ca);
    must(pthread_condattr_destroy(&ca), "pthread_condattr_destroy");
    if (rc != 0) {
        free(p);
        return NULL;
    }
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        must(pthread_cond_destroy(&p->cv), "pthread_cond_destroy");
        free(p);
        return NULL;
    }
    p->state = POOL_IDLE;
    return p;
}

int vyre_cpu_pool_free(vyre_cpu_pool *p) {
    if (p == NULL) return VYRE_CPU_OK;
    lock(p);
    int state = p->state;
    unlock(p);
    if (state != POOL_IDLE) return VYRE_CPU_ERR_RUNNING;
    must(pthread_mutex_destroy(&p->mu), "pthread_mutex_destroy");
    must(pthread_cond_destroy(&p->cv), "pthread_cond_destroy");
    free(p);
    return VYRE_CPU_OK;
}

static void wake_everyone(vyre_cpu_pool *p) {
    __atomic_fetch_add(&p->kick_seq, 1u, __ATOMIC_SEQ_CST);
    futex_wake_all(&p->kick_seq);
}

/* join exited workers, rewind the ticket counter to the lowest ticket nobody claimed */
static void reap(vyre_cpu_pool *p, uint32_t count) {
    uint64_t lowest = NO_TICKET;
    for (uint32_t i = 0; i < count; ++i) {
        must(pthread_join(p->workers[i].thread, NULL), "pthread_join");
        uint64_t h = __atomic_load_n(&p->workers[i].held, __ATOMIC_RELAXED);
        if (h < lowest) lowest = h;
        p->executed_total += __atomic_load_n(&p->workers[i].executed, __ATOMIC_RELAXED);
    }
    if (lowest != NO_TICKET) __atomic_store_n(&p->ticket, lowest, __ATOMIC_RELAXED);
    free(p->workers);
    p->workers = NULL;
}

int vyre_cpu_start(vyre_cpu_pool *p, uint32_t n_workers) {
    if (n_workers == 0u) n_workers = 1u;
    lock(p);
    if (p->state != POOL_IDLE) {
        unlock(p);
        return VYRE_CPU_ERR_RUNNING;
    }
    size_t size = ((sizeof(vyre_cpu_worker) * n_workers) + 63u) & ~(size_t)63u;
    p->workers = (vyre_cpu_worker *)aligned_alloc(64, size);
    if (p->workers == NULL) {
        unlock(p);
        return VYRE_CPU_ERR_NOMEM;
    }
    memset(p->workers, 0, size);
    p->alive = 0;
    __atomic_store_n(&p->last_beat_ns, 0u, __ATOMIC_RELAXED);
    uint32_t made = 0;
    int err = 0;
    for (; made < n_workers; ++made) {
        vyre_cpu_worker *w = &p->workers[made];
        w->pool = p;
        w->held = NO_TICKET;
        err = pthread_create(&w->thread, NULL, worker_main, w);
        if (err != 0) break;
        p->alive++; /* workers decrement under mu, so they wait for us to unlock */
    }
    if (err != 0) { /* undo: stop the ones that started */
        p->state = POOL_STOPPING;
        unlock(p);
        uint32_t saved = __atomic_exchange_n(p->ctx.control + VYRE_CTRL_SHUTDOWN, 1u,
                                             __ATOMIC_SEQ_CST);
        wake_everyone(p);
        reap(p, made);
        __atomic_store_n(p->ctx.control + VYRE_CTRL_SHUTDOWN, saved, __ATOMIC_SEQ_CST);
        lock(p);
        p->state = POOL_IDLE;
        unlock(p);
        errno = err;
        return VYRE_CPU_ERR_THREAD;
    }
    p->n_workers = n_workers;
    p->state = POOL_RUNNING;
    unlock(p);
    return VYRE_CPU_OK;
}

int vyre_cpu_stop(vyre_cpu_pool *p, double timeout_s) {
    lock(p);
    if (p->state == POOL_IDLE) {
        unlock(p);
        return VYRE_CPU_OK;
    }
    p->state = POOL_STOPPING;
    __atomic_store_n(p->ctx.control + VYRE_CTRL_SHUTDOWN, 1u, __ATOMIC_SEQ_CST);
    wake_everyone(p);
    if (!(timeout_s >= 0)) timeout_s = 0; /* NaN too */
    if (timeout_s > 1e9) timeout_s = 1e9;
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    struct timespec ts = {(time_t)(deadline / 1000000000ull), (long)(deadline % 1000000000ull)};
    /* wait for every worker to exit (or for a concurrent stop() to finish joining them) */
    while (p->state != POOL_IDLE && (p->alive > 0u || p->reaping)) {
        int rc = pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        if (rc == ETIMEDOUT) break;
        must(rc, "pthread_cond_timedwait");
    }
    if (p->state == POOL_IDLE) {
        unlock(p);
        return VYRE_CPU_OK;
    }
    if (p->alive > 0u || p->reaping) {
        unlock(p);
        return VYRE_CPU_ERR_TIMEOUT;
    }
    p->reaping = 1; /* exactly one caller joins */
    unlock(p);
    reap(p, p->n_workers);
    lock(p);
    p->reaping = 0;
    p->state = POOL_IDLE;
    broadcast(p);
    unlock(p);
    return VYRE_CPU_OK;
}

void vyre_cpu_kick(vyre_cpu_pool *p) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&p->sleepers, __ATOMIC_RELAXED) != 0u) {
        __atomic_fetch_add(&p->wakes, 1u, __ATOMIC_RELAXED);
        wake_everyone(p);
    }
}

int vyre_cpu_running(const vyre_cpu_pool *p) {
    return __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != POOL_IDLE;
}

uint32_t vyre_cpu_alive(const vyre_cpu_pool *p) {
    return __atomic_load_n(&p->alive, __ATOMIC_ACQUIRE);
}

uint32_t vyre_cpu_workers(const vyre_cpu_pool *p) { return p->n_workers; }

void vyre_cpu_forget_workers(vyre_cpu_pool *p) {
    /* a thread of the parent may have held the mutex at the fork: the child's copy would stay
     * locked forever, so both are made anew (the old ones have no owner in this process) */
    must(pthread_mutex_init(&p->mu, NULL), "pthread_mutex_init");
    pthread_condattr_t ca;
    must(pthread_condattr_init(&ca), "pthread_condattr_init");
    must(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC), "pthread_condattr_setclock");
    must(pthread_cond_init(&p->cv, &ca), "pthread_cond_init");
    must(pthread_condattr_destroy(&ca), "pthread_condattr_destroy");
    p->workers = NULL; /* the parent's; never freed here */
    p->alive = 0;
    p->reaping = 0;
    p->sleepers = 0;
    p->state = POOL_IDLE;
}

uint64_t vyre_cpu_progress_count(const vyre_cpu_pool *p) {
    return __atomic_load_n(&p->progress, __ATOMIC_RELAXED);
}

uint64_t vyre_cpu_next_ticket(const vyre_cpu_pool *p) {
    return __atomic_load_n(&p->ticket, __ATOMIC_ACQUIRE);
}

int vyre_cpu_set_next_ticket(vyre_cpu_pool *p, uint64_t t) {
    if (vyre_cpu_running(p)) return VYRE_CPU_ERR_RUNNING;
    __atomic_store_n(&p->ticket, t, __ATOMIC_RELEASE);
    return VYRE_CPU_OK;
}

void vyre_cpu_stats(const vyre_cpu_pool *p, uint64_t out[3]) {
    uint64_t executed = p->executed_total;
    vyre_cpu_pool *mp = (vyre_cpu_pool *)p;
    lock(mp);
    if (p->workers != NULL)
        for (uint32_t i = 0; i < p->n_workers; ++i)
            executed += __atomic_load_n(&p->workers[i].executed, __ATOMIC_RELAXED);
    unlock(mp);
    out[0] = executed;
    out[1] = __atomic_load_n(&p->sleeps, __ATOMIC_RELAXED);
    out[2] = __atomic_load_n(&p->wakes, __ATOMIC_RELAXED);
}

void vyre_cpu_set_buffer(vyre_buf_t *table, uint32_t i, uint64_t addr, uint64_t bytes) {
    if (i >= VYRE_MAX_BUFFERS) return;
    __atomic_store_n(&table[i].bytes, 0u, __ATOMIC_SEQ_CST);
    __atomic_store_n(&table[i].addr, addr, __ATOMIC_SEQ_CST);
    __atomic_store_n(&table[i].bytes, bytes, __ATOMIC_RELEASE);
}

void vyre_cpu_set_user_dispatch(vyre_cpu_pool *p, vyre_user_dispatch_fn fn) {
    __atomic_store_n(&p->user_dispatch, fn, __ATOMIC_RELEASE);
}

vyre_user_dispatch_fn vyre_cpu_user_dispatch_of(const vyre_cpu_pool *p) {
    return __atomic_load_n(&p->user_dispatch, __ATOMIC_ACQUIRE);
}

int64_t vyre_cpu_execute_one(vyre_cpu_pool *p, uint32_t slot) {
    const vyre_ctx_t *ctx = &p->ctx;
    if (slot >= ctx->slot_count || !vyre_claim(ctx, slot)) return -1;
    vyre_result_t r = vyre_execute(ctx, slot);
    vyre_finish(ctx, slot, r);
    return (int64_t)__atomic_load_n(ctx->ring + (size_t)slot * VYRE_SLOT_WORDS, __ATOMIC_ACQUIRE);
}

void vyre_cpu_dfa_scan_part(const vyre_ctx_t *ctx, const uint32_t args[12], uint32_t start_state,
                            uint32_t part, uint32_t parts, uint32_t *accepts,
                            uint32_t *end_state) {
    vyre_dfa_scan_part(ctx, args, start_state, part, parts, accepts, end_state);
}

int vyre_cpu_test_hooks(void) {
#ifdef VYRE_TEST_HOOKS
    return 1;
#else
    return 0;
#endif
}

uint32_t vyre_cpu_io_wait_rounds(void) { return VYRE_IO_WAIT_ROUNDS; }
