"""The shipped megakernel image and the fused build's pieces that need no GPU."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import types

import pytest

from vyre.errors import BackendError, PipelineError
from vyre.ops import cuda_build

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vyre", "data")
FATBIN = os.path.join(DATA, "megakernel.fatbin")
REPORT = os.path.join(DATA, "megakernel.ptxas.txt")
needs_fatbin = pytest.mark.skipif(not os.path.exists(FATBIN),
                                  reason="no megakernel.fatbin (nvcc absent at build time)")


@needs_fatbin
def test_shipped_fatbin_has_sass_for_sm80_sm90_and_a_ptx():
    with open(FATBIN, "rb") as f:
        entries = set(cuda_build.fatbin_entries(f.read()))
    assert {("elf", "sm_80"), ("elf", "sm_90")} <= entries
    assert any(kind == "ptx" for kind, _ in entries)


@needs_fatbin
def test_shipped_kernel_fits_four_blocks_of_128_threads_per_sm():
    with open(REPORT) as f:
        report = cuda_build.ptxas_report(f.read())
    regs = {arch: v["registers"] for (arch, fn), v in report.items()
            if fn == "vyre_megakernel" and "registers" in v}
    assert set(regs) >= {"sm_80", "sm_90"}
    # 65536 registers per SM; 4 blocks x 128 threads x 128 registers fill it exactly
    assert max(regs.values()) <= 128, regs


def test_fatbin_entries_refuses_other_bytes():
    with pytest.raises(BackendError) as err:
        cuda_build.fatbin_entries(b"\x7fELF" + bytes(60))
    assert "Fix:" in str(err.value)


def test_fatbin_entries_reads_a_synthetic_container():
    def entry(kind: int, sm: int, payload: bytes) -> bytes:
        head = struct.pack("<HHIQ", kind, 0x101, 64, len(payload)) + bytes(12)
        head += struct.pack("<I", sm)
        return head.ljust(64, b"\0") + payload
    body = entry(2, 80, b"a" * 8) + entry(2, 90, b"b" * 16) + entry(1, 75, b"ptx")
    image = struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body
    assert cuda_build.fatbin_entries(image) == [("elf", "sm_80"), ("elf", "sm_90"),
                                                ("ptx", "sm_75")]


def test_ptxas_report_parses_entry_registers_and_function_spills():
    text = """ptxas info    : Compiling entry function 'vyre_megakernel' for 'sm_90'
ptxas info    : Function properties for vyre_megakernel
    752 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 128 registers, used 0 barriers, 752 bytes cumulative stack size
ptxas info    : Function properties for _Z6workerv
    0 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Compiling entry function 'vyre_megakernel' for 'sm_80'
ptxas info    : Used 120 registers, used 0 barriers, 700 bytes cumulative stack size
"""
    r = cuda_build.ptxas_report(text)
    assert r[("sm_90", "vyre_megakernel")] == {"stack": 752, "spill_stores": 0, "spill_loads": 0,
                                               "registers": 128}
    assert r[("sm_90", "_Z6workerv")] == {"stack": 0, "spill_stores": 8, "spill_loads": 12}
    assert r[("sm_80", "vyre_megakernel")] == {"registers": 120}


def test_missing_nvcc_is_a_backend_error_with_the_fix(monkeypatch):
    monkeypatch.delenv("VYRE_NVCC", raising=False)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(cuda_build.shutil, "which", lambda name: None)
    monkeypatch.setattr(cuda_build.os.path, "isfile", lambda path: False)
    with pytest.raises(BackendError) as err:
        cuda_build.find_nvcc()
    assert isinstance(err.value, PipelineError)
    assert "nvcc" in err.value.message and "VYRE_NVCC" in err.value.fix


def test_vyre_nvcc_that_is_not_a_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("VYRE_NVCC", str(tmp_path / "no-nvcc"))
    with pytest.raises(BackendError) as err:
        cuda_build.find_nvcc()
    assert "VYRE_NVCC" in str(err.value) and str(err.value).rstrip().endswith(err.value.fix)


def _op(name: str, opcode: int, source: str = "") -> types.SimpleNamespace:
    return types.SimpleNamespace(name=name, opcode=opcode,
                                 source=source or f"VYRE_OP({name}) {{ (void)op; }}")


def test_fused_source_fuses_ops_out_of_line_before_the_kernel():
    src = cuda_build.fused_source([_op("axpy", 0x100), _op("hist", 0x101)])
    assert src.index("#define VYRE_USER_OPS 1") < src.index('#include "vyre_op.h"')
    assert "__noinline__" in src.split('#include "vyre_op.h"')[0]
    assert "case 0x100u: vyre_op_run_lanes(op, vyre_op_axpy); return 1;" in src
    assert "case 0x101u: vyre_op_run_lanes(op, vyre_op_hist); return 1;" in src
    assert "default: return 0;" in src
    assert src.rstrip().endswith('#include "megakernel.cu"')


@pytest.mark.parametrize("name", ["", "9lives", "a-b", "x; int y", "näme"])
def test_fused_source_refuses_names_that_are_not_c_identifiers(name):
    with pytest.raises(BackendError) as err:
        cuda_build.fused_source([_op("ok", 0x100), _op(name, 0x101, "VYRE_OP(x) {}")])
    assert "C identifier" in str(err.value)


def test_kernel_sources_exist_for_the_fused_build():
    paths = cuda_build._kernel_paths()
    for name in ("megakernel.cu", "vyre_abi.h", "vyre_interp.h"):
        assert os.path.exists(paths[name]), paths[name]


def test_every_file_the_kernel_includes_is_a_kernel_source():
    # the fused build compiles from these files (vyre/data/kernel/ in an installed package)
    # and its cache key covers them: a header the kernel includes but the lists leave out
    # breaks the installed fused build, or keeps a stale cached module after an edit
    import re

    paths = cuda_build._kernel_paths()
    names = set(cuda_build._KERNEL_FILES)
    seen: set[str] = set()
    todo = ["megakernel.cu"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        assert name in names, f"{name} is included by the kernel but not a kernel source"
        with open(paths[name]) as f:
            todo += re.findall(r'^#include "([^"]+)"', f.read(), re.M)
    assert seen == names
    # setup.py ships KERNEL_SOURCES into vyre/data/kernel/ (PTX_SOURCE is megakernel.cu)
    with open(os.path.join(os.path.dirname(DATA.rstrip(os.sep).rsplit(os.sep, 1)[0]),
                           "setup.py")) as f:
        text = f.read()
    block = text[text.index("KERNEL_SOURCES = ["):]
    block = block[:block.index("]")]
    shipped = set(re.findall(r'"([\w.]+\.(?:cuh|cu|h))"', block)) | {"megakernel.cu"}
    assert shipped == names


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc absent")
def test_the_poller_reads_the_doorbell_as_64_bit_elements(tmp_path):
    # a v4.u32 load promises single-copy atomicity per 32-bit half only: a ticket count that
    # crosses 2^32 between the halves' reads would look 2^32 tickets off (docs/spec.md §7)
    root = os.path.dirname(DATA.rstrip(os.sep).rsplit(os.sep, 1)[0])
    out = tmp_path / "mk.ptx"
    subprocess.run([shutil.which("nvcc"), "-ptx", "-arch=compute_75", "-std=c++17", "-O3",
                    "-I", os.path.join(root, "csrc"), os.path.join(root, "cuda", "megakernel.cu"),
                    "-o", str(out)], check=True, capture_output=True)
    ptx = out.read_text()
    poller = ptx[ptx.index("poller"):]
    assert "ld.acquire.sys.global.v2.u64" in poller
