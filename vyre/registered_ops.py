"""User ops on a megakernel: registering them, checking that every user opcode a submit
names is a registered op, and reading a finished ticket's result words (docs/ops.md).
"""
from __future__ import annotations

import operator
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vyre import wire
from vyre.descriptors import SlotOpcode
from vyre.errors import (
    BackendError,
    InvalidTypeError,
    InvalidValueError,
    SlotFaultError,
)
from vyre.ops import Op, fault_of
from vyre.ops.registry import OpRegistry
from vyre.protocol import (
    OP_MAX_PRIMITIVE,
    PACKED_MAX_INNER_OPCODE,
    SYSTEM_HIGH_BIT,
    SYSTEM_RANGE_HI,
    SYSTEM_RANGE_LO,
    U32_MAX,
    SlotStatus,
)
from vyre.waiting import Ticket, Waiting


class RegisteredOps(Waiting):
    """The user-op and result methods of :class:`vyre.Megakernel` (docs/ops.md)."""

    _ops: OpRegistry
    _ops_lock: threading.Lock
    _ops_telemetry: dict[str, Any]

    def _init_ops(self) -> None:
        self._ops = OpRegistry()
        self._ops_lock = threading.Lock()  # one registration at a time (builds are slow)
        self._ops_telemetry: dict[str, Any] = {}

    def register_op(self, op: Op | str, source: str | None = None, opcode: int | None = None,
                    tenant: int = 0) -> Op:
        """Add a user op: ``register_op(name, source, opcode=None, tenant=0)`` or
        ``register_op(vyre.ops.Op(...))``. Returns the op with its opcode (picked when not
        given: the next free one from ``0x100``, or from the tenant's window).

        The backend compiles every registered op (through the pipeline cache) and switches
        its workers to the result, also while running: nothing published is lost, run twice
        or reordered. Registering the same op again returns it. Raises
        :class:`vyre.ops.OpBuildError` (compile errors, with the compiler's output) and
        :class:`InvalidValueError` (a name or opcode already taken); on error nothing changes.
        """
        if isinstance(op, Op):
            if source is not None or opcode is not None or tenant != 0:
                raise InvalidValueError("register_op(Op) takes no source, opcode or tenant",
                                        "set them on the Op, or call register_op(name, source, "
                                        "opcode=..., tenant=...)")
            wanted = op
        else:
            if source is None:
                raise InvalidValueError(f"register_op({op!r}) needs the op's C source",
                                        "call register_op(name, source) (docs/ops.md)")
            wanted = Op(op, source, opcode, tenant)
        if self._stopped:
            raise BackendError("this megakernel was shut down", "create a new Megakernel")
        with self._ops_lock:
            registry = self._ops.with_op(wanted)
            resolved = registry[wanted.name]
            if len(registry) == len(self._ops):
                return resolved  # already registered
            self._ops_telemetry = dict(self._backend.load_ops(registry.ops()))
            self._ops = registry  # published only once the workers run it
        return resolved

    def register_ops(self, ops: Iterable[Op]) -> list[Op]:
        """Register several :class:`vyre.ops.Op` with one build (all or none); returns them
        with their opcodes, in order. See :meth:`register_op`."""
        wanted = list(ops)
        if self._stopped:
            raise BackendError("this megakernel was shut down", "create a new Megakernel")
        with self._ops_lock:
            registry = self._ops
            for op in wanted:
                registry = registry.with_op(op)
            if len(registry) != len(self._ops):
                self._ops_telemetry = dict(self._backend.load_ops(registry.ops()))
                self._ops = registry
            return [registry[op.name] for op in wanted]

    @property
    def ops(self) -> Mapping[str, Op]:
        """The registered ops by name (read-only)."""
        return self._ops

    def result(self, ticket: Ticket, timeout: float | None = None) -> tuple[int, int, int, int]:
        """The ``RESULT_WORDS`` result words of ``ticket`` (waiting at most ``timeout`` s for
        it to finish): what a user op returned, or a built-in's value (LOAD_U32 the value,
        COMPARE_SWAP prev, ATOMIC_ADD the new value; docs/ops.md).

        Raises :class:`SlotFaultError` (with ``reason``, a :class:`vyre.protocol.FaultReason`,
        and ``details``) when the ticket ended in FAULT, and :class:`InvalidValueError` when
        its slot was reused by a later ticket since (the words are gone).
        """
        try:
            t = operator.index(ticket)
        except TypeError:
            raise InvalidTypeError(f"ticket must be an int, got {ticket!r}",
                                   "pass a ticket returned by submit()") from None
        if not 0 <= t < self._published:
            raise InvalidValueError(f"ticket {t} was never published (tickets are 0 .. "
                                    f"{self._published - 1})", "pass a ticket returned by submit()")
        if self._retired <= t:
            self._wait_retired(t + 1, timeout)
        lock = self._lock
        try:  # publishers hold it: the slot cannot be reused while we read it
            if not lock.acquire(False):
                self._lock_within(-1.0)
            words = self._slot_result(t)
        finally:
            try:
                lock.release()
            except RuntimeError:  # not taken: interrupted while waiting
                pass
        if words is None:
            raise InvalidValueError(
                f"the result of ticket {t} is gone: its slot {t % self.slot_count} was reused "
                f"by ticket {t + self.slot_count} or later",
                "read result(ticket) before slot_count more slots are submitted, or use a "
                "larger slot_count")
        status, res = words
        if status == int(SlotStatus.DONE):
            return res  # type: ignore[return-value]
        err = SlotFaultError(
            f"ticket {t} (slot {t % self.slot_count}) ended in FAULT{self._fault_text(t, res)}",
            "see docs/ops.md for what the reason means", ticket=t, slot=t % self.slot_count)
        fault = fault_of(res)
        err.reason = fault.reason  # type: ignore[attr-defined]
        err.details = (fault.d0, fault.d1, fault.d2)  # type: ignore[attr-defined]
        err.words = res  # type: ignore[attr-defined]
        raise err

    def _ops_info(self) -> dict[str, Any]:
        """Telemetry of the user ops: names -> opcodes, the latest build (memory / disk /
        build and its seconds) and the pipeline cache's counters."""
        from vyre.ops.cache import default_cache

        info: dict[str, Any] = {"registered": {op.name: op.opcode for op in self._ops.values()},
                                "last_build": dict(self._ops_telemetry)}
        if len(self._ops):
            info["cache"] = default_cache().stats()
        return info

    def _user_opcode(self, opcode: Any) -> int:
        """The u32 of an opcode given as an int, an op, an op's name or a SlotOpcode; a user
        opcode must be one of a registered op (or the backend's own)."""
        if isinstance(opcode, str):
            try:
                return int(self._ops[opcode].opcode)  # type: ignore[arg-type]
            except KeyError as err:
                raise InvalidValueError(str(err.args[0]),
                                        "register it first: mk.register_op(name, source)") from None
        if isinstance(opcode, SlotOpcode):
            value = opcode.into_wire()
        elif isinstance(opcode, Op):
            value = operator.index(opcode)
            mine = self._ops.by_opcode(value)
            if mine is not None and (mine.name, mine.source) != (opcode.name, opcode.source):
                raise InvalidValueError(
                    f"op {opcode.name!r} is not this megakernel's op {value:#x} ({mine.name!r})",
                    "submit the handle register_op() returned on this megakernel")
        else:
            try:
                value = operator.index(opcode)
            except TypeError:
                raise InvalidTypeError(f"opcode must be an integer, op or op name, got {opcode!r}",
                                       "pass a vyre.Opcode, a registered op or its name") from None
        if 0 <= value <= U32_MAX and not wire.is_system(value):
            self._check_registered(value)
        return value

    def _check_registered(self, value: int) -> None:
        if value not in self._ops and value not in self._backend.builtin_user_opcodes:
            raise InvalidValueError(
                f"user opcode {value:#x} is not handled by any registered op, so it would do "
                "nothing",
                "register an op for it first (mk.register_op(name, source, opcode=...)); raw "
                "vyre.wire publishers keep the unchecked behaviour")

    def _check_packed(self, ops: Sequence[Any]) -> Sequence[Any]:
        """Inner opcodes of a packed slot that are user opcodes must be registered ops."""
        if isinstance(ops, (str, bytes)) or not isinstance(ops, Iterable):
            return ops  # wire.pack_ops says what is wrong with it
        out = []
        for item in ops:
            opcode = getattr(item, "opcode", None)
            if opcode is None:
                try:
                    opcode, args = item
                except (TypeError, ValueError):
                    out.append(item)  # wire.pack_ops reports it
                    continue
            else:
                args = item.args
            if type(opcode) is not int or opcode > OP_MAX_PRIMITIVE:
                opcode = self._user_opcode(opcode)
                if opcode > PACKED_MAX_INNER_OPCODE:
                    raise InvalidValueError(
                        f"op {opcode:#x} cannot be an inner op of a packed slot (inner opcodes "
                        f"are 0..{PACKED_MAX_INNER_OPCODE})",
                        f"register the op with an opcode of 8..{PACKED_MAX_INNER_OPCODE}, or "
                        "submit it in a slot of its own")
            out.append((opcode, args))
        return out

    def _check_many(self, opcodes: np.ndarray) -> None:
        """Every user opcode of a bulk submit is a registered op (all-or-nothing)."""
        if opcodes.size == 0:
            return
        lo, hi = int(opcodes.min()), int(opcodes.max())
        if hi <= OP_MAX_PRIMITIVE:
            return
        if lo == hi:
            self._user_opcode(lo)
            return
        system = ((opcodes & np.uint32(SYSTEM_HIGH_BIT)) != 0) | (opcodes <= OP_MAX_PRIMITIVE) | (
            (opcodes >= np.uint32(SYSTEM_RANGE_LO)) & (opcodes <= np.uint32(SYSTEM_RANGE_HI)))
        for value in np.unique(opcodes[~system]):
            self._check_registered(int(value))
