"""The watchdog of a blocked facade call: is the backend alive, and is anything moving?

Every wait of :class:`vyre.Megakernel` that can last (for a ticket, for room in a full ring)
looks at it once per ``WATCH_INTERVAL_S``; it raises :class:`BackendError` when the backend
died or nothing moved for ``stall_timeout`` (docs/facade.md).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from vyre.errors import (
    BackendError,
)
from vyre.protocol import (
    CTRL_DONE_COUNT,
    CTRL_FAULT_COUNT,
    CTRL_SHUTDOWN,
    SLOT_WORDS,
    SlotStatus,
)

if TYPE_CHECKING:
    from vyre.ring_books import RingBooks

# wait granularity: how often a blocked caller looks at the watchdog (heartbeat, progress)
WATCH_INTERVAL_S = 0.005
_DONE, _FAULT = int(SlotStatus.DONE), int(SlotStatus.FAULT)


class Watch:
    """Watchdog state of one blocked caller: is the backend alive and making progress?

    Progress is anything that moves: a ticket retiring, DONE_COUNT or FAULT_COUNT changing
    (a slot finished anywhere), the oldest unretired slot changing status, or the backend's
    progress counter (a long slot at work, CPU). Only when none of them moved for
    ``stall_timeout`` is the oldest slot declared stalled, and only if it is not finished
    (a finished one is the host's to retire, however late a loaded machine lets it run).
    """

    def __init__(self, mk: RingBooks) -> None:
        self.mk = mk
        now = time.monotonic()
        self.progress_at = now
        self.retired = mk._retired
        self.seen = self._progress(mk._retired)
        self.beat = mk.heartbeat
        self.beat_at = now
        self.pauses = mk._backend.pauses

    def _progress(self, retired: int) -> tuple[int, int, int, int]:
        mk = self.mk
        c = mk._control
        return (retired, int(c[CTRL_DONE_COUNT]) + int(c[CTRL_FAULT_COUNT]),
                int(getattr(mk._backend, "progress", 0)),
                int(mk._ring[(retired % mk.slot_count) * SLOT_WORDS]))

    def check(self, retired: int, published: int) -> None:
        mk = self.mk
        now = time.monotonic()
        backend = mk._backend
        if backend.paused or backend.pauses != self.pauses:  # paused by quiesce(): not stalled
            self.pauses = backend.pauses
            self.progress_at = self.beat_at = now
            return
        backend.check()
        mk._check_running()  # shut down by another thread: say so, not "SHUTDOWN published"
        if published > retired and int(mk._control[CTRL_SHUTDOWN]) and retired == self.retired \
                and now - self.progress_at > 0.05:
            raise BackendError(
                f"the workers were stopped by SHUTDOWN with {published - retired} slots in "
                "flight (a SHUTDOWN slot, or control[SHUTDOWN] written)",
                "do not publish SHUTDOWN while work is pending; use shutdown(drain=True)")
        seen = self._progress(retired)
        if seen != self.seen:  # something moved: alive and progressing
            self.seen, self.retired = seen, retired
            self.progress_at = self.beat_at = now
            self.beat = mk.heartbeat
            return
        if seen[3] in (_DONE, _FAULT):  # finished: the host only has not retired it yet
            return
        beat = mk.heartbeat
        if beat != self.beat:
            self.beat, self.beat_at = beat, now
        elif published > retired and now - self.beat_at > mk.heartbeat_timeout:
            raise BackendError(
                f"the {mk._backend.name} backend is not alive: no heartbeat and no slot "
                f"finished for {now - self.beat_at:.1f} s with {published - retired} slots in "
                "flight",
                "a worker is stuck or the kernel died; shut this Megakernel down and check "
                "the workload (a slot that never finishes), or raise heartbeat_timeout")
        if published > retired and now - self.progress_at > mk.stall_timeout:
            slot = retired % mk.slot_count
            status = seen[3]
            name = SlotStatus(status).name if status in SlotStatus._value2member_map_ else status
            if status == int(SlotStatus.CLAIMED):
                what = "a worker took it and has not finished it"
                fix = ("a slot that never finishes blocks the ring; shut this Megakernel down "
                       "(shutdown(drain=False)) and fix the op, or raise stall_timeout")
            else:
                what = "no worker has taken it"
                fix = ("the workers are not taking slots (stuck on other slots, or stopped); "
                       "check telemetry(), shut this Megakernel down, or raise stall_timeout")
            raise BackendError(
                f"no progress for {now - self.progress_at:.1f} s: ticket {retired} (slot "
                f"{slot}) stayed {name} ({what}), no slot finished and no long slot reported "
                "progress", fix)
