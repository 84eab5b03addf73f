/* vyre CPU backend: the call server. See cpu_call.h and docs/call.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <stdint.h>

/* the interpreter's wait steps (the test spin op) pause, then yield, then sleep, so an op that
 * waits does not hold a core of a small machine */
static void call_backoff(uint32_t round);
#define VYRE_BACKOFF(round) call_backoff(round)
/* ... and user ops go through the pool's loaded ops, as the workers' do (the call thread's pool
 * is thread-local: the interpreter's ctx here is a copy, so it cannot lead to the pool) */
struct vyre_op;
static int call_user_dispatch(uint32_t opcode, struct vyre_op *op);
#define VYRE_USER_DISPATCH(c, opcode, op) ((void)(c), call_user_dispatch((opcode), (op)))

#include "cpu_call.h"
#include "cpu_worker.h"
#include "vyre_call.h"

#define SPIN_SCANS 256u  /* idle scans with a pause hint before yielding */
#define YIELD_SCANS 16u  /* then sched_yield scans before sleeping */
#define FIRST_SLEEP_NS 20000ull
#define MAX_SLEEP_NS 1000000ull

struct vyre_call_server {
    vyre_ctx_t ctx;
    const vyre_cpu_pool *pool;       /* whose loaded user ops calls run */
    uint32_t *area;
    uint32_t lanes;
    _Alignas(64) uint32_t stop;      /* 1: leave */
    uint32_t sleeping;               /* the thread is inside (or entering) a futex sleep */
    uint32_t kick_seq;               /* futex word */
    _Alignas(64) uint64_t answered;
    int running;                     /* between start and a stop that joined */
    pthread_t thread;
    uint32_t last[VYRE_CALL_MAX_LANES];                     /* last sequence answered */
    _Alignas(64) uint32_t scratch[VYRE_CALL_MAX_LANES][VYRE_SLOT_WORDS];
};

static __thread const vyre_cpu_pool *call_pool;

static int call_user_dispatch(uint32_t opcode, vyre_op_t *op) {
    vyre_user_dispatch_fn fn = call_pool ? vyre_cpu_user_dispatch_of(call_pool) : NULL;
    return fn == NULL ? -1 : fn(opcode, op);
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    nanosleep(&ts, NULL);
}

static void call_backoff(uint32_t round) {
    if (round < 16u) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else if (round < 24u) {
        sched_yield();
    } else {
        uint32_t k = round - 24u;
        uint64_t ns = 10000ull << (k < 7u ? k : 7u);
        sleep_ns(ns < MAX_SLEEP_NS ? ns : MAX_SLEEP_NS);
    }
}

static inline int leaving(const vyre_call_server *s) {
    return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE) != 0u ||
           __atomic_load_n(s->ctx.control + VYRE_CTRL_SHUTDOWN, __ATOMIC_ACQUIRE) != 0u;
}

/* one pass over the lanes: every new request is run and answered; returns how many */
static uint32_t serve_pass(vyre_call_server *s) {
    uint32_t served = 0, opcode, tenant, args[VYRE_SLOT_ARG_COUNT], result[VYRE_RESULT_WORDS];
    for (uint32_t lane = 0; lane < s->lanes; ++lane) {
        uint32_t *w = vyre_call_lane(s->area, lane);
        uint32_t seq = vyre_call_get_request(w, &opcode, &tenant, args);
        if (seq == 0u || seq == s->last[lane]) continue;
        uint32_t status = vyre_call_execute(&s->ctx, s->scratch[lane], opcode, tenant, args,
                                            vyre_tenant_ok_(&s->ctx, tenant), result);
        vyre_call_put_answer(w, seq, status, result);
        s->last[lane] = seq;
        served++;
    }
    if (served) __atomic_fetch_add(&s->answered, served, __ATOMIC_RELAXED);
    return served;
}

/* any request not answered yet? (read before a futex sleep, after `sleeping` is raised) */
static int pending(vyre_call_server *s) {
    uint32_t opcode, tenant, args[VYRE_SLOT_ARG_COUNT];
    for (uint32_t lane = 0; lane < s->lanes; ++lane) {
        uint32_t seq = vyre_call_get_request(vyre_call_lane(s->area, lane), &opcode, &tenant, args);
        if (seq != 0u && seq != s->last[lane]) return 1;
    }
    return 0;
}

static void *server_main(void *arg) {
    vyre_call_server *s = (vyre_call_server *)arg;
    uint32_t idle = 0;
    call_pool = s->pool;
    while (!leaving(s)) {
        if (serve_pass(s)) {
            idle = 0;
            continue;
        }
        uint32_t i = idle++;
        if (i < SPIN_SCANS) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else if (i < SPIN_SCANS + YIELD_SCANS) {
            sched_yield();
        } else {
            /* raise `sleeping` (a full barrier) before looking again; kick() fences before it
             * reads `sleeping`: either we see the request, or the caller sees us asleep */
            uint32_t k = i - SPIN_SCANS - YIELD_SCANS;
            uint64_t ns = FIRST_SLEEP_NS << (k < 6u ? k : 6u);
            uint32_t seq = __atomic_load_n(&s->kick_seq, __ATOMIC_ACQUIRE);
            __atomic_store_n(&s->sleeping, 1u, __ATOMIC_SEQ_CST);
            if (!pending(s) && !leaving(s)) {
#ifdef __linux__
                struct timespec ts = {0, (long)(ns < MAX_SLEEP_NS ? ns : MAX_SLEEP_NS)};
                syscall(SYS_futex, &s->kick_seq, FUTEX_WAIT_PRIVATE, seq, &ts, NULL, 0);
#else
                (void)seq;
                sleep_ns(ns < MAX_SLEEP_NS ? ns : MAX_SLEEP_NS);
#endif
            }
            __atomic_store_n(&s->sleeping, 0u, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

vyre_call_server *vyre_call_server_new(const vyre_ctx_t *ctx, const vyre_cpu_pool *pool,
                                       uint32_t *area, uint32_t lanes) {
    if (area == NULL || lanes == 0u || lanes > VYRE_CALL_MAX_LANES || ((uintptr_t)area & 15u))
        return NULL;
    size_t size = (sizeof(vyre_call_server) + 63u) & ~(size_t)63u;
    vyre_call_server *s = (vyre_call_server *)aligned_alloc(64, size);
    if (s == NULL) return NULL;
    memset(s, 0, size);
    s->ctx = *ctx;
    s->pool = pool;
    s->area = area;
    s->lanes = lanes;
    return s;
}

int vyre_call_server_start(vyre_call_server *s) {
    if (s->running) return -1;
    /* answers survive a stop: resume after the last one, never answer a request twice */
    for (uint32_t lane = 0; lane < s->lanes; ++lane)
        s->last[lane] = __atomic_load_n(vyre_call_lane(s->area, lane) + VYRE_CALL_ANSWER,
                                        __ATOMIC_ACQUIRE);
    __atomic_store_n(&s->stop, 0u, __ATOMIC_RELEASE);
    int err = pthread_create(&s->thread, NULL, server_main, s);
    if (err != 0) {
        errno = err;
        return -2;
    }
    s->running = 1;
    return 0;
}

int vyre_call_server_stop(vyre_call_server *s, double timeout_s) {
    if (!s->running) return 0;
    __atomic_store_n(&s->stop, 1u, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&s->kick_seq, 1u, __ATOMIC_SEQ_CST);
#ifdef __linux__
    syscall(SYS_futex, &s->kick_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#endif
    if (!(timeout_s >= 0)) timeout_s = 0;
    if (timeout_s > 1e9) timeout_s = 1e9;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)(timeout_s * 1e9);
    ts.tv_sec += (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    if (pthread_timedjoin_np(s->thread, NULL, &ts) != 0) return -3;
    s->running = 0;
    return 0;
}

int vyre_call_server_free(vyre_call_server *s) {
    if (s == NULL) return 0;
    if (s->running) return -1;
    free(s);
    return 0;
}

void vyre_call_server_kick(vyre_call_server *s) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->sleeping, __ATOMIC_RELAXED) != 0u) {
        __atomic_fetch_add(&s->kick_seq, 1u, __ATOMIC_SEQ_CST);
#ifdef __linux__
        syscall(SYS_futex, &s->kick_seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#endif
    }
}

int vyre_call_server_running(const vyre_call_server *s) { return s->running; }

uint64_t vyre_call_server_answered(const vyre_call_server *s) {
    return __atomic_load_n(&s->answered, __ATOMIC_RELAXED);
}
