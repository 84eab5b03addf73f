"""Type stubs of the compiled wire core (vyre/_wire.pyx)."""
from collections.abc import Sequence
from typing import Any, NamedTuple, SupportsIndex

from typing_extensions import TypeAlias

# Any object exporting the buffer protocol (bytearray, memoryview, numpy array, mmap, pinned
# memory); `collections.abc.Buffer` (PEP 688) once 3.12 is the floor.
Buffer: TypeAlias = Any
Words = Sequence[SupportsIndex]
PackedOps = Sequence[tuple[SupportsIndex, Words]]

ABI: dict[str, int]

class DebugRecord(NamedTuple):
    """One PRINTF record: ``fmt_id`` (a0) and ``args`` = (a1, a2, slot_index)."""

    fmt_id: int
    args: tuple[int, int, int]

def is_system(op: SupportsIndex) -> bool: ...
def is_builtin(op: SupportsIndex) -> bool: ...
def validate_user_opcode(op: SupportsIndex) -> int: ...
def validate_publish_opcode(op: SupportsIndex) -> int: ...

def control_byte_len(observable_slots: SupportsIndex) -> int | None: ...
def ring_byte_len(slot_count: SupportsIndex) -> int | None: ...
def debug_log_byte_len(records: SupportsIndex) -> int | None: ...
def default_priority_offsets(slot_count: SupportsIndex) -> list[int]: ...
def encode_control(
    shutdown: object,
    tenant_count: SupportsIndex,
    observable_slots: SupportsIndex,
    slot_count: SupportsIndex | None = None,
) -> bytearray: ...
def encode_empty_ring(slot_count: SupportsIndex) -> bytearray: ...
def encode_empty_debug_log(records: SupportsIndex) -> bytearray: ...

def read_done_count(control: Buffer) -> int: ...
def read_epoch(control: Buffer) -> int: ...
def read_fault_count(control: Buffer) -> int: ...
def read_heartbeat(control: Buffer) -> int: ...
def read_observable(control: Buffer, i: SupportsIndex) -> int: ...
def read_metrics(control: Buffer) -> dict[int, int]: ...
def read_debug_log(debug: Buffer) -> list[DebugRecord]: ...
def read_debug_overflow(debug: Buffer) -> int: ...
def slot_status(ring: Buffer, i: SupportsIndex) -> int: ...
def count_done_slots(ring: Buffer, n: SupportsIndex) -> int: ...

def publish_slot(
    ring: Buffer,
    slot_idx: SupportsIndex,
    tenant_id: SupportsIndex,
    opcode: SupportsIndex,
    args: Words = (),
    priority: SupportsIndex = 2,
) -> None: ...
def validate_slot(
    tenant_id: SupportsIndex, opcode: SupportsIndex, args: Words = (), priority: SupportsIndex = 2
) -> None: ...
def pack_ops(ops: PackedOps) -> list[int]: ...
def publish_packed(
    ring: Buffer,
    slot_idx: SupportsIndex,
    tenant_id: SupportsIndex,
    ops: PackedOps,
    priority: SupportsIndex = 2,
) -> None: ...
def publish_sequence(
    ring: Buffer,
    start_slot: SupportsIndex,
    entries: Sequence[
        tuple[SupportsIndex, SupportsIndex, Words]
        | tuple[SupportsIndex, SupportsIndex, Words, SupportsIndex]
    ],
) -> int: ...
def batch_publish(
    ring: Buffer,
    start_slot: SupportsIndex,
    tenant_id: SupportsIndex,
    items: Sequence[tuple[SupportsIndex, Words]],
    batch_tag: SupportsIndex,
    priority: SupportsIndex = 2,
) -> int: ...
def window_items(
    opcode: SupportsIndex, ticket: SupportsIndex, required: Sequence[Words], lookahead: Sequence[Words]
) -> list[tuple[int, list[int]]]: ...
def publish_window(
    ring: Buffer,
    start_slot: SupportsIndex,
    tenant_id: SupportsIndex,
    opcode: SupportsIndex,
    ticket: SupportsIndex,
    required: Sequence[Words],
    lookahead: Sequence[Words],
    priority: SupportsIndex = 2,
) -> int: ...
def validate_many(
    tenant_id: SupportsIndex,
    opcodes: Buffer,
    args: Buffer | None = None,
    priority: SupportsIndex = 2,
) -> None: ...

# doorbell: a uint64 array; doorbell[0] = first_ticket + slots written, every notify_every
# slots (0: only at the end) and after the last one
def publish_many(
    ring: Buffer,
    start_slot: SupportsIndex,
    tenant_id: SupportsIndex,
    opcodes: Buffer,
    args: Buffer | None = None,
    priority: SupportsIndex = 2,
    doorbell: Buffer | None = None,
    first_ticket: SupportsIndex = 0,
    notify_every: SupportsIndex = 0,
    assume_free: bool = False,
) -> int: ...

def retire(ring: Buffer, start_slot: SupportsIndex, max_count: SupportsIndex) -> tuple[int, list[int]]: ...
def wait_slot(ring: Buffer, slot_idx: SupportsIndex, timeout_s: float | None) -> int: ...
def wait_retire(
    ring: Buffer, start_slot: SupportsIndex, count: SupportsIndex, timeout_s: float | None
) -> int: ...
def wait_finished(
    ring: Buffer, start_slot: SupportsIndex, count: SupportsIndex, timeout_s: float | None
) -> tuple[int, int]: ...

def encode_load_miss(resource_id: SupportsIndex, prefetch: SupportsIndex) -> list[int]: ...
def decode_load_miss(args: Words) -> tuple[int, int]: ...

def store_release(array: Buffer, index: SupportsIndex, value: int) -> None: ...
def load_acquire(array: Buffer, index: SupportsIndex) -> int: ...
