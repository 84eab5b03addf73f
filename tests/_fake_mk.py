"""A test double of the Megakernel facade for the stream tests (executes DFA_SCAN lazily).

It implements exactly the facade calls GpuStream uses (register_buffer, alloc_buffer,
submit, wait, observables) and runs DFA_SCAN with the docs/spec.md §3 semantics in Python, when a
ticket is waited for -- so slots stay "in flight" until the stream retires them, which
exercises the credit logic. A wait with timeout=0 answers "not done" at random.
"""
from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np

from vyre.errors import WaitTimeoutError
from vyre.protocol import ABI, OBSERVABLE_BASE


class FakeMegakernel:
    def __init__(self, observable_slots: int = 64, seed: int = 0, verify: bool = True) -> None:
        self.verify = verify
        self.violations = []  # DFA_SCAN ranges whose bytes changed between submit and execution
        self._sums: dict[int, bytes] = {}
        self.observable_slots = observable_slots
        self.control = np.zeros(OBSERVABLE_BASE + observable_slots, np.uint32)
        self.observables = self.control[OBSERVABLE_BASE:]
        self._bufs = [self.control.view(np.uint8)]
        self._pending: dict[int, tuple[int, list[int]]] = {}
        self._next = 0
        self._rng = random.Random(seed)
        self.backend = SimpleNamespace(name="cpu")
        self.executed = 0
        self.scanned = []  # (buffer, offset, length, context) of every DFA_SCAN

    def register_buffer(self, array) -> int:
        self._bufs.append(np.asarray(array).view(np.uint8).reshape(-1))
        return len(self._bufs) - 1

    def alloc_buffer(self, data, *, device: bool = False):
        if isinstance(data, (int, np.integer)):
            buf = np.zeros(int(data), np.uint8)
        else:
            buf = np.ascontiguousarray(data).view(np.uint8).reshape(-1).copy()
        return self.register_buffer(buf), buf

    def submit(self, opcode, args=(), tenant=0, priority=2, timeout=None) -> int:
        t = self._next
        self._next += 1
        self._pending[t] = (int(opcode), [int(a) for a in args] + [0] * (12 - len(args)))
        if self.verify and int(opcode) == ABI["OP_DFA_SCAN"]:
            a = self._pending[t][1]
            self._sums[t] = self._bufs[a[1]][a[2]:a[2] + a[3]].tobytes()
        return t

    def _exec(self, t: int) -> None:
        op, a = self._pending.pop(t)
        self.executed += 1
        if op != ABI["OP_DFA_SCAN"]:
            return
        table = self._bufs[a[0]].view(np.uint32).tolist()
        data = self._bufs[a[1]][a[2]:a[2] + a[3]].tobytes()
        if self.verify and self._sums.pop(t, data) != data:
            self.violations.append(t)
        self.scanned.append((a[1], a[2], a[3], a[6]))
        obs = self.observables
        s = 0 if a[4] == ABI["DFA_NO_STATE"] else int(obs[a[4]])
        acc_bit, mask = ABI["DFA_ACCEPT_BIT"], ABI["DFA_STATE_MASK"]
        count = 0
        ctx = a[6]
        for i, b in enumerate(data):
            e = table[s * 256 + b]
            if e & acc_bit and i >= ctx:
                count += 1
            s = e & mask
        if a[4] != ABI["DFA_NO_STATE"]:
            obs[a[4]] = s
        obs[a[5]] = (int(obs[a[5]]) + count) & 0xFFFFFFFF

    def wait(self, tickets, timeout=None) -> None:
        ts = [tickets] if isinstance(tickets, int) else list(tickets)
        if timeout == 0 and any(t in self._pending for t in ts) and self._rng.random() < 0.5:
            raise WaitTimeoutError("not yet", "wait longer")
        for t in sorted(ts):
            if t in self._pending:
                self._exec(t)

    def drain(self, timeout=None) -> None:
        for t in sorted(self._pending):
            self._exec(t)
