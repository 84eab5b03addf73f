"""User ops: what one is (:class:`Op`) and the set a megakernel runs (:class:`OpRegistry`).

An op is a name, an opcode and a C source (docs/ops.md). The registry of a megakernel holds
its ops by name and opcode, picks opcodes, and refuses clashes; the backends compile the
registry's ops (vyre/ops/cpu_build.py, the fused GPU build) into what their workers run.
"""
from __future__ import annotations

import keyword
import operator
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from vyre.errors import InvalidTypeError, InvalidValueError
from vyre.protocol import SYSTEM_RANGE_LO, is_system, tenant_opcode_window

__all__ = ["FIRST_USER_OPCODE", "Op", "OpRegistry"]

#: the first opcode handed out when none is asked for (below it: 8..255 are also the inner
#: opcodes a packed slot can carry; ask for one of those explicitly)
FIRST_USER_OPCODE = 0x100

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
# C and CUDA C++ words an op name cannot be (it becomes part of a C identifier, but a keyword
# alone is refused so that error messages and names stay readable)
_RESERVED = frozenset(keyword.kwlist) | {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch",
    "typedef", "union", "unsigned", "void", "volatile", "while"}


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidTypeError(f"op name must be a str, got {type(name).__name__}",
                               "name the op with a C identifier, e.g. 'axpy'")
    if not _NAME.match(name) or name in _RESERVED:
        raise InvalidValueError(f"op name {name!r} is not a usable C identifier",
                                "use letters, digits and '_' (not first a digit), at most 64 "
                                "characters, not a C keyword; it must match VYRE_OP(name) in "
                                "the source")
    return name


def _check_opcode(opcode: object) -> int:
    try:
        value = operator.index(opcode)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidTypeError(f"opcode must be an integer, got {opcode!r}",
                               "pass a user opcode (not in the system range), or leave it out "
                               "to have one picked") from None
    if not 0 <= value <= 0xFFFFFFFF or is_system(value):
        raise InvalidValueError(
            f"opcode {value:#x} is not a user opcode",
            f"user opcodes are 8..{SYSTEM_RANGE_LO - 1:#x} and {SYSTEM_RANGE_LO + 0x10:#x}.."
            "0x7fffffff (the rest is the system range); leave opcode out to have one picked")
    return value


@dataclass(frozen=True)
class Op:
    """One user op: ``name`` (the ``VYRE_OP(name)`` in ``source``), ``opcode``, C ``source``.

    ``opcode=None`` lets :meth:`vyre.Megakernel.register_op` pick one. ``tenant`` (0: the
    system tenant) is the tenant whose opcode window a picked opcode comes from. An ``Op``
    is usable wherever an opcode is (``operator.index(op) == op.opcode``).
    """

    name: str
    source: str
    opcode: int | None = None
    tenant: int = 0

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.source, str):
            raise InvalidTypeError("op source must be a str of C, "
                                   f"got {type(self.source).__name__}",
                                   "pass the C source text of the op")
        if f"VYRE_OP({self.name})" not in re.sub(r"\s+", "", self.source):
            raise InvalidValueError(
                f"the source of op {self.name!r} has no VYRE_OP({self.name})",
                f"write the op as VYRE_OP({self.name}) {{ ... }} (see docs/ops.md)")
        if "\0" in self.source:
            raise InvalidValueError(f"the source of op {self.name!r} contains a NUL character",
                                    "pass plain C source text")
        if self.opcode is not None:
            object.__setattr__(self, "opcode", _check_opcode(self.opcode))
        try:
            tenant = operator.index(self.tenant)
        except TypeError:
            raise InvalidTypeError(f"tenant must be an integer, got {self.tenant!r}",
                                   "pass a tenant id (0 = system)") from None
        if tenant < 0:
            raise InvalidValueError(f"tenant {tenant} is negative", "pass a tenant id >= 0")
        object.__setattr__(self, "tenant", tenant)

    def __index__(self) -> int:
        if self.opcode is None:
            raise InvalidValueError(f"op {self.name!r} has no opcode yet",
                                    "register it first: mk.register_op(op) returns the op "
                                    "with its opcode")
        return self.opcode

    def with_opcode(self, opcode: int) -> Op:
        """This op with ``opcode``."""
        return Op(self.name, self.source, opcode, self.tenant)

    def __repr__(self) -> str:
        op = "unassigned" if self.opcode is None else f"{self.opcode:#x}"
        return f"Op({self.name!r}, opcode={op})"


class OpRegistry(Mapping[str, Op]):
    """The ops of one megakernel, by name (a read-only mapping) and by opcode."""

    def __init__(self, ops: Iterable[Op] = ()) -> None:
        self._by_name: dict[str, Op] = {}
        self._by_opcode: dict[int, Op] = {}
        for op in ops:
            self._add(self.resolve(op))

    def __getitem__(self, name: str) -> Op:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise KeyError(f"no op named {name!r} is registered (registered: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def by_opcode(self, opcode: int) -> Op | None:
        """The op registered under ``opcode``, or None."""
        return self._by_opcode.get(opcode)

    def __contains__(self, opcode: object) -> bool:
        """Is ``opcode`` the opcode of a registered op? (No copy: the submit path asks.)"""
        return opcode in self._by_opcode

    @property
    def opcodes(self) -> frozenset[int]:
        """The registered opcodes."""
        return frozenset(self._by_opcode)

    def ops(self) -> list[Op]:
        """The ops in registration order."""
        return list(self._by_name.values())

    def resolve(self, op: Op) -> Op:
        """``op`` with its opcode picked where it has none; refuses a name or opcode that is
        taken (by a different op). Changes nothing."""
        if not isinstance(op, Op):
            raise InvalidTypeError(f"expected a vyre.ops.Op, got {type(op).__name__}",
                                   "build one with vyre.ops.Op(name, source, opcode)")
        same = self._by_name.get(op.name)
        if same is not None:
            if same.source == op.source and op.opcode in (None, same.opcode):
                return same
            raise InvalidValueError(f"an op named {op.name!r} is already registered "
                                    f"(opcode {same.opcode:#x}) with a different source or opcode",
                                    "pick another name; a megakernel's ops cannot be replaced")
        if op.opcode is None:
            return op.with_opcode(self._pick(op.tenant))
        other = self._by_opcode.get(op.opcode)
        if other is not None:
            raise InvalidValueError(f"opcode {op.opcode:#x} is already op {other.name!r}",
                                    "pick another opcode, or leave it out to have one picked")
        if op.tenant != 0 and op.opcode not in tenant_opcode_window(op.tenant):
            window = tenant_opcode_window(op.tenant)
            raise InvalidValueError(
                f"opcode {op.opcode:#x} is outside tenant {op.tenant}'s window "
                f"{window.start:#x}..{window.stop - 1:#x}",
                "use an opcode of the tenant's window, or leave it out to have one picked")
        return op

    def with_op(self, op: Op) -> OpRegistry:
        """A new registry: these ops plus ``op`` (resolved)."""
        resolved = self.resolve(op)
        out = OpRegistry()
        out._by_name = dict(self._by_name)
        out._by_opcode = dict(self._by_opcode)
        if resolved.name not in out._by_name:
            out._add(resolved)
        return out

    def _add(self, op: Op) -> None:
        assert op.opcode is not None
        self._by_name[op.name] = op
        self._by_opcode[op.opcode] = op

    def _pick(self, tenant: int) -> int:
        candidates: Iterable[int]
        if tenant == 0:
            candidates = range(FIRST_USER_OPCODE, SYSTEM_RANGE_LO)
        else:
            candidates = tenant_opcode_window(tenant)
        for opcode in candidates:
            if opcode not in self._by_opcode:
                return opcode
        raise InvalidValueError("no free user opcode is left", "pass opcodes explicitly")
