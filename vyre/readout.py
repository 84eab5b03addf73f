"""Reading a megakernel's state: observables, control words, counters, per-opcode
metrics, the PRINTF debug log and a telemetry snapshot (docs/facade.md).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from vyre import wire
from vyre.protocol import (
    CTRL_DONE_COUNT,
    CTRL_EPOCH,
    CTRL_FAULT_COUNT,
    CTRL_SHUTDOWN,
    OBSERVABLE_BASE,
    SLOT_STATUS,
    SLOT_WORDS,
    U32_MAX,
    SlotStatus,
)
from vyre.registered_ops import RegisteredOps


class Readout(RegisteredOps):
    """The reading methods of :class:`vyre.Megakernel`."""

    @property
    def observables(self) -> np.ndarray:
        """Live uint32 view of the observable words (``control[OBSERVABLE_BASE:]``)."""
        return self._control[OBSERVABLE_BASE:]

    @property
    def control(self) -> np.ndarray:
        """Live uint32 view of every control word."""
        return self._control

    def _settle_counters(self, timeout: float = 0.1) -> None:
        """Where the backend counts lazily (CUDA), wait until DONE_COUNT + FAULT_COUNT cover
        every retired ticket, so counters read after a wait/drain include those slots."""
        if not self._backend.lazy_counters or not self._started:
            return
        want = self._retired & U32_MAX
        deadline = time.monotonic() + timeout
        c = self._control
        while ((int(c[CTRL_DONE_COUNT]) + int(c[CTRL_FAULT_COUNT]) - want) & U32_MAX) >= 1 << 31:
            if time.monotonic() > deadline:  # a slot overwrote a counter: report what is there
                return
            time.sleep(0)

    @property
    def done_count(self) -> int:
        """Slots executed to DONE (docs/spec.md §2 word 1)."""
        self._settle_counters()
        return int(self._control[CTRL_DONE_COUNT])

    @property
    def fault_count(self) -> int:
        """Slots that ended in FAULT (word 142)."""
        self._settle_counters()
        return int(self._control[CTRL_FAULT_COUNT])

    @property
    def epoch(self) -> int:
        return int(self._control[CTRL_EPOCH])

    @property
    def published(self) -> int:
        """Tickets handed out so far (the next ticket)."""
        return self._published

    def metrics(self) -> dict[int, int]:
        """Non-zero per-opcode execution counters {opcode: count}."""
        self._settle_counters()
        return wire.read_metrics(self._control)

    def debug_log(self) -> list:
        """PRINTF records as ``DebugRecord(fmt_id, (a1, a2, slot_index))``."""
        return wire.read_debug_log(self._backend.debug)

    @property
    def debug_overflow(self) -> int:
        """PRINTF records dropped because the debug log was full."""
        return wire.read_debug_overflow(self._backend.debug)

    def telemetry(self) -> dict[str, Any]:
        """A snapshot: slot occupancy by status, in-flight, faults, heartbeat age."""
        statuses = self._ring.reshape(self.slot_count, SLOT_WORDS)[:, SLOT_STATUS]
        counts = np.bincount(np.minimum(statuses, 8), minlength=9)
        names = {s.value: s.name for s in SlotStatus}
        return {
            "backend": self._backend.name,
            "slots": {names.get(i, "OTHER"): int(c) for i, c in enumerate(counts) if c},
            "published": self._published,
            "retired": self._retired,
            "in_flight": self._published - self._retired,
            "faults": self._fault_total,
            "done_count": self.done_count,
            "fault_count": self.fault_count,
            "heartbeat": self.heartbeat,
            "heartbeat_age_s": self._heartbeat_age(),
            "running": self._started and not self._stopped,
            "shutdown_flag": int(self._control[CTRL_SHUTDOWN]),
            "ops": self._ops_info(),
            **{f"device_{k}": v for k, v in self._backend.describe().items()},
        }

    def _heartbeat_age(self) -> float:
        """Seconds since this host last saw HEARTBEAT change (0 when it changed just now)."""
        beat, now = self.heartbeat, time.monotonic()
        seen_beat, seen_at = getattr(self, "_beat_seen", (None, now))
        if beat != seen_beat:
            self._beat_seen = (beat, now)
            return 0.0
        return now - seen_at
