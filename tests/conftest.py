"""Shared fixtures: the backend parameter, and skipping GPU tests where no GPU is present."""
from __future__ import annotations

import pytest

from vyre.backends import cuda_available

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


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request) -> str:
    """Each backend present: the CPU always, CUDA where a GPU and PyCUDA are."""
    return request.param
