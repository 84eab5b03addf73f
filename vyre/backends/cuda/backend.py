"""CUDA backend: the persistent megakernel on the GPU through PyCUDA (docs/spec.md §7).

Ring, control, debug log, io queue, buffer table and doorbell live in mapped pinned host
memory (DEVICEMAP), so the host publishes with plain stores and reads results without any
copy. The kernel is launched once, on its own non-blocking stream, and runs until SHUTDOWN.

This module is the launch and its lifetime (state, start, pause/resume, relaunch, stop); the
buffer table and host-to-device copies are vyre/backends/cuda/buffer_table.py.
"""
from __future__ import annotations

import contextlib
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from vyre import _call
from vyre._wire import store_release
from vyre.backends._cpu import atomic_cas_u32
from vyre.backends.cuda.buffer_table import CudaBufferTable
from vyre.backends.cuda.host import HostRegistration
from vyre.backends.cuda.memory import (
    registered_address,
)
from vyre.backends.cuda.probe import INSTALL_FIX, KERNEL_PATH, probe
from vyre.backends.cuda.residency import RESIDENCY, quiesced
from vyre.backends.cuda.streams import stream_event_done, stream_wait_ticket
from vyre.errors import BackendError, InvalidValueError
from vyre.protocol import CTRL_SHUTDOWN, MAX_BUFFERS, SLOT_BYTES

# vyre_launch_t of cuda/megakernel.cu: vyre_ctx_t (5 pointers, 6 u32), 9 pointers, u64, 6 u32
# (idle_sleep_ns, coop_min_bytes, assist_part_bytes, idle_exit_us, yield_after_us, call_lanes),
# the call area and the call scratch slots (2 pointers); a static_assert there keeps the two in step
_LAUNCH = struct.Struct("<5Q6I9QQ6IQQ")
# device state: tickets u64 @0, doorbell mirror u64 @8, shutdown mirror u32 @16,
# live worker warps u32 @20, tickets the tenant mirror covers u64 @24,
# counters (DONE, FAULT, METRICS[32]) @64, tenant mirror @256, assist board @512
# (struct vyre_assist, _ASSIST_BYTES: a static_assert in the kernel keeps the two in step)
_ASSIST_AT = 512
_ASSIST_BYTES = 8832
_ASSIST_HELPED_AT = _ASSIST_AT + 4  # struct vyre_assist::helped
# the call warp's scratch slots (docs/call.md): 16 words per call lane, after the board
_CALL_SCRATCH_AT = _ASSIST_AT + _ASSIST_BYTES
# the kernel stores a call's request into its scratch slot 16 bytes at a time
assert _CALL_SCRATCH_AT % 16 == 0, "call scratch slots must be 16-byte aligned"
_STATE_BYTES = _CALL_SCRATCH_AT + _call.ABI["CALL_MAX_LANES"] * 64
_TENANTS_AT = 256
_LIVE_AT = 20
_TENANTS_ASOF_AT = 24
_COUNTERS_AT = 64
_BLOCK_THREADS = 128
_KERNEL = "vyre_megakernel"
_PAUSE_TIMEOUT = 10.0
# how long a submitter waits for the residency lock to relaunch a kernel that left on its own;
# past it, the relaunch is left to the holder (a quiesced() block relaunches at its end) or to
# the next check() (a waiter's watchdog runs it every few milliseconds)
_COMEBACK_LOCK_WAIT = 0.05
# how long a kick or a check waits for a kernel that is still draining before it leaves the
# relaunch to the next one (a waiter's check() comes every few milliseconds)
_COMEBACK_EXIT_WAIT = 0.02
# the exit word (doorbell[2]) as uint32 words, read with a locked instruction: a full fence
# between the doorbell store before it and this load (the host half of the handshake)
_EXIT_WORD = 4
_module_cache: dict[int, Any] = {}
_fused_modules: list[Any] = []  # fused builds loaded by use_module (vyre/ops/cuda_build.py)

def _cuda():
    ok, why = probe()
    if not ok:
        raise BackendError(f"the CUDA backend is unavailable: {why}", INSTALL_FIX)
    import pycuda.driver as cuda

    return cuda



class CudaBackend(CudaBufferTable):
    """One persistent megakernel launch on a CUDA device.

    Options: ``device`` (ordinal, default 0; ignored when a context is already current),
    ``workers`` = blocks per SM (default 1; 4 warps each), ``idle_sleep_ns`` (longest back-off
    of an idle warp, default 2000), ``heartbeat_ms`` (default 1), ``coop_min_bytes`` (DFA_SCAN
    ranges of at least this many bytes are scanned by a whole warp, default 2048),
    ``assist_part_bytes`` (such a scan is cut into parts of this many bytes that idle warps
    help with, default 65536; 0 keeps each scan on the warp that holds it), ``sm_share``
    (fraction of the SMs the kernel occupies, default 0.25, so CuPy / PyTorch kernels find
    whole SMs free; 1.0 for a GPU given to vyre alone), ``idle_exit_ms`` (leave the GPU after
    this long with nothing published and nothing running, default 1.0; the next submit
    relaunches; 0: never), ``yield_ms`` (leave and be relaunched after this long resident
    even when busy, so a device-wide synchronize, a free or a module load of another library
    waits at most about this long; default 5; 0: never). See docs/facade.md, "Using vyre
    with CuPy and PyTorch". ``call_lanes``
    (lanes of the call path, served by warp 2 of block 0; default 8, 0: no call warp).
    """

    name = "cuda"
    #: DONE_COUNT / FAULT_COUNT / METRICS trail slot statuses by one poller pass
    lazy_counters = True

    def __init__(self, *, slot_count: int, observable_slots: int, debug_records: int,
                 io_slots: int, workers: int | None = None, device: int = 0,
                 idle_sleep_ns: int = 2000, heartbeat_ms: float = 1.0,
                 coop_min_bytes: int = 2048, assist_part_bytes: int = 65536,
                 sm_share: float = 0.25, idle_exit_ms: float = 1.0, yield_ms: float = 5.0,
                 call_lanes: int | None = None, **options: Any) -> None:
        if options:
            raise BackendError(f"unknown CUDA backend option(s): {', '.join(sorted(options))}",
                               "see vyre.backends.cuda.CudaBackend for the options")
        if not 0 <= int(assist_part_bytes) < 1 << 32:
            raise BackendError(f"assist_part_bytes={assist_part_bytes} is outside 0 .. 2**32-1",
                               "use 0 (no assist) or a part size in bytes, e.g. 65536 "
                               "(the default)")
        if not 0.0 < float(sm_share) <= 1.0:
            raise InvalidValueError(f"sm_share={sm_share} is outside (0, 1]",
                                    "use the fraction of SMs the megakernel may occupy, e.g. "
                                    "0.25 (the default) or 1.0 (every SM)")
        for name, value in (("idle_exit_ms", idle_exit_ms), ("yield_ms", yield_ms)):
            if not 0.0 <= float(value) <= 4e6:
                raise InvalidValueError(f"{name}={value} is outside 0 .. 4e6",
                                        "use milliseconds, or 0 to turn it off")
        lanes = _call.ABI["CALL_DEFAULT_LANES"] if call_lanes is None else int(call_lanes)
        if not 0 <= lanes <= _call.ABI["CALL_MAX_LANES"]:
            raise InvalidValueError(f"call_lanes={call_lanes} is outside "
                                    f"0 .. {_call.ABI['CALL_MAX_LANES']}",
                                    "use 0 (no call path) or 1 .. 32 lanes (8, the default)")
        cuda = _cuda()
        self._cuda = cuda
        self._own_ctx = None
        self._closed = True
        self._running = False
        self._failed: BackendError | None = None
        self._helped = 0  # assist_helped() of launches that have left
        self._away = False  # the kernel left on its own and nothing published needs it yet
        self._comeback_wanted = False  # a kick found it leaving but could not take the lock
        self._call_wanted = False  # a call waits for an answer: relaunch even with no new ticket
        #: times the kernel left the GPU on its own (idle exit or yield) and the host noticed
        self.idle_exits = 0
        #: relaunches after such an exit (a submit found it gone)
        self.relaunches = 0
        current = cuda.Context.get_current()
        if current is None:
            self._own_ctx = cuda.Device(device).retain_primary_context()
            self._own_ctx.push()
            self._ctx = self._own_ctx
        else:
            self._ctx = current
        self._device = cuda.Context.get_device()
        self._registrations: list[HostRegistration] = []
        self._device_allocs: list[Any] = []
        try:
            with quiesced():  # module loads and allocations would wait on running kernels
                self._module = self._load_module()
                self._func = self._module.get_function(_KERNEL)
                sms = self._device.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)
                self.blocks_per_sm = int(workers) if workers else 1
                self.sms = max(1, min(sms, round(sms * float(sm_share))))
                self.grid = self.sms * self.blocks_per_sm
                self.slot_count = slot_count
                self.io_slots = io_slots
                self.debug_records = debug_records
                self._options = dict(idle_sleep_ns=idle_sleep_ns, heartbeat_ms=heartbeat_ms,
                                     coop_min_bytes=coop_min_bytes,
                                     assist_part_bytes=assist_part_bytes,
                                     idle_exit_us=int(float(idle_exit_ms) * 1000),
                                     yield_after_us=int(float(yield_ms) * 1000))
                self.ring = self._mapped(slot_count * 16)
                self.control = self._mapped(160 + observable_slots)
                self.debug = self._mapped(1 + 4 * debug_records + 1)
                self.ioq = self._mapped(io_slots * 8)
                # [0] tickets published, [1] pause request: the 16 bytes the poller reads;
                # [2] exit word, [3] final mirror: written by a kernel leaving on its own
                self.doorbell = self._mapped(4, np.uint64)
                self._exit_words = self.doorbell.view(np.uint32).data
                # the call path wakes the kernel (wake_for_call) only while this word is set
                self.call_exit_word = (self._exit_words, _EXIT_WORD)
                self._table = self._mapped(MAX_BUFFERS * 2, np.uint64)  # (addr, bytes) pairs
                self.call_lanes = lanes
                self.call_area = (self._mapped(lanes * _call.ABI["CALL_LANE_WORDS"])
                                  if lanes else None)
                self._buffers: list[Any] = [self.control]
                self._table[0], self._table[1] = self._dptr(self.control), self.control.nbytes
                # CU_STREAM_NON_BLOCKING: never waits on stream 0
                self._stream = cuda.Stream(flags=1)
                # host-to-device uploads: ordered and complete before the kernel may read them
                self._copy_stream = cuda.Stream(flags=1)
                # device-to-host reads of results (copy_from_device): not behind the uploads
                self._read_stream = cuda.Stream(flags=1)
                self._events: list[Any] = []  # finished copy events, reused
                self._state = cuda.mem_alloc(_STATE_BYTES)
                self._launch = cuda.mem_alloc(_LAUNCH.size)
                self._device_allocs += [self._state, self._launch]
                self._write_state(np.zeros(_STATE_BYTES // 4, np.uint32))
        except BaseException:
            self._free_memory(now=True)
            if self._own_ctx is not None:
                self._own_ctx.pop()
            raise
        self._closed = False

    # ------------------------------------------------------------------ helpers
    def _load_module(self):
        key = int(self._ctx.handle)
        mod = _module_cache.get(key)
        if mod is None:
            with open(KERNEL_PATH, "rb") as f:
                image = f.read()
            try:  # a fatbin: the driver picks the SASS of this GPU, else JIT-compiles the PTX
                mod = self._cuda.module_from_buffer(image)
            except self._cuda.Error as err:
                raise BackendError(f"the driver could not load the megakernel ({err})",
                                   "update the NVIDIA driver, or rebuild vyre with a PTX target "
                                   "this driver accepts (VYRE_PTX_ARCH)") from err
            _module_cache[key] = mod
        return mod

    def use_module(self, image: bytes | None) -> None:
        """Run the megakernel from ``image`` (a fused build with user ops, cubin or fatbin;
        None: the shipped kernel). A running kernel is paused, which finishes every slot
        published so far on the old module, and relaunched from the new one at the ticket it
        stopped at: no published slot is lost, run twice or reordered."""
        with quiesced(), self._active():  # module loads wait on running kernels
            if image is None:
                mod = self._load_module()
            else:
                try:
                    mod = self._cuda.module_from_buffer(image)
                except self._cuda.Error as err:
                    raise BackendError(f"the driver could not load the fused megakernel ({err})",
                                       "rebuild it for this GPU: clear VYRE_CACHE_DIR's entry "
                                       "or update the NVIDIA driver") from err
                _fused_modules.append(mod)  # never unloaded: an unload waits on the kernel
            self._module, self._func = mod, mod.get_function(_KERNEL)

    def load_ops(self, ops: Any, cache: Any = None) -> dict[str, Any]:
        """Run the megakernel fused with user ops ``ops`` (vyre/ops/cuda_build.py: nvcc for
        this GPU's architecture, through the pipeline cache), swapped in by use_module: a
        running kernel finishes what was published and relaunches from the new module.
        Returns the build's telemetry (``source``: memory / disk / build, ``seconds``)."""
        from vyre.ops import cuda_build

        ops = list(ops)
        if not ops:
            self.use_module(None)
            return {"source": "builtin", "seconds": 0.0}
        major, minor = self._device.compute_capability()
        built = cuda_build.build_fused(ops, f"sm_{major}{minor}", cache=cache)
        t0 = time.perf_counter()
        self.use_module(built.image)
        return {"source": built.source, "seconds": built.seconds, "key": built.key,
                "arch": built.arch, "swap_seconds": time.perf_counter() - t0}

    @staticmethod
    def _dptr(arr: np.ndarray) -> int:
        found = registered_address(int(arr.ctypes.data), int(arr.nbytes))
        if found is None:
            raise BackendError("internal: host memory is not registered", "report this as a bug")
        return found

    def _write_state(self, words: np.ndarray) -> None:
        with self._active():
            self._cuda.memcpy_htod_async(self._state, words, self._copy_stream)
            self._copy_stream.synchronize()  # complete before the kernel may read it

    def _free_memory(self, *, now: bool) -> None:
        allocs = [*self._device_allocs, *self._registrations]
        self._device_allocs, self._registrations = [], []
        RESIDENCY.release(allocs, now=now)

    # ------------------------------------------------------------------ Backend
    @contextlib.contextmanager
    def quiesce(self) -> Iterator[None]:
        """quiesced(), with this megakernel's CUDA context current in the block."""
        with quiesced(), self._active():
            yield

    def _worker_warps(self) -> int:
        # minus the poller, the flusher and the call warp
        return self.grid * (_BLOCK_THREADS // 32) - (3 if self.call_lanes else 2)

    @property
    def assist_part_bytes(self) -> int:
        """Part size long DFA_SCANs are cut into for idle warps to help (0: off)."""
        return int(self._options["assist_part_bytes"])

    def assist_helped(self) -> int:
        """Parts of split DFA_SCANs that warps other than the scan's owner scanned since
        :meth:`start` (a diagnostic: the count lives in device memory the kernel keeps
        writing, so a running kernel is read through ``quiesced()``, which pauses and
        relaunches every megakernel of the process)."""
        if self._running and not self.paused and not self._away:
            with quiesced():
                pass  # the pause's relaunch adds the count of the launch that left
        # paused: the launch that left is banked at its relaunch
        if self._running and (self.paused or self._away):
            return self._helped + self._helped_in_state()
        return self._helped

    def _helped_in_state(self) -> int:
        """The board's count in device state (the kernel must not be resident)."""
        word = np.zeros(1, np.uint32)
        with self._active():
            self._cuda.memcpy_dtoh_async(word, int(self._state) + _ASSIST_HELPED_AT,
                                         self._copy_stream)
            self._copy_stream.synchronize()
        return int(word[0])

    def start(self) -> None:
        if self._running:
            return
        self._helped = 0
        s = int(self._state)
        params = _LAUNCH.pack(
            self._dptr(self.ring), self._dptr(self.control), self._dptr(self.debug),
            self._dptr(self.ioq), self._dptr(self._table),
            self.slot_count, self.control.size, self.control.size - 160,
            self.debug_records, self.io_slots, MAX_BUFFERS,
            s, s + 8, s + 16, s + _LIVE_AT, self._dptr(self.doorbell), s + _COUNTERS_AT,
            s + _TENANTS_AT, s + _TENANTS_ASOF_AT, s + _ASSIST_AT,
            int(self._options["heartbeat_ms"] * 1e6), int(self._options["idle_sleep_ns"]),
            int(self._options["coop_min_bytes"]), int(self._options["assist_part_bytes"]),
            int(self._options["idle_exit_us"]), int(self._options["yield_after_us"]),
            self.call_lanes, self._dptr(self.call_area) if self.call_area is not None else 0,
            s + _CALL_SCRATCH_AT)
        with self._active():
            self._cuda.memcpy_htod_async(self._launch, params, self._copy_stream)
            self._copy_stream.synchronize()
        with RESIDENCY.lock:  # never launch into another thread's quiesced() block
            if RESIDENCY.park(self):  # started inside a quiesced() block: launched at its end
                self._running = self.paused = True
                return
            self._launch_kernel(np.zeros(_STATE_BYTES // 4, np.uint32))

    def _launch_kernel(self, state: np.ndarray) -> None:
        """Launch with ``state`` (device-state words) written first; live = the worker warps."""
        state[_LIVE_AT // 4] = self._worker_warps()
        self._write_state(state)
        self.doorbell[2] = 0  # the exit word: the kernel is not leaving (it is not resident)
        self._away = False
        RESIDENCY.resident[id(self)] = self  # before the launch: no free may start under it
        with self._active():
            try:
                self._func(self._launch, block=(_BLOCK_THREADS, 1, 1), grid=(self.grid, 1),
                           stream=self._stream)
            except self._cuda.Error as err:
                RESIDENCY.resident.pop(id(self), None)
                raise BackendError(f"the megakernel launch failed ({err})",
                                   "lower workers (blocks per SM) or free GPU memory") from err
        self._running = True
        self.paused = False

    def _left(self) -> None:
        """The kernel is no longer resident (stopped, paused, faulted or gone idle)."""
        RESIDENCY.left(self)

    def _stream_done(self, fix: str) -> bool:
        """Has the kernel's stream finished? A kernel fault raises (the kernel is gone)."""
        with self._active():
            try:
                return bool(self._stream.is_done())
            except self._cuda.Error as err:
                self._running = False
                self._left()
                raise BackendError(f"the megakernel faulted ({err})", fix) from err

    def _wait_exit(self, timeout: float, what: str) -> None:
        """Poll the stream until the kernel has exited; a fault or the timeout raises."""
        deadline = time.monotonic() + timeout
        while not self._stream_done("run the workload under compute-sanitizer; the context "
                                    "may need to be recreated"):
            if time.monotonic() > deadline:
                raise BackendError(
                    f"the megakernel did not {what} within {timeout} s",
                    "a slot never finishes (an op that spins?); the GPU context is still "
                    "busy, restart the process to reclaim it")
            time.sleep(0.0002)

    def _pause(self, timeout: float = _PAUSE_TIMEOUT) -> None:
        """Stop the kernel after it finished every slot it had seen published (quiesced())."""
        if not self._running or self.paused or self._failed is not None:
            return  # a failed kernel is not waited on again by every later quiesce
        self.paused = True  # from the request on: the watchdog and check() stand aside
        store_release(self.doorbell, 1, 1)  # seen by the poller with what came before
        try:
            self._wait_exit(timeout, "pause")
        except BackendError as err:
            # the poller has (or will have) left; the kernel cannot be un-paused. Stop it
            # for good and report the cause to every later call.
            self.control[CTRL_SHUTDOWN] = 1
            self._failed = BackendError(
                f"the megakernel could not pause: {err}",
                "a slot never finishes (or waits on I/O nobody serves while paused); "
                "recreate the Megakernel")
            self.paused = False
            RESIDENCY.resident.pop(id(self), None)
            raise self._failed from err
        RESIDENCY.resident.pop(id(self), None)

    def _resume(self) -> None:
        """Relaunch a paused kernel: tickets restart at the last doorbell value it mirrored
        (every ticket below it finished; none above it was claimed), counters at zero (the
        flusher folded them into control before the kernel left)."""
        if not self.paused or not self._running:
            return
        self._relaunch()
        self.pauses += 1

    def _relaunch(self) -> None:
        """Launch again after the kernel left (a pause, or on its own): see :meth:`_resume`."""
        try:
            old = np.zeros(_STATE_BYTES // 4, np.uint32)
            with self._active():
                self._cuda.memcpy_dtoh_async(old, self._state, self._copy_stream)
                self._copy_stream.synchronize()
            self._helped += int(old[_ASSIST_HELPED_AT // 4])  # the relaunch starts at zero
            state = np.zeros_like(old)
            state[0:2] = state[2:4] = old[2:4]  # tickets = mirror = the final mirror (u64 each)
            store_release(self.doorbell, 1, 0)
            self._launch_kernel(state)
        except Exception as err:
            self._running = False
            self.paused = False
            self._failed = BackendError(f"the megakernel could not be relaunched after a pause "
                                        f"({err})", "recreate the Megakernel")
            raise self._failed from err

    def stop(self, timeout: float) -> None:
        # never between a pause and its relaunch; bounded: a quiesced() block of another
        # thread (an allocation) may hold it
        # (at least 50 ms: a watchdog check() holds it briefly; no limit past TIMEOUT_MAX)
        wait = -1.0 if timeout >= threading.TIMEOUT_MAX else max(timeout, 0.05)
        if not RESIDENCY.lock.acquire(timeout=wait):
            raise BackendError(f"could not stop the megakernel within {timeout} s: another "
                               "thread is inside quiesced() (allocating, freeing or loading)",
                               "retry the shutdown once that call returns, or raise the timeout")
        try:
            self._stop_locked(timeout)
        finally:
            RESIDENCY.lock.release()

    def _stop_locked(self, timeout: float) -> None:
        if not self._running:
            return
        self.control[CTRL_SHUTDOWN] = 1
        if not self.paused:
            self._wait_exit(timeout, "stop after SHUTDOWN")
        with contextlib.suppress(Exception):  # a diagnostic: never fails a stop
            self._helped += self._helped_in_state()  # the last launch (a pause keeps it)
        self._running = False
        self.paused = False
        self._left()

    def check(self) -> None:
        if self._failed is not None:
            # the same error every time, without each raise growing its traceback
            raise self._failed.with_traceback(None)
        if not self._running or self.paused:
            return
        if not RESIDENCY.lock.acquire(blocking=False):
            return  # a pause or a stop is under way: its own checks report
        try:
            if not self._running or self.paused:
                return
            if self._exit_words[_EXIT_WORD] or self._comeback_wanted:
                self._come_back_locked(0.0)  # it left on its own: relaunched if work waits
                return
            finished = self._stream_done("run the workload under compute-sanitizer to find "
                                         "the bad access; recreate the Megakernel")
            if finished and not self.control[CTRL_SHUTDOWN]:
                self._running = False
                self._left()
                raise BackendError("the megakernel exited without a SHUTDOWN",
                                   "report this as a bug with the workload that triggered it")
        finally:
            RESIDENCY.lock.release()

    # ------------------------------------------------- ordering with other streams
    def stream_wait(self, stream: Any, slot: int) -> bool:
        with self._active():
            stream_wait_ticket(stream, self._dptr(self.ring) + slot * SLOT_BYTES)
        return True

    def after_stream(self, stream: Any, timeout: float | None) -> None:
        with self._active():
            stream_event_done(stream, timeout)

    # ------------------------------------------------- leaving the GPU on its own
    def kick(self) -> None:
        """Called after every doorbell store: a kernel that is leaving (or has left) on its
        own is relaunched for the new tickets. The host half of the poller's handshake
        (cuda/megakernel.cu): doorbell store, full fence, exit-word load. Either the kernel's
        last doorbell read saw the new tickets (it runs them before it leaves) or this load
        sees its exit word (and relaunches): never neither."""
        if self._exit_words[_EXIT_WORD] == 0 and not self._comeback_wanted and \
                atomic_cas_u32(self._exit_words, _EXIT_WORD, 0xFFFFFFFF, 0xFFFFFFFF) == 0:
            return
        if self.paused:  # paused by a quiesced() block, which relaunches it at its end
            return
        if not RESIDENCY.lock.acquire(timeout=_COMEBACK_LOCK_WAIT):
            # a pause, a stop or a check holds it: a quiesced() block relaunches at its end
            # what it paused, and a waiter's check() retries this
            self._comeback_wanted = True
            RESIDENCY.wanted.append(self)
            return
        try:
            self._come_back_locked()
        finally:
            RESIDENCY.lock.release()

    def wake_for_call(self) -> None:
        """A call is about to wait for its answer: a kernel that left on its own (idle exit or
        yield) is relaunched for it, as a submit relaunches it for a ticket. The call server
        answers a request written while the kernel was away once it is back."""
        if self._exit_words[_EXIT_WORD] == 0 and not self._comeback_wanted:
            return
        self._call_wanted = True
        self.kick()

    def _come_back_locked(self, wait: float | None = None) -> None:
        """(Residency lock held.) The kernel said it is leaving: once it has left, relaunch
        iff the doorbell moved past the final mirror it wrote. A kernel still draining after
        ``wait`` s (a long op in flight) is left to the next kick or check(): never a failure,
        and a submitter is not held for the length of someone's scan."""
        self._comeback_wanted = False
        if not self._running or self.paused or self._failed is not None \
                or not self._exit_words[_EXIT_WORD]:
            return
        if not self._away:
            deadline = time.monotonic() + (_COMEBACK_EXIT_WAIT if wait is None else wait)
            while not self._stream_done("run the workload under compute-sanitizer; the "
                                        "context may need to be recreated"):
                if time.monotonic() > deadline:
                    self._comeback_wanted = True
                    return
                time.sleep(0.0001)
            self._away = True
            self.idle_exits += 1
            self._left()
        if int(self.doorbell[0]) <= int(self.doorbell[3]) and not self._call_wanted:
            return  # the launch that left covered every published ticket: stay away
        self._call_wanted = False
        if RESIDENCY.park(self):  # inside a quiesced() block: relaunched at its end
            self.paused = True
            return
        self._relaunch()
        self.relaunches += 1

    @property
    def running(self) -> bool:
        return self._running

    def describe(self) -> dict[str, Any]:
        return {
            "name": self._device.name(),
            "grid": self.grid,
            "block": _BLOCK_THREADS,
            "blocks_per_sm": self.blocks_per_sm,
            "sms": self.sms,
            "idle_exit_ms": self._options["idle_exit_us"] / 1000,
            "yield_ms": self._options["yield_after_us"] / 1000,
            "memory": "registered host memory (cuMemHostRegister DEVICEMAP)",
        }

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        if self._running:
            self.stop(5.0)
        self._closed = True
        # other megakernels are paused for the frees. The host arrays stay valid for the
        # facade's views (unregistering does not unmap them).
        self._buffers = [self.control]
        self._events = []  # destroyed while the context is still ours
        self._free_memory(now=True)
        if self._own_ctx is not None:
            with contextlib.suppress(Exception):
                if self._cuda.Context.get_current() == self._own_ctx:
                    self._cuda.Context.pop()
            self._own_ctx = None
