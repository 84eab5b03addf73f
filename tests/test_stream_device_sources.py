"""Device arrays as scan sources (vyre.ingest.device_source): CUDA memory is scanned in place
through a borrowed buffer handle; the CPU backend refuses it with a fix; DLPack objects in
host memory are read as host data.

The in-place path (windows, chunks, borrowed handle) is also driven on the CPU backend with
host memory standing in for device memory, so its counting is checked here; the CuPy and
PyTorch tests (marker ``gpu``) check the real thing against ``count_matches`` on the bytes
copied to the host."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vyre.ingest._uring")
from vyre.errors import InvalidTypeError, InvalidValueError  # noqa: E402
from vyre.ingest import device_source  # noqa: E402
from vyre.ingest.dfa import build_dfa, count_matches  # noqa: E402
from vyre.ingest.stream import GpuStream  # noqa: E402

PATS = [b"ab", b"bab", b"aaa", b"\x00\x01"]


def _data(seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.frombuffer(b"ab\x00\x01", np.uint8), size).astype(np.uint8)


class _CudaLike:
    """Announces CUDA memory through ``__cuda_array_interface__`` (never read on the CPU)."""

    def __init__(self, n: int = 16, strides=None, typestr="|u1") -> None:
        self.__cuda_array_interface__ = {"shape": (n,), "typestr": typestr,
                                         "data": (0x7F0000000000, False), "version": 3,
                                         "strides": strides}


class _DlpackOnly:
    """Exports only DLPack (device type from the wrapped object, or a forced one)."""

    def __init__(self, arr, device=None) -> None:
        self._arr, self._device = arr, device

    def __dlpack__(self, **kw):
        return self._arr.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._device or self._arr.__dlpack_device__()


class _HostAsDevice:
    """Host memory that the test routes through the in-place (device) path."""

    __dlpack__ = None  # looks like an array exporter to scan(); classify is patched

    def __init__(self, arr: np.ndarray) -> None:
        self.arr = arr


@pytest.fixture
def cpu_mk():
    megakernel = pytest.importorskip("vyre.megakernel")
    m = megakernel.Megakernel(backend="cpu", observable_slots=64, workers=2).start()
    yield m
    m.shutdown(drain=False)


@pytest.fixture
def in_place(monkeypatch):
    """Route :class:`_HostAsDevice` sources through ``scan_in_place`` with small windows."""
    real = device_source.classify

    def classify(src):
        if isinstance(src, _HostAsDevice):
            return device_source.DeviceArray(src, 0, src.arr.nbytes, host=src.arr)
        return real(src)

    monkeypatch.setattr(device_source, "classify", classify)
    monkeypatch.setattr(device_source, "_WINDOW_BYTES", 7001)


# ---------------------------------------------------------------------- refusals on the CPU
def test_cpu_backend_refuses_cuda_memory_with_a_fix(cpu_mk):
    d = build_dfa(PATS)
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s:
        for src in (_CudaLike(), _DlpackOnly(np.zeros(4, np.uint8), device=(2, 0)),
                    _DlpackOnly(np.zeros(4, np.uint8), device=(13, 0))):
            with pytest.raises(InvalidValueError) as e:
                s.scan([b"ab", src], d)
            msg = str(e.value)
            assert "source 1" in msg and "cpu backend cannot read" in msg
            assert "backend='cuda'" in msg and "copy it to the host" in msg
        # refused before anything ran: the stream still counts the next call right
        assert s.scan([b"abab"], d) == {0: count_matches(PATS, b"abab")}


def test_a_single_device_array_is_one_source_not_an_iterable(cpu_mk):
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s, pytest.raises(InvalidValueError,
                                                                         match="source 0"):
        s.scan(_CudaLike(), build_dfa(PATS))


def test_non_contiguous_device_array_is_refused(cpu_mk):
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s:
        with pytest.raises(InvalidValueError, match="not C-contiguous") as e:
            s.scan([_CudaLike(n=8, strides=(2,))], build_dfa(PATS))
        assert "ascontiguousarray" in str(e.value)


def test_unknown_dlpack_device_is_refused():
    with pytest.raises(InvalidValueError, match="device type 4"):
        device_source.classify(_DlpackOnly(np.zeros(2, np.uint8), device=(4, 0)))


def test_ingest_refuses_device_arrays(cpu_mk):
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s, \
            pytest.raises(InvalidValueError, match="scan\\(\\) only"):
        s.ingest([_CudaLike()], lambda *a: [])


def test_other_objects_still_get_a_type_error(cpu_mk):
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s, \
            pytest.raises(InvalidTypeError, match="device array"):
        s.scan([object()], build_dfa(PATS))


# ---------------------------------------------------------------------- DLPack on the host
@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.float64])
def test_host_dlpack_objects_are_scanned_as_host_bytes(cpu_mk, dtype):
    raw = _data(3, 24_000 * 8)
    arr = raw.view(dtype)
    d = build_dfa(PATS)
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=3) as s:
        got = s.scan([_DlpackOnly(arr), _DlpackOnly(arr[:0])], d)
    assert got == {0: count_matches(PATS, arr.tobytes()), 1: 0}


def test_host_dlpack_non_contiguous_is_refused(cpu_mk):
    arr = _data(4, 4000).reshape(40, 100)[:, ::2]
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s, \
            pytest.raises(InvalidValueError, match="not C-contiguous"):
        s.scan([_DlpackOnly(arr)], build_dfa(PATS))


def test_torch_cpu_tensor_is_host_memory(cpu_mk):
    torch = pytest.importorskip("torch")
    raw = _data(5, 50_001)
    t = torch.from_numpy(raw.copy())
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=3) as s:
        assert s.scan(t, build_dfa(PATS)) == {0: count_matches(PATS, raw.tobytes())}


# ---------------------------------------------------------------------- the in-place path
@pytest.mark.parametrize("size", [0, 1, 2, 4095, 4096, 7001, 7002, 20_000, 100_003])
def test_in_place_counts_are_exact_across_chunks_and_windows(cpu_mk, in_place, size):
    data = _data(size, size)
    d = build_dfa(PATS)
    with GpuStream(cpu_mk, chunk_bytes=3000, depth=3) as s:
        got = s.scan([_HostAsDevice(data), b"abab", _HostAsDevice(data[1:])], d)
    assert got == {0: count_matches(PATS, data.tobytes()), 1: count_matches(PATS, b"abab"),
                   2: count_matches(PATS, data[1:].tobytes())}


def test_in_place_every_byte_counted_once(cpu_mk, in_place):
    # all 256 single bytes are patterns: the count is the number of bytes scanned
    d = build_dfa([bytes([b]) for b in range(256)])
    data = np.arange(50_000, dtype=np.uint32).view(np.uint8)
    with GpuStream(cpu_mk, chunk_bytes=1000, depth=4) as s:
        assert s.scan([_HostAsDevice(data)], d) == {0: data.nbytes}
        assert s.telemetry()["bytes"] == data.nbytes


def test_in_place_handle_is_borrowed_and_given_back(cpu_mk, in_place):
    d = build_dfa(PATS)
    data = _data(9, 30_000)
    with GpuStream(cpu_mk, chunk_bytes=3000, depth=3) as s:
        for _ in range(300):  # more calls than the buffer table has handles
            got = s.scan([_HostAsDevice(data[:500])], d)
        assert got == {0: count_matches(PATS, data[:500].tobytes())}
        pool = device_source._handles(cpu_mk)
        assert len(pool.free) == 1
        # given back emptied: the borrowed handle names no memory between calls
        assert cpu_mk.backend.buffer(pool.free[0]).nbytes == 0


def test_in_place_fault_is_raised_and_the_stream_stays_usable(cpu_mk, in_place, monkeypatch):
    from vyre.errors import SlotFaultError

    d = build_dfa(PATS)
    data = _data(10, 20_000)
    with GpuStream(cpu_mk, chunk_bytes=3000, depth=3) as s:
        real_wait = cpu_mk.wait
        calls = {"n": 0}

        def faulty(tickets, timeout=None):
            calls["n"] += 1
            real_wait(tickets, timeout=timeout)
            if calls["n"] == 2:
                raise SlotFaultError("a slot faulted", "test")

        monkeypatch.setattr(cpu_mk, "wait", faulty)
        with pytest.raises(SlotFaultError):
            s.scan([_HostAsDevice(data)], d)
        monkeypatch.setattr(cpu_mk, "wait", real_wait)
        assert s.scan([_HostAsDevice(data)], d) == {0: count_matches(PATS, data.tobytes())}


# ---------------------------------------------------------------------- on the GPU
def _gpu_mk():
    megakernel = pytest.importorskip("vyre.megakernel")
    return megakernel.Megakernel(backend="cuda", observable_slots=64).start()


@pytest.mark.gpu
@pytest.mark.parametrize("size", [0, 1, 3, 4095, 1 << 20, (5 << 20) + 7])
def test_cupy_arrays_scan_in_place(size):
    cp = pytest.importorskip("cupy")
    host = _data(size + 1, size + 64)
    big = cp.asarray(host)
    d = build_dfa(PATS)
    mk = _gpu_mk()
    try:
        with GpuStream(mk, chunk_bytes=1 << 20, depth=4) as s:
            # whole, at an odd offset into a larger allocation, and as 32-bit words
            views = [big[:size], big[7:7 + size], big[:size // 4 * 4].view(cp.uint32)]
            got = s.scan(views, d)
            want = {i: count_matches(PATS, cp.asnumpy(v).tobytes()) for i, v in enumerate(views)}
            assert got == want
            assert s.scan(big[:size], d) == {0: want[0]}
    finally:
        mk.shutdown()


@pytest.mark.gpu
@pytest.mark.parametrize("size", [0, 1, 4097, (3 << 20) + 1])
def test_torch_cuda_tensors_scan_in_place(size):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    host = _data(size + 2, size + 16)
    t = torch.from_numpy(host).cuda()
    d = build_dfa(PATS)
    mk = _gpu_mk()
    try:
        with GpuStream(mk, chunk_bytes=1 << 20, depth=4) as s:
            views = [t[:size], t[3:3 + size]]
            got = s.scan(views, d)
            assert got == {i: count_matches(PATS, v.cpu().numpy().tobytes())
                           for i, v in enumerate(views)}
            # written on torch's stream just before the scan: the scan waits for it
            t[:size].fill_(ord("a"))
            assert s.scan([t[:size]], d) == {0: count_matches(PATS, b"a" * size)}
            with pytest.raises(InvalidValueError, match="not C-contiguous"):
                s.scan([t[::2]], d)
    finally:
        mk.shutdown()


@pytest.mark.gpu
def test_device_and_host_sources_mix_and_windows_split_exactly(monkeypatch):
    cp = pytest.importorskip("cupy")
    monkeypatch.setattr(device_source, "_WINDOW_BYTES", (1 << 20) + 3)
    host = _data(77, (3 << 20) + 11)
    d = build_dfa(PATS)
    mk = _gpu_mk()
    try:
        with GpuStream(mk, chunk_bytes=1 << 18, depth=4) as s:
            got = s.scan([cp.asarray(host), host, host.tobytes()], d)
            want = count_matches(PATS, host.tobytes())
            assert got == {0: want, 1: want, 2: want}
    finally:
        mk.shutdown()


def test_the_producers_stream_is_taken_from_the_array_interface():
    base = {"shape": (4,), "typestr": "|u1", "data": (0x1000, False)}

    class Obj:
        def __init__(self, cai):
            self.__cuda_array_interface__ = cai

    def stream_of(**extra):
        return device_source.classify(Obj({**base, **extra})).stream

    assert stream_of(version=2) == 1  # no key: the legacy default stream
    assert stream_of(version=3, stream=None) is None  # "no synchronization needed"
    assert stream_of(version=3, stream=0x55) == 0x55
    assert stream_of(version=3, stream=0) == 1
    dev = device_source.classify(Obj({**base, "version": 3, "shape": (2, 3),
                                      "typestr": "<u4", "strides": (12, 4)}))
    assert (dev.ptr, dev.nbytes) == (0x1000, 24)  # C-contiguous strides given explicitly


def test_in_place_waits_for_the_producers_stream_before_publishing(cpu_mk, monkeypatch):
    data = _data(12, 9000)
    log = []
    real = device_source.classify

    def classify(src):
        if isinstance(src, _HostAsDevice):
            return device_source.DeviceArray(src, 0, src.arr.nbytes, stream=0x77, host=src.arr)
        return real(src)

    monkeypatch.setattr(device_source, "classify", classify)
    monkeypatch.setattr(cpu_mk.backend, "after_stream",
                        lambda stream, timeout: log.append(("wait", stream)), raising=False)
    def logging(real):
        def logged(*a, **kw):
            log.append(("publish",))
            return real(*a, **kw)
        return logged

    for name in ("submit", "submit_many"):
        monkeypatch.setattr(cpu_mk, name, logging(getattr(cpu_mk, name)))
    with GpuStream(cpu_mk, chunk_bytes=3000, depth=3) as s:
        assert s.scan([_HostAsDevice(data)], build_dfa(PATS)) == {
            0: count_matches(PATS, data.tobytes())}
    assert log[0] == ("wait", 0x77) and ("publish",) in log


def test_torch_cpu_tensors_that_cannot_be_read_are_refused_with_a_fix(cpu_mk):
    torch = pytest.importorskip("torch")
    d = build_dfa(PATS)
    cases = [(torch.arange(10.0, requires_grad=True), "requires grad", "detach()"),
             (torch.zeros(3, dtype=torch.bfloat16), "through DLPack", "view it as bytes"),
             (torch.arange(100, dtype=torch.uint8)[::2], "not C-contiguous", "contiguous()")]
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s:
        for t, what, fix in cases:
            with pytest.raises(InvalidValueError) as e:
                s.scan([t], d)
            assert what in str(e.value) and fix in str(e.value)


@pytest.mark.gpu
def test_a_dlpack_only_device_array_scans_in_place():
    cp = pytest.importorskip("cupy")
    host = _data(31, (1 << 20) + 5)
    arr = cp.asarray(host)
    mk = _gpu_mk()
    try:
        with GpuStream(mk, chunk_bytes=1 << 18, depth=4) as s:
            assert s.scan([_DlpackOnly(arr[5:])], build_dfa(PATS)) == {
                0: count_matches(PATS, host[5:].tobytes())}
    finally:
        mk.shutdown()


def test_refused_matching_scans_leave_no_buffer_behind(cpu_mk):
    # the refusal comes before the call takes its match buffer: a loop of refused
    # per-pattern scans does not use up the buffer table (255 handles)
    d = build_dfa(PATS)
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s:
        for _ in range(300):
            with pytest.raises(InvalidValueError, match="cpu backend cannot read"):
                s.scan([b"ab", _CudaLike()], d, per_pattern=True)
        got = s.scan([b"abab"], d, per_pattern=True)[0]
        assert got.positions == count_matches(PATS, b"abab")
        assert got.per_pattern.tolist() == [2, 1, 0, 0]
