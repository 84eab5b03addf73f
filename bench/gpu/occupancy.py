"""Registers per thread and resident blocks / warps per SM of vyre_megakernel, from the driver.

Loads each given kernel image (fatbin, cubin or PTX; default: the shipped one) with
cuModuleLoadData in a context of its own and asks cuFuncGetAttribute for NUM_REGS and
LOCAL_SIZE_BYTES and cuOccupancyMaxActiveBlocksPerMultiprocessor for blocks of 128 threads;
also prints the time cuModuleLoadData took (a PTX-only image is JIT-compiled there). ctypes
over libcuda only, so it runs without PyCUDA and needs no running megakernel.

    python bench/gpu/occupancy.py [image ...]
"""
from __future__ import annotations

import ctypes
import json
import sys
import time

BLOCK = 128
CU_FUNC_ATTRIBUTE_NUM_REGS = 4
CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3
CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR = 39


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise RuntimeError(f"{what} failed with CUresult {rc}")


def measure(path: str) -> dict:
    cu = ctypes.CDLL("libcuda.so.1")
    _check(cu.cuInit(0), "cuInit")
    dev = ctypes.c_int()
    _check(cu.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
    ctx = ctypes.c_void_p()
    _check(cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
    _check(cu.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    with open(path, "rb") as f:
        image = f.read()
    if path.endswith(".ptx"):
        image += b"\0"
    mod = ctypes.c_void_p()
    t0 = time.perf_counter()
    _check(cu.cuModuleLoadData(ctypes.byref(mod), ctypes.c_char_p(image)), "cuModuleLoadData")
    load_s = time.perf_counter() - t0
    fn = ctypes.c_void_p()
    _check(cu.cuModuleGetFunction(ctypes.byref(fn), mod, b"vyre_megakernel"), "cuModuleGetFunction")
    regs, local = ctypes.c_int(), ctypes.c_int()
    _check(cu.cuFuncGetAttribute(ctypes.byref(regs), CU_FUNC_ATTRIBUTE_NUM_REGS, fn), "NUM_REGS")
    _check(cu.cuFuncGetAttribute(ctypes.byref(local), CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, fn),
           "LOCAL_SIZE_BYTES")
    blocks = ctypes.c_int()
    _check(cu.cuOccupancyMaxActiveBlocksPerMultiprocessor(ctypes.byref(blocks), fn, BLOCK,
                                                         ctypes.c_size_t(0)), "occupancy")
    max_threads = ctypes.c_int()
    _check(cu.cuDeviceGetAttribute(ctypes.byref(max_threads),
                                   CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, dev), "attr")
    name = ctypes.create_string_buffer(256)
    cu.cuDeviceGetName(name, 256, dev)
    cu.cuModuleUnload(mod)
    return {"image": path, "device": name.value.decode(), "registers_per_thread": regs.value,
            "local_bytes_per_thread": local.value, "block_threads": BLOCK,
            "blocks_per_sm": blocks.value, "resident_warps_per_sm": blocks.value * BLOCK // 32,
            "max_warps_per_sm": max_threads.value // 32, "module_load_s": round(load_s, 4)}


def main(argv: list[str]) -> None:
    paths = argv or [__import__("vyre.backends.cuda.probe", fromlist=["KERNEL_PATH"]).KERNEL_PATH]
    for path in paths:
        print(json.dumps(measure(path)))


if __name__ == "__main__":
    main(sys.argv[1:])
