"""Environment metadata recorded with every run, so a number can be traced to a machine.

Every probe is best effort: a missing tool (nvidia-smi, git) or package yields ``None`` for
its fields, never an exception. Nothing here creates a CUDA context or imports CuPy/PyCUDA
device code: probing must not change the state the benchmarks then measure.
"""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

#: distributions whose versions are recorded, by import name
PACKAGES = ("vyre", "numpy", "Cython", "pycuda", "cupy", "matplotlib")

_SMI_FIELDS = ("name", "driver_version", "pstate", "clocks.sm", "clocks.mem", "clocks.max.sm",
               "clocks.max.mem", "temperature.gpu", "power.draw", "memory.total", "pci.bus_id")


def _run(cmd: list[str], timeout: float = 10.0) -> str | None:
    """stdout of ``cmd``, or ``None`` when the tool is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    """Installed versions (from distribution metadata; no imports), ``None`` if absent."""
    dists = metadata.packages_distributions()
    out: dict[str, str | None] = {}
    for mod in PACKAGES:
        names = dists.get(mod, []) + [mod]  # e.g. cupy ships as cupy-cuda12x
        version = None
        for name in names:
            try:
                version = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
        if version is None and mod == "vyre":
            try:  # an in-place build of the checkout has no distribution metadata
                import vyre

                version = getattr(vyre, "__version__", None)
            except Exception:
                version = None
        out[mod] = version
    return out


def gpu_info() -> list[dict[str, Any]]:
    """One dict per GPU from ``nvidia-smi --query-gpu`` (clocks in MHz, power in W); with a
    reduced field set if this nvidia-smi rejects a field, and names from PyCUDA (``cuInit``
    only, no context) when there is no nvidia-smi at all."""
    for fields in (_SMI_FIELDS, ("name", "driver_version")):
        text = _run(["nvidia-smi", f"--query-gpu={','.join(fields)}",
                     "--format=csv,noheader,nounits"])
        if text:
            gpus = []
            for line in text.strip().splitlines():
                values = [v.strip() for v in line.split(",")]
                if len(values) == len(fields):
                    gpus.append({k.replace(".", "_"): (None if v in ("[N/A]", "N/A", "") else v)
                                 for k, v in zip(fields, values, strict=True)})
            return gpus
    try:
        import pycuda.driver as drv

        drv.init()
        return [{"name": drv.Device(i).name(), "source": "pycuda"}
                for i in range(drv.Device.count())]
    except Exception:
        return []


def cuda_versions() -> dict[str, Any]:
    """Driver CUDA version (nvidia-smi's banner, else the driver API), and what PyCUDA /
    CuPy were built against, read without creating a context."""
    out: dict[str, Any] = {"driver_cuda": None, "pycuda_cuda": None, "cupy_runtime": None}
    banner = _run(["nvidia-smi"])
    if banner and "CUDA Version:" in banner:
        out["driver_cuda"] = banner.split("CUDA Version:")[1].split()[0].strip("|")
    try:
        import pycuda.driver as drv

        out["pycuda_cuda"] = ".".join(map(str, drv.get_version()))
        if out["driver_cuda"] is None:
            v = drv.get_driver_version()
            out["driver_cuda"] = f"{v // 1000}.{(v % 1000) // 10}"
    except Exception:
        pass
    try:
        import cupy

        v = cupy.cuda.runtime.runtimeGetVersion()
        out["cupy_runtime"] = f"{v // 1000}.{(v % 1000) // 10}"
    except Exception:
        pass
    return out


def cpu_info() -> dict[str, Any]:
    """CPU model, logical CPU count, CPUs this process may use, and frequency governor."""
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    governor = None
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", encoding="utf-8") as f:
            governor = f.read().strip()
    except OSError:
        pass
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"model": model or platform.processor() or None, "count": os.cpu_count(),
            "usable": usable, "governor": governor, "loadavg": list(load) if load else None}


def git_info() -> dict[str, Any]:
    """Commit of the checkout vyre was imported from, and whether it had local changes."""
    try:
        import vyre

        root = os.path.dirname(os.path.dirname(os.path.abspath(vyre.__file__)))
    except Exception:
        root = os.getcwd()
    given = os.environ.get("VYRE_BENCH_COMMIT")
    if given:  # a copied tree whose .git is not the code's (a remote machine): say so
        return {"commit": given.strip(), "dirty": None, "source": "VYRE_BENCH_COMMIT"}
    commit = _run(["git", "-C", root, "rev-parse", "HEAD"])
    if not commit:
        return {"commit": None, "dirty": None}
    status = _run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"])
    return {"commit": commit.strip(), "dirty": bool(status and status.strip())}


def timer_info() -> dict[str, Any]:
    """perf_counter's resolution and the median cost of one ``perf_counter_ns()`` call."""
    info = time.get_clock_info("perf_counter")
    now = time.perf_counter_ns
    deltas = []
    for _ in range(2001):
        a = now()
        b = now()
        deltas.append(b - a)
    deltas.sort()
    return {"clock": "perf_counter_ns", "implementation": info.implementation,
            "resolution_ns": info.resolution * 1e9, "call_overhead_ns": deltas[len(deltas) // 2]}


def collect(argv: list[str] | None = None) -> dict[str, Any]:
    """Everything above, plus Python, OS, the command line and the UTC date."""
    argv = list(sys.argv if argv is None else argv)
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(argv),
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_info(),
        "gpus": gpu_info(),
        "cuda": cuda_versions(),
        "packages": package_versions(),
        "git": git_info(),
        "timer": timer_info(),
    }


#: fields of a per-suite snapshot (``--format=csv,noheader,nounits``); newer drivers call the
#: throttle reasons "clocks_event_reasons" and keep the old name as an alias, older ones
#: know only the old name
_CLOCK_FIELDS = ("clocks.sm", "clocks.mem", "clocks_throttle_reasons.active",
                 "temperature.gpu", "power.draw")
_CLOCK_FIELDS_NEW = ("clocks.sm", "clocks.mem", "clocks_event_reasons.active",
                     "temperature.gpu", "power.draw")
#: throttle-reason bits that slow a running GPU (NVML's nvmlClocksThrottleReason*): software
#: power cap, hardware slowdown, software / hardware thermal slowdown, power brake. Idle (0x1),
#: the application-clocks setting (0x2) and the display clock (0x200) are not a slowdown.
THROTTLE_BITS = {0x4: "power cap", 0x8: "hardware slowdown", 0x20: "sync boost",
                 0x40: "software thermal slowdown", 0x80: "hardware thermal slowdown",
                 0x100: "power brake"}
_IDLE_BIT = 0x1
#: a clock that moved by more than this fraction between two busy snapshots is flagged
CLOCK_MOVE_FRACTION = 0.10


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:  # "[N/A]"
        return None


def gpu_clocks(runner=None) -> list[dict[str, Any]]:
    """SM and memory clock (MHz), active throttle reasons (bit mask), temperature (C) and
    power (W) of every GPU, from ``nvidia-smi``; ``[]`` where there is none."""
    run = runner or _run
    for fields in (_CLOCK_FIELDS, _CLOCK_FIELDS_NEW):
        text = run(["nvidia-smi", f"--query-gpu={','.join(fields)}",
                    "--format=csv,noheader,nounits"])
        if not text:
            continue
        out = []
        for line in text.strip().splitlines():
            v = [x.strip() for x in line.split(",")]
            if len(v) != len(fields):
                continue
            reasons = None
            try:
                reasons = int(v[2], 16) if v[2].lower().startswith("0x") else int(v[2])
            except ValueError:
                pass
            out.append({"clocks_sm": _num(v[0]), "clocks_mem": _num(v[1]),
                        "throttle_reasons": reasons, "temperature_gpu": _num(v[3]),
                        "power_draw": _num(v[4])})
        if out:
            return out
    return []


def snapshot(runner=None) -> dict[str, Any]:
    """What may change during a run: GPU clocks / throttling and the host's load average."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "loadavg": list(load) if load else None, "gpus": gpu_clocks(runner)}


def throttle_words(mask: int | None) -> list[str]:
    """The slowdown reasons set in an NVML throttle-reason mask, in words."""
    if not mask:
        return []
    return [w for bit, w in THROTTLE_BITS.items() if mask & bit]


def clocks_moved(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Why the GPU's speed may have changed between two snapshots ('' when it did not seem
    to): a slowdown reason active at either end, or the SM / memory clock differing by more
    than :data:`CLOCK_MOVE_FRACTION` while the GPU was busy at both ends."""
    why: list[str] = []
    for i, (a, b) in enumerate(zip(before.get("gpus") or [], after.get("gpus") or [],
                                        strict=False)):
        for when, snap in (("before", a), ("after", b)):
            words = throttle_words(snap.get("throttle_reasons"))
            if words:
                why.append(f"GPU {i} {when}: {', '.join(words)}")
        idle = any((s.get("throttle_reasons") or 0) & _IDLE_BIT for s in (a, b))
        for key, label in (("clocks_sm", "SM"), ("clocks_mem", "memory")):
            x, y = a.get(key), b.get(key)
            if x and y and not idle and abs(y - x) / max(x, y) > CLOCK_MOVE_FRACTION:
                why.append(f"GPU {i} {label} clock {x:g} -> {y:g} MHz")
    return "; ".join(why)
