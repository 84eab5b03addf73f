/* vyre CPU backend: the thread that answers calls (docs/call.md).
 *
 * One server thread per call area: it scans the lanes, runs each new request through the slot
 * interpreter (vyre_call_execute) over the pool's buffers and stores the answer. Idle: spin
 * (pause), then sched_yield, then sleep on a futex with a timeout growing to ~1 ms;
 * vyre_call_server_kick() (one fence and a load when nobody sleeps) wakes it after a request.
 * It leaves on control[SHUTDOWN] or vyre_call_server_stop().
 */
#ifndef VYRE_CPU_CALL_H
#define VYRE_CPU_CALL_H

#include <stdint.h>

#include "vyre_interp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vyre_call_server vyre_call_server;

struct vyre_cpu_pool;

/* A server over `area` (lanes * VYRE_CALL_LANE_WORDS words, 16-byte aligned) executing with
 * *ctx (copied; its buffers must outlive the server) and the user ops loaded into `pool`
 * (NULL: none). NULL on allocation failure or bad args. */
vyre_call_server *vyre_call_server_new(const vyre_ctx_t *ctx, const struct vyre_cpu_pool *pool,
                                       uint32_t *area, uint32_t lanes);
/* 0, or -1 when already running, -2 when the thread could not be created */
int vyre_call_server_start(vyre_call_server *s);
/* Ask the thread to leave and join it within timeout_s: 0, or -3 when it is still running
 * (an op that does not finish; call again). */
int vyre_call_server_stop(vyre_call_server *s, double timeout_s);
/* Free a stopped server: 0, or -1 (nothing freed) while its thread runs. */
int vyre_call_server_free(vyre_call_server *s);
/* After writing a request: wake the thread if it sleeps. */
void vyre_call_server_kick(vyre_call_server *s);
int vyre_call_server_running(const vyre_call_server *s);
/* calls answered since creation */
uint64_t vyre_call_server_answered(const vyre_call_server *s);

#ifdef __cplusplus
}
#endif

#endif /* VYRE_CPU_CALL_H */
