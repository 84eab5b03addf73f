"""What ``GpuStream.scan`` and ``ingest`` accept as sources, and the job each becomes.

Paths (each once), bytes-like data, ``io.BytesIO``, open files (read through
``/proc/self/fd``), and arrays exported through the CUDA array interface or DLPack: in host
memory they are data, on the GPU a :class:`vyre.ingest.device_source.DeviceJob` scanned in
place. The key of a path in a scan's result is the path, of any other source its position.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from vyre.errors import InvalidTypeError, InvalidValueError
from vyre.ingest import device_source
from vyre.ingest.pipeline import Job

__all__ = ["Source", "jobs_for"]

#: a path, bytes-like data, an open file or an exported array (see the module docstring)
Source = Any


def _is_data(x: Any) -> bool:
    return isinstance(x, (bytes, bytearray, memoryview, np.ndarray))


def _exports_array(x: Any) -> bool:
    """Does ``x`` export array memory (CUDA array interface or DLPack)? A torch tensor
    that requires grad raises on the attribute: it still counts (refused later, with why)."""
    try:
        return hasattr(x, "__cuda_array_interface__") or hasattr(x, "__dlpack__")
    except Exception:  # noqa: BLE001
        return True


def _raw_bytes(src: Any) -> memoryview:
    """The bytes of bytes-like ``src`` (a NumPy array's raw bytes, in C order), uncopied
    where the memory is contiguous already."""
    if isinstance(src, np.ndarray):
        src = np.ascontiguousarray(src)
    return memoryview(src).cast("B")


def jobs_for(sources: Source | Iterable[Source]) -> tuple[list[Job], list[Any]]:
    """One :class:`Job` per source and its key in the result (see :meth:`GpuStream.scan`)."""
    if isinstance(sources, (str, os.PathLike)) or _is_data(sources) \
            or hasattr(sources, "fileno") or hasattr(sources, "getbuffer") \
            or _exports_array(sources):
        sources = [sources]
    try:
        items = list(sources)
    except TypeError:
        raise InvalidTypeError(f"sources must be a path, bytes-like data, an open file or a "
                               f"list of them, not {type(sources).__name__}",
                               "pass scan('a.log', dfa) or scan(['a.log', b'data'], dfa)"
                               ) from None
    jobs: list[Job] = []
    keys: list[Any] = []
    seen: set[str] = set()
    for i, src in enumerate(items):
        if isinstance(src, (str, os.PathLike)):
            path = os.fspath(src)
            path = path if isinstance(path, str) else os.fsdecode(path)
            if path in seen:
                continue
            seen.add(path)
            jobs.append(Job(path))
            keys.append(path)
        elif _is_data(src):
            jobs.append(Job(f"<source {i}: {type(src).__name__}>", memory=_raw_bytes(src)))
            keys.append(i)
        elif hasattr(src, "getbuffer"):  # io.BytesIO: its bytes, not a descriptor
            jobs.append(Job(f"<source {i}: {type(src).__name__}>",
                            memory=_raw_bytes(src.getbuffer())))
            keys.append(i)
        elif hasattr(src, "fileno"):
            try:
                fd = int(src.fileno())
            except (OSError, ValueError) as err:
                raise InvalidValueError(f"source {i} ({type(src).__name__}) has no usable file "
                                        f"descriptor ({err})",
                                        "pass an open file, its path, or its bytes") from None
            jobs.append(Job(f"/proc/self/fd/{fd}"))
            keys.append(i)
        elif _exports_array(src) and (dev := device_source.classify(src)) is not None:
            name = f"<source {i}: {type(src).__name__}>"
            if isinstance(dev, np.ndarray):  # host memory through DLPack
                jobs.append(Job(name, memory=_raw_bytes(dev)))
            else:
                jobs.append(device_source.DeviceJob(name, device=dev))
            keys.append(i)
        else:
            raise device_source.source_error(i, src)
    return jobs, keys
