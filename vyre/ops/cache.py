"""The pipeline cache: compiled artefacts (CPU shared objects, GPU modules), content-addressed.

An artefact is keyed by a hash of everything that affects it, passed as ``key_parts``: a dict
of JSON-like values (str, int, float, bool, None, lists, dicts; ``bytes`` are hashed). The
builds put in the sources, the headers, the compiler's identity and flags, the target and
the vyre version, so a change to any of them is a different key and never a stale hit.

Use::

    from vyre.ops.cache import default_cache

    def build(workdir: str) -> bytes:          # a scratch directory, removed afterwards
        ...compile into workdir...
        return artefact_bytes

    blob = default_cache().get_or_build({"kind": "cuda-module", "source": src, ...}, build)

``get_or_build(key_parts, build) -> bytes`` returns the cached bytes (memory first, then
disk) or calls ``build`` once and stores what it returns; ``key(key_parts)`` is the hex key;
``stats()`` the telemetry (``hits_memory``, ``hits_disk``, ``misses``, ``compile_s``,
``corrupt``, ``evicted``, ``bytes_on_disk``) and ``last`` what the latest call did.

Disk: one file per entry, ``<dir>/<key[:2]>/<key>.vyc``, under ``VYRE_CACHE_DIR`` (default
``$XDG_CACHE_HOME/vyre`` or ``~/.cache/vyre``). An entry is a header (magic, payload length,
SHA-256 of the payload) and the payload, written to a temporary file in the same directory
and moved into place with ``os.replace``: readers see the old entry, no entry, or the whole
new one, whether processes compile the same key at once or one is killed mid-write. Every
load checks the header and the hash; a corrupt entry is counted, removed and rebuilt. The
disk part is bounded (``VYRE_CACHE_MAX_BYTES``, default 512 MiB): after a write the least
recently used entries (by modification time, which a hit refreshes) are removed until the
total fits. A directory that cannot be written degrades to the memory cache, never an error.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from vyre.atomic_write import write_atomically
from vyre.errors import InvalidTypeError, InvalidValueError

__all__ = ["PipelineCache", "cache_key", "default_cache"]

_MAGIC = b"VYRECACHE\x01"
_HEADER = struct.Struct("<10sQ32s")  # magic, payload length, sha256(payload)
_SUFFIX = ".vyc"
_DEFAULT_MAX_BYTES = 512 << 20
_MEMORY_MAX_BYTES = 64 << 20
# a temporary file this old is left over by a killed writer: removed by the eviction pass
_STALE_TMP_S = 3600.0


def _canonical(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"sha256": hashlib.sha256(bytes(value)).hexdigest()}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidTypeError(f"cache key part {where} has a non-str key {k!r}",
                                       "use str keys in key_parts")
            out[k] = _canonical(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise InvalidTypeError(f"cache key part {where} is a {type(value).__name__}",
                           "key parts hold str, int, float, bool, None, bytes, lists and dicts")


def cache_key(key_parts: Mapping[str, Any]) -> str:
    """The hex SHA-256 of the canonical JSON of ``key_parts`` (key order does not matter)."""
    if not isinstance(key_parts, Mapping):
        raise InvalidTypeError(f"key_parts must be a dict, got {type(key_parts).__name__}",
                               "pass a dict of what affects the artefact")
    text = json.dumps(_canonical(key_parts, "key_parts"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _default_dir() -> str:
    explicit = os.environ.get("VYRE_CACHE_DIR")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vyre")


def _default_max_bytes() -> int:
    raw = os.environ.get("VYRE_CACHE_MAX_BYTES")
    if not raw:
        return _DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise InvalidValueError(f"VYRE_CACHE_MAX_BYTES={raw!r} is not an integer",
                                "set it to a byte count, e.g. 536870912") from None
    if value < 0:
        raise InvalidValueError(f"VYRE_CACHE_MAX_BYTES={value} is negative",
                                "set it to a byte count >= 0 (0 keeps nothing on disk)")
    return value


class PipelineCache:
    """Memory + disk cache of compiled artefacts (see the module docstring).

    Args:
        directory: where entries live; default ``VYRE_CACHE_DIR`` or the user's cache dir.
        max_bytes: bound of the disk part; default ``VYRE_CACHE_MAX_BYTES`` or 512 MiB.
        memory_max_bytes: bound of the in-process part (LRU).
    """

    def __init__(self, directory: str | None = None, max_bytes: int | None = None,
                 memory_max_bytes: int = _MEMORY_MAX_BYTES) -> None:
        self.directory = os.path.abspath(directory) if directory else _default_dir()
        self.max_bytes = _default_max_bytes() if max_bytes is None else int(max_bytes)
        if self.max_bytes < 0 or memory_max_bytes < 0:
            raise InvalidValueError("a cache bound is negative", "pass byte counts >= 0")
        self.memory_max_bytes = int(memory_max_bytes)
        self._memory: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._memory_bytes = 0
        self._lock = threading.RLock()
        self._stats = {"hits_memory": 0, "hits_disk": 0, "misses": 0, "compile_s": 0.0,
                       "corrupt": 0, "evicted": 0, "disk_errors": 0}
        #: what the latest get_or_build did: {"key", "source": memory|disk|build, "seconds"}
        self.last: dict[str, Any] = {}

    # ---------------------------------------------------------------- public
    def key(self, key_parts: Mapping[str, Any]) -> str:
        """The entry key of ``key_parts`` (hex SHA-256)."""
        return cache_key(key_parts)

    def path(self, key: str) -> str:
        """The file of entry ``key`` (which may not exist)."""
        return os.path.join(self.directory, key[:2], key + _SUFFIX)

    def get_or_build(self, key_parts: Mapping[str, Any], build: Callable[[str], bytes]) -> bytes:
        """The artefact of ``key_parts``: from memory, from disk (verified), or from
        ``build(workdir)``, which must return the artefact's bytes (exceptions propagate and
        nothing is stored)."""
        key = self.key(key_parts)
        t0 = time.perf_counter()
        with self._lock:
            blob = self._memory.get(key)
            if blob is not None:
                self._memory.move_to_end(key)
                self._stats["hits_memory"] += 1
                self.last = {"key": key, "source": "memory", "seconds": time.perf_counter() - t0}
                return blob
            blob = self._load(key)
            if blob is not None:
                self._stats["hits_disk"] += 1
                self._remember(key, blob)
                self.last = {"key": key, "source": "disk", "seconds": time.perf_counter() - t0}
                return blob
            self._stats["misses"] += 1
            with tempfile.TemporaryDirectory(prefix="vyre-build-") as workdir:
                blob = build(workdir)
            if not isinstance(blob, (bytes, bytearray)):
                raise InvalidTypeError(f"the build returned a {type(blob).__name__}, not bytes",
                                       "return the artefact's bytes from build()")
            blob = bytes(blob)
            seconds = time.perf_counter() - t0
            self._stats["compile_s"] += seconds
            self._store(key, blob)
            self._remember(key, blob)
            self.last = {"key": key, "source": "build", "seconds": seconds}
            return blob

    def stats(self) -> dict[str, Any]:
        """Telemetry: hits (memory / disk), misses, total build seconds, corrupt entries
        rebuilt, entries evicted, disk errors, entries in memory, bytes on disk."""
        with self._lock:
            out: dict[str, Any] = dict(self._stats)
            out["memory_entries"] = len(self._memory)
            out["bytes_on_disk"] = sum(size for _, size, _ in self._entries())
            out["directory"] = self.directory
            return out

    # ---------------------------------------------------------------- memory
    def _remember(self, key: str, blob: bytes) -> None:
        if len(blob) > self.memory_max_bytes:
            return
        self._memory[key] = blob
        self._memory_bytes += len(blob)
        while self._memory_bytes > self.memory_max_bytes:
            _, old = self._memory.popitem(last=False)
            self._memory_bytes -= len(old)

    # ---------------------------------------------------------------- disk
    def _load(self, key: str) -> bytes | None:
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError:
            self._stats["disk_errors"] += 1
            return None
        blob = _unwrap(data)
        if blob is None:  # torn, truncated or altered: never load it
            self._stats["corrupt"] += 1
            try:
                os.unlink(path)
            except OSError:
                pass
            return None
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        return blob

    def _store(self, key: str, blob: bytes) -> None:
        if self.max_bytes == 0 or len(blob) + _HEADER.size > self.max_bytes:
            return
        path = self.path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomically(path, [_HEADER.pack(_MAGIC, len(blob), hashlib.sha256(blob).digest()),
                                    blob], suffix=_SUFFIX)
        except OSError:
            self._stats["disk_errors"] += 1
            return
        self._evict(keep=path)

    def _entries(self) -> list[tuple[str, int, float]]:
        """(path, size, mtime) of every entry on disk."""
        out: list[tuple[str, int, float]] = []
        try:
            subdirs = os.listdir(self.directory)
        except OSError:
            return out
        for sub in subdirs:
            d = os.path.join(self.directory, sub)
            if len(sub) != 2 or not os.path.isdir(d):
                continue
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                p = os.path.join(d, name)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                if name.startswith(".tmp-"):
                    if time.time() - st.st_mtime > _STALE_TMP_S:
                        try:
                            os.unlink(p)
                        except OSError:
                            pass
                    continue
                if name.endswith(_SUFFIX):
                    out.append((p, st.st_size, st.st_mtime))
        return out

    def _evict(self, keep: str) -> None:
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return
        for path, size, _ in sorted(entries, key=lambda e: e[2]):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            try:
                os.unlink(path)
            except OSError:
                continue
            total -= size
            self._stats["evicted"] += 1


def _unwrap(data: bytes) -> bytes | None:
    """The payload of an entry file, or None when it is not a whole, unaltered entry."""
    if len(data) < _HEADER.size:
        return None
    magic, length, digest = _HEADER.unpack_from(data)
    payload = data[_HEADER.size:]
    if magic != _MAGIC or length != len(payload) or hashlib.sha256(payload).digest() != digest:
        return None
    return payload


_DEFAULT: PipelineCache | None = None
_DEFAULT_LOCK = threading.Lock()


def default_cache() -> PipelineCache:
    """The process's cache for the current ``VYRE_CACHE_DIR`` / ``VYRE_CACHE_MAX_BYTES`` (a new
    one when they changed since the last call)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        directory, max_bytes = _default_dir(), _default_max_bytes()
        if _DEFAULT is None or _DEFAULT.directory != directory or _DEFAULT.max_bytes != max_bytes:
            _DEFAULT = PipelineCache(directory, max_bytes)
        return _DEFAULT
