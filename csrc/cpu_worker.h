/* vyre CPU backend: persistent native worker threads running the slot interpreter
 * (vyre_interp.h) over host memory, without the GIL.
 *
 * Claiming protocol (the same as the GPU's): a shared 64-bit ticket counter; a worker takes
 * ticket t (atomic fetch_add), polls slot t % slot_count until vyre_claim wins (or SHUTDOWN),
 * runs vyre_execute + vyre_finish, then takes the next ticket. The host publishes strictly in
 * ticket order, each slot only after its previous use retired, so every published slot is
 * claimed exactly once.
 *
 * Idle: spin briefly (pause), then sched_yield, then sleep on a futex with a timeout growing
 * to ~1 ms (20 ms once idle for ~0.1 s); vyre_cpu_kick() wakes sleepers (one relaxed load
 * when nobody sleeps).
 * HEARTBEAT (control[143]) is bumped about every 2 ms by whichever worker passes by, busy or
 * idle. A slot whose LOAD_MISS found no free io slot (WAIT_IO) stays with the worker that
 * parked it: it retries WAIT_IO -> CLAIMED with backoff before taking its next ticket.
 */
#ifndef VYRE_CPU_WORKER_H
#define VYRE_CPU_WORKER_H

#include <stdint.h>

#include "vyre_interp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vyre_cpu_pool vyre_cpu_pool;

/* error codes */
#define VYRE_CPU_OK 0
#define VYRE_CPU_ERR_RUNNING (-1)   /* start: already running (or a previous stop timed out) */
#define VYRE_CPU_ERR_THREAD (-2)    /* start: pthread_create failed (errno kept) */
#define VYRE_CPU_ERR_TIMEOUT (-3)   /* stop: some worker did not exit in time (still running) */
#define VYRE_CPU_ERR_NOMEM (-4)

/* heartbeat period and the longest idle sleep, nanoseconds; after ~0.1 s without work an
 * idle worker sleeps up to VYRE_CPU_IDLE_SLEEP_NS between looks (a kick still wakes it) */
#define VYRE_CPU_HEARTBEAT_NS 2000000ull
#define VYRE_CPU_MAX_SLEEP_NS 1000000ull
#define VYRE_CPU_IDLE_SLEEP_NS 20000000ull

/* A pool over the buffers described by *ctx (copied; the buffers, the buffer table ctx->bufs
 * included, must outlive the pool and any worker still running). NULL on allocation failure. */
vyre_cpu_pool *vyre_cpu_pool_new(const vyre_ctx_t *ctx);

/* Free a stopped pool. Returns VYRE_CPU_ERR_RUNNING (and frees nothing) while workers live. */
int vyre_cpu_pool_free(vyre_cpu_pool *p);

/* Launch n_workers threads (n_workers >= 1). VYRE_CPU_OK or an error code. A mutex or
 * condition call that fails (corrupt memory, misuse) aborts the process with a message. Tickets continue
 * from where the previous run stopped (see vyre_cpu_next_ticket). */
int vyre_cpu_start(vyre_cpu_pool *p, uint32_t n_workers);

/* Hard stop: control[SHUTDOWN] = 1, wake every sleeper, wait at most timeout_s for every
 * worker to exit, join them. VYRE_CPU_OK, or VYRE_CPU_ERR_TIMEOUT with the stragglers still
 * running (call again to keep waiting). Blocks: call without the GIL. */
int vyre_cpu_stop(vyre_cpu_pool *p, double timeout_s);

/* After publishing: wake sleeping workers. Costs a fence and one load when nobody sleeps. */
void vyre_cpu_kick(vyre_cpu_pool *p);

int vyre_cpu_running(const vyre_cpu_pool *p);       /* started and not (fully) stopped */
uint32_t vyre_cpu_alive(const vyre_cpu_pool *p);    /* threads that have not exited */
uint32_t vyre_cpu_workers(const vyre_cpu_pool *p);  /* threads of the current/last run */
/* MiBs scanned by long slots (DFA_SCAN): a slot CLAIMED for long while this grows is
 * working, not stuck (waits, such as LOAD_MISS's, are not counted) */
uint64_t vyre_cpu_progress_count(const vyre_cpu_pool *p);

/* In a forked child: the pool's workers are threads of the parent that do not exist here.
 * Mark the pool stopped without joining them (their memory is left alone), so that it can
 * be freed (or started anew) in the child. Call only from an after-fork child handler. */
void vyre_cpu_forget_workers(vyre_cpu_pool *p);

/* The next ticket a worker will take. While stopped it may be set (tickets of the host). */
uint64_t vyre_cpu_next_ticket(const vyre_cpu_pool *p);
int vyre_cpu_set_next_ticket(vyre_cpu_pool *p, uint64_t t);

/* counters for describe()/benchmarks: slots executed, futex sleeps, kicks that woke someone */
void vyre_cpu_stats(const vyre_cpu_pool *p, uint64_t out[3]);

/* Update buffer-table entry i so that a concurrent reader sees either the old entry, an
 * empty one, or the new one (bytes cleared first, published last). */
void vyre_cpu_set_buffer(vyre_buf_t *table, uint32_t i, uint64_t addr, uint64_t bytes);

/* The user ops the workers run (vyre_op.h), or NULL for none (0.6: user opcodes do nothing).
 * May be swapped while workers run: slots published afterwards use fn. The caller keeps the
 * code of every fn it ever set loaded while the pool exists. */
void vyre_cpu_set_user_dispatch(vyre_cpu_pool *p, vyre_user_dispatch_fn fn);
/* The dispatch set last (NULL: none), for the call server (cpu_call.c), which runs user ops
 * of the same pool from its own thread. */
vyre_user_dispatch_fn vyre_cpu_user_dispatch_of(const vyre_cpu_pool *p);

/* Test entry points (no threads): claim + execute + finish one slot with the pool's ctx.
 * Returns the slot status afterwards, or -1 when the slot was not PUBLISHED. */
int64_t vyre_cpu_execute_one(vyre_cpu_pool *p, uint32_t slot);
void vyre_cpu_dfa_scan_part(const vyre_ctx_t *ctx, const uint32_t args[12], uint32_t start_state,
                            uint32_t part, uint32_t parts, uint32_t *accepts,
                            uint32_t *end_state);

/* build facts for Python */
int vyre_cpu_test_hooks(void);         /* 1 in the -DVYRE_TEST_HOOKS=1 build */
uint32_t vyre_cpu_io_wait_rounds(void); /* VYRE_IO_WAIT_ROUNDS of this build */

#ifdef __cplusplus
}
#endif

#endif /* VYRE_CPU_WORKER_H */
