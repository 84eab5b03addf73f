/* Host-side wait policy shared by every blocking wait of vyre's extensions (ring waits in
 * vyre/_wire.pyx, calls in vyre/_call.pyx): spin hot first because a round trip wants
 * sub-microsecond reaction, then yield the core (the CPU backend's workers may need it), then
 * sleep with a growing, bounded period. Host-side tuning, not wire ABI.
 */
#ifndef VYRE_WAIT_H
#define VYRE_WAIT_H

#include <stdint.h>
#include <time.h>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VYRE_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define VYRE_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define VYRE_CPU_RELAX() __asm__ __volatile__("" ::: "memory")
#endif

#define VYRE_WAIT_HOT_NS 20000ull
#define VYRE_WAIT_YIELD_NS 1000000ull
#define VYRE_WAIT_SLEEP_MIN_NS 10000ull
#define VYRE_WAIT_SLEEP_MAX_NS 200000ull
#define VYRE_WAIT_POLLS_PER_CLOCK 32u

static inline uint64_t vyre_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct {
    uint64_t started;
    uint64_t deadline;
    uint64_t sleep_ns;
    unsigned hot_polls;
} vyre_wait_t;

static inline void vyre_wait_init(vyre_wait_t *w, uint64_t started) {
    w->started = started;
    w->deadline = started;
    w->sleep_ns = VYRE_WAIT_SLEEP_MIN_NS;
    w->hot_polls = VYRE_WAIT_POLLS_PER_CLOCK;
}

/* One pause between two polls; 0 once w->deadline has passed. */
static inline int vyre_wait_pause(vyre_wait_t *w) {
    uint64_t now, waited, left, d;
    struct timespec ts;
    if (w->hot_polls) {
        w->hot_polls--;
        VYRE_CPU_RELAX();
        return 1;
    }
    now = vyre_now_ns();
    if (now >= w->deadline) return 0;
    waited = now - w->started;
    if (waited < VYRE_WAIT_HOT_NS) {
        w->hot_polls = VYRE_WAIT_POLLS_PER_CLOCK;
        VYRE_CPU_RELAX();
    } else if (waited < VYRE_WAIT_YIELD_NS) {
        sched_yield();
    } else {
        left = w->deadline - now;
        d = w->sleep_ns < left ? w->sleep_ns : left;
        ts.tv_sec = (time_t)(d / 1000000000ull);
        ts.tv_nsec = (long)(d % 1000000000ull);
        nanosleep(&ts, NULL);
        if (w->sleep_ns < VYRE_WAIT_SLEEP_MAX_NS) w->sleep_ns *= 2;
    }
    return 1;
}


#endif /* VYRE_WAIT_H */
