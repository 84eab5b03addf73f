"""Shared fixtures: the backend parameter, and skipping GPU tests where no GPU is present."""
from __future__ import annotations

import contextlib
import threading

import pytest
from _testhooks import install as _install_testhooks_finder

from vyre.backends import cuda_available

_install_testhooks_finder()  # vyre.backends._cpu_testhooks, built when a test first needs it

CUDA_OK, CUDA_WHY = cuda_available()
BACKEND_PARAMS = [pytest.param("cpu", id="cpu"),
                  pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


def pytest_collection_modifyitems(config, items):
    if CUDA_OK:
        return
    skip = pytest.mark.skip(reason=f"no usable GPU: {CUDA_WHY}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _private_pipeline_cache(tmp_path_factory):
    """User-op builds of the tests go to a cache of their own, never the user's."""
    import os

    old = os.environ.get("VYRE_CACHE_DIR")
    os.environ["VYRE_CACHE_DIR"] = str(tmp_path_factory.mktemp("vyre-cache"))
    yield
    if old is None:
        os.environ.pop("VYRE_CACHE_DIR", None)
    else:
        os.environ["VYRE_CACHE_DIR"] = old


@pytest.fixture
def clean_residency(monkeypatch):
    """The CUDA backend's process-wide residency bookkeeping, empty for one test (stand-in
    kernels must not see, or leave behind, another test's)."""
    from vyre.backends.cuda import residency

    state = residency.RESIDENCY
    monkeypatch.setattr(state, "resident", {})
    monkeypatch.setattr(state, "paused", [])
    monkeypatch.setattr(state, "deferred", [])
    monkeypatch.setattr(state, "depth", 0)
    monkeypatch.setattr(state, "wanted", [])


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def started_mk(request):
    """One started megakernel per backend for a whole test module (256 observables; two
    workers on the CPU)."""
    from vyre.megakernel import Megakernel

    kw = {"workers": 2} if request.param == "cpu" else {}
    mk = Megakernel(backend=request.param, observable_slots=256, **kw).start()
    yield mk
    mk.shutdown()


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request) -> str:
    """Each backend present: the CPU always, CUDA where a GPU and PyCUDA are."""
    return request.param


@contextlib.contextmanager
def _held_by_another_thread(lock):
    """``lock`` held by another thread for the block (released at its end)."""
    held, release = threading.Event(), threading.Event()

    def holder():
        with lock:
            held.set()
            release.wait(30)

    th = threading.Thread(target=holder)
    th.start()
    try:
        assert held.wait(5), "the holder thread never got the lock"
        yield
    finally:
        release.set()
        th.join(5)


@pytest.fixture
def held_elsewhere():
    """``with held_elsewhere(lock):`` runs the block while another thread holds ``lock``."""
    return _held_by_another_thread
