"""The pipeline cache (vyre/ops/cache.py): keys, memory and disk hits, verified loads,
atomic writes, the size bound, telemetry."""
from __future__ import annotations

import os
import threading

import pytest

from vyre import InvalidTypeError
from vyre.ops.cache import PipelineCache, cache_key, default_cache


def counting_build(payload: bytes):
    calls = []

    def build(workdir: str) -> bytes:
        assert os.path.isdir(workdir)
        calls.append(workdir)
        return payload

    return build, calls


def test_key_is_order_free_and_sensitive_to_every_part():
    a = cache_key({"source": "x", "flags": ["-O2"], "blob": b"\x00\x01"})
    assert a == cache_key({"blob": b"\x00\x01", "flags": ["-O2"], "source": "x"})
    assert a != cache_key({"source": "x", "flags": ["-O3"], "blob": b"\x00\x01"})
    assert a != cache_key({"source": "x", "flags": ["-O2"], "blob": b"\x00\x02"})
    assert len(a) == 64 and int(a, 16) >= 0
    with pytest.raises(InvalidTypeError):
        cache_key({"x": object()})
    with pytest.raises(InvalidTypeError):
        cache_key(["not", "a", "dict"])  # type: ignore[arg-type]


def test_miss_then_memory_hit_then_disk_hit(tmp_path):
    build, calls = counting_build(b"artefact-1")
    c = PipelineCache(str(tmp_path))
    parts = {"kind": "t", "source": "a"}
    assert c.get_or_build(parts, build) == b"artefact-1"
    assert c.last["source"] == "build" and len(calls) == 1
    assert c.get_or_build(parts, build) == b"artefact-1"
    assert c.last["source"] == "memory" and len(calls) == 1
    fresh = PipelineCache(str(tmp_path))  # another process: only the disk
    assert fresh.get_or_build(parts, build) == b"artefact-1"
    assert fresh.last["source"] == "disk" and len(calls) == 1
    s = c.stats()
    assert (s["misses"], s["hits_memory"], s["hits_disk"]) == (1, 1, 0)
    assert s["compile_s"] > 0 and s["bytes_on_disk"] > len(b"artefact-1")
    assert fresh.stats()["hits_disk"] == 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
def test_a_corrupt_entry_is_rebuilt_not_loaded(tmp_path, damage):
    build, calls = counting_build(b"good bytes " * 100)
    parts = {"kind": "t", "source": damage}
    c = PipelineCache(str(tmp_path))
    c.get_or_build(parts, build)
    path = c.path(c.key(parts))
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if damage == "flip":
        data[-5] ^= 0x40
    elif damage == "truncate":
        data = data[:-7]
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"x" * len(data))
    with open(path, "wb") as f:
        f.write(bytes(data))
    fresh = PipelineCache(str(tmp_path))
    assert fresh.get_or_build(parts, build) == b"good bytes " * 100
    assert fresh.last["source"] == "build" and len(calls) == 2
    assert fresh.stats()["corrupt"] == 1
    again = PipelineCache(str(tmp_path))  # the rebuilt entry is whole again
    assert again.get_or_build(parts, build) == b"good bytes " * 100
    assert again.last["source"] == "disk"


def test_a_failing_build_stores_nothing(tmp_path):
    c = PipelineCache(str(tmp_path))

    def bad(workdir):
        raise RuntimeError("compiler exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        c.get_or_build({"k": 1}, bad)
    assert not os.path.exists(c.path(c.key({"k": 1})))
    with pytest.raises(InvalidTypeError):
        c.get_or_build({"k": 2}, lambda w: "not bytes")  # type: ignore[arg-type,return-value]


def test_writes_leave_no_temporary_files_and_concurrent_builders_agree(tmp_path):
    parts = {"kind": "race"}
    results = []

    def worker():
        c = PipelineCache(str(tmp_path))
        results.append(c.get_or_build(parts, lambda w: b"same artefact" * 1000))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"same artefact" * 1000] * 6
    names = [n for _, _, files in os.walk(tmp_path) for n in files]
    assert names == [cache_key(parts) + ".vyc"]


def test_the_disk_part_is_bounded_least_recently_used_first(tmp_path):
    c = PipelineCache(str(tmp_path), max_bytes=3 * 1100)
    blob = b"z" * 1000
    for i in range(3):
        c.get_or_build({"i": i}, lambda w: blob)
    # entry 1 made the least recently used
    os.utime(c.path(c.key({"i": 1})), (1, 1))
    c.get_or_build({"i": 3}, lambda w: blob)
    present = {i for i in range(4) if os.path.exists(c.path(c.key({"i": i})))}
    assert present == {0, 2, 3}
    assert c.stats()["evicted"] == 1 and c.stats()["bytes_on_disk"] <= 3 * 1100
    small = PipelineCache(str(tmp_path / "none"), max_bytes=0)  # 0: memory only
    small.get_or_build({"i": 9}, lambda w: blob)
    assert small.stats()["bytes_on_disk"] == 0
    assert small.get_or_build({"i": 9}, lambda w: b"") == blob


def test_an_unwritable_directory_degrades_to_memory(tmp_path):
    target = tmp_path / "file-not-dir"
    target.write_bytes(b"")
    c = PipelineCache(str(target))
    assert c.get_or_build({"k": 1}, lambda w: b"abc") == b"abc"
    assert c.stats()["disk_errors"] >= 1
    assert c.get_or_build({"k": 1}, lambda w: b"other") == b"abc"


def test_default_cache_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VYRE_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("VYRE_CACHE_MAX_BYTES", "12345")
    c = default_cache()
    assert c.directory == str(tmp_path / "a") and c.max_bytes == 12345
    assert default_cache() is c
    monkeypatch.setenv("VYRE_CACHE_DIR", str(tmp_path / "b"))
    assert default_cache().directory == str(tmp_path / "b")
    monkeypatch.setenv("VYRE_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="Fix:"):
        default_cache()
