"""Shared rig of the interpreter-level tests (no tests here).

The rig drives the CPU backend directly, below the facade: it allocates through
:class:`vyre.backends.cpu.CpuBackend`, encodes the control words itself (docs/spec.md §2), publishes
slots by writing the 16 words with the status last, and waits for the status with a deadline.
"""
from __future__ import annotations

import time

import numpy as np

from vyre.backends.cpu import CpuBackend

# docs/spec.md §1 statuses
EMPTY, PUBLISHED, CLAIMED, DONE, WAIT_IO, YIELD, REQUEUE, FAULT = range(8)
# docs/spec.md §2 control words
SHUTDOWN, DONE_COUNT, TENANT_BASE = 0, 1, 2
METRICS, EPOCH, TENANT_TABLE_LEN, FAULT_COUNT, HEARTBEAT, OBS = 96, 128, 141, 142, 143, 160
# docs/spec.md §3 opcodes
NOP, STORE_U32, ATOMIC_ADD, LOAD_U32, COMPARE_SWAP, MEMCPY, DFA_STEP, BATCH_FENCE = range(8)
DFA_SCAN, BUF_COPY, LOAD_MISS, PRINTF = 0xFFF0, 0xFFF1, 0xFFFD, 0xFFFE
PACKED_SLOT, OP_SHUTDOWN = 0x80000001, 0xFFFFFFFF
NO_STATE = 0xFFFFFFFF
# docs/spec.md §8 io queue
IO_READ, IO_OK, IO_ERROR = 1, 0x10, 0x11
M32 = 0xFFFFFFFF


def encode_control(control: np.ndarray, tenants: int) -> None:
    """docs/spec.md §2 encode_control(shutdown=False, tenants, ...) into an existing array."""
    control[:] = 0
    control[TENANT_BASE] = 3
    control[3:3 + min(tenants, 29)] = 0xFFFFFFFF
    control[32:32 + min(tenants, 32)] = 1_000_000
    control[TENANT_TABLE_LEN] = 29


def pack(ops: list[tuple[int, list[int]]], *, n: int | None = None,
         total: int | None = None) -> list[int]:
    """docs/spec.md §4.2 packed payload -> 12 arg words. ``n``/``total`` override the header bytes
    (to build payloads whose metadata or args run past the 12 words)."""
    count = len(ops) if n is None else n
    meta = -(-(2 + 2 * count) // 4)
    offsets, args = [], []
    for _, a in ops:
        offsets.append(len(args))
        args.extend(a)
    b = [count & 0xFF, (len(args) if total is None else total) & 0xFF]
    for (op, _), off in zip(ops, offsets, strict=True):
        b += [op, off]
    b += [0] * (4 * meta - len(b))
    words = [int.from_bytes(bytes(b[4 * i:4 * i + 4]), "little") for i in range(meta)]
    words += args
    assert len(words) <= 12, "payload exceeds the 12-word budget"
    return words + [0] * (12 - len(words))


class Rig:
    """One CPU backend with encoded control words and a ticketed publisher."""

    def __init__(self, *, slot_count: int = 16, observable_slots: int = 32,
                 debug_records: int = 4, io_slots: int = 4, workers: int = 2,
                 tenants: int = 4, test_hooks: bool = False, start: bool = True) -> None:
        self.be = CpuBackend(slot_count=slot_count, observable_slots=observable_slots,
                             debug_records=debug_records, io_slots=io_slots, workers=workers,
                             test_hooks=test_hooks)
        encode_control(self.be.control, tenants)
        self.ring = self.be.ring.reshape(slot_count, 16)
        self.ctl = self.be.control
        self.obs = self.be.control[OBS:]
        self.n = slot_count
        self.ticket = 0
        if start:
            self.be.start()

    # ---------------------------------------------------------------- publishing
    def publish(self, opcode: int, args=(), tenant: int = 0, priority: int = 2,
                timeout: float = 5.0) -> int:
        t = self.ticket
        slot = t % self.n
        deadline = time.monotonic() + timeout
        while int(self.ring[slot, 0]) in (PUBLISHED, CLAIMED, WAIT_IO):
            assert time.monotonic() < deadline, f"slot {slot} never retired"
            time.sleep(0.0002)
        a = [int(x) & M32 for x in args]
        assert len(a) <= 12
        self.ring[slot, 1:] = [opcode & M32, tenant & M32, priority] + a + [0] * (12 - len(a))
        self.ring[slot, 0] = PUBLISHED  # status last
        self.be.kick()
        self.ticket += 1
        return t

    def status(self, ticket: int) -> int:
        return int(self.ring[ticket % self.n, 0])

    def wait(self, ticket: int, timeout: float = 5.0, until=(DONE, FAULT)) -> int:
        slot = ticket % self.n
        deadline = time.monotonic() + timeout
        while True:
            s = int(self.ring[slot, 0])
            if s in until:
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"ticket {ticket} (slot {slot}) stuck in status {s}")
            time.sleep(0.0001)

    def run(self, opcode: int, args=(), tenant: int = 0, timeout: float = 5.0) -> int:
        """Publish one slot and wait until it is DONE or FAULT; returns the status."""
        return self.wait(self.publish(opcode, args, tenant), timeout)

    # ---------------------------------------------------------------- reading
    def metrics(self) -> list[int]:
        return [int(x) for x in self.ctl[METRICS:METRICS + 32]]

    def header(self) -> np.ndarray:
        """Control header words without the ones that move by themselves (HEARTBEAT)."""
        h = self.ctl[:OBS].copy()
        h[HEARTBEAT] = 0
        return h

    def close(self) -> None:
        if self.be.running:
            self.be.stop(5.0)
        self.be.close()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
