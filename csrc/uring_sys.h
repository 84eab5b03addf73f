/* Internal to csrc/uring.c (the ring) and csrc/uring_reads.c (the read engine): whether
 * io_uring exists on this system, the raw system calls, the monotonic clock and the
 * memory-order macros both use. Each includer defines _GNU_SOURCE before any header.
 */
#ifndef VYRE_URING_SYS_H
#define VYRE_URING_SYS_H

#include <errno.h>
#include <stdint.h>

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

static inline int sys_setup(unsigned entries, struct io_uring_params *p)
{
    long rc = syscall(__NR_io_uring_setup, entries, p);
    return rc < 0 ? -errno : (int)rc;
}

static inline int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                     const void *arg, size_t argsz)
{
    long rc = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
    return rc < 0 ? -errno : (int)rc;
}

static inline int sys_register(int fd, unsigned opcode, const void *arg, unsigned nr)
{
    long rc = syscall(__NR_io_uring_register, fd, opcode, arg, nr);
    return rc < 0 ? -errno : (int)rc;
}

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif /* VYRE_HAVE_URING */

#endif /* VYRE_URING_SYS_H */
