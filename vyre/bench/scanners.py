"""CPU scanners that count literal patterns, as baselines for the ingest suite (docs/bench.md).

Each counter answers the question vyre's per-pattern scan answers: for every pattern (its
id is its position in the list; a pattern given twice counts under both ids), how many
times does it occur in the data, *every* occurrence, overlapping ones included (``aa``
occurs 3 times in ``aaaa``) -- the count of byte positions where the pattern ends, which
is what an Aho-Corasick automaton reports.

* :class:`HyperscanCounter` (PyPI ``hyperscan``): one block-mode database of all patterns
  (ids = positions; each byte written ``\\xHH`` so NUL and every other byte is a literal),
  default flags, which report every match end of every pattern. Files are mmapped (page
  cache, no copy) and cut into pieces scanned by a thread per host core: the binding
  releases the GIL inside ``hs_scan`` (measured: another thread keeps running meanwhile).
  A piece re-reads the ``longest - 1`` bytes before it and counts only matches that end in
  its own bytes, so counts are exact.
* :class:`AhoCorasickCounter` (PyPI ``pyahocorasick``): one automaton (byte strings as
  Latin-1 text, one character per byte), ``iter`` reports every overlapping match. One
  thread: the iteration holds the GIL.
* :class:`RipgrepCounter` (``rg`` on the PATH): ``rg -F --count-matches`` per pattern.
  ripgrep counts *non-overlapping* matches, line by line; its counts equal the others only
  for patterns that cannot overlap themselves (no proper prefix that is also a suffix) and
  contain no line break. :attr:`RipgrepCounter.comparable` says which; only those are
  compared. Patterns it cannot take (not printable ASCII) are not run (count 0, not
  comparable).

All return ``numpy.uint64`` arrays, one count per pattern id.
"""
from __future__ import annotations

import mmap
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["AhoCorasickCounter", "HyperscanCounter", "RipgrepCounter", "available",
           "host_cores", "literal_patterns", "self_overlapping"]

#: bytes a hyperscan piece owns (it re-reads ``longest - 1`` before them)
PIECE_BYTES = 16 << 20


def host_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def literal_patterns(patterns: Iterable[bytes]) -> list[bytes]:
    """The patterns as a list of non-empty ``bytes`` (ValueError / TypeError otherwise)."""
    out = []
    for i, p in enumerate(patterns):
        if not isinstance(p, (bytes, bytearray, memoryview)):
            raise TypeError(f"pattern {i} is a {type(p).__name__}, not bytes")
        b = bytes(p)
        if not b:
            raise ValueError(f"pattern {i} is empty")
        out.append(b)
    if not out:
        raise ValueError("no patterns")
    return out


def self_overlapping(pattern: bytes) -> bool:
    """Can two occurrences of ``pattern`` overlap (a proper prefix equals a suffix)?"""
    return any(pattern[:k] == pattern[-k:] for k in range(1, len(pattern)))


def available() -> dict[str, str | None]:
    """Which counters can run here: ``{name: None}`` or ``{name: why not}``."""
    out: dict[str, str | None] = {}
    for name, module in (("hyperscan", "hyperscan"), ("pyahocorasick", "ahocorasick")):
        try:
            __import__(module)
            out[name] = None
        except Exception as exc:  # noqa: BLE001  # ImportError, or a library failing to load
            out[name] = f"{module} not importable ({type(exc).__name__}: {exc})"
    out["ripgrep"] = None if shutil.which("rg") else "rg is not on the PATH"
    return out


def _file_views(paths: Sequence[str]) -> tuple[list[Any], list[memoryview]]:
    """Read-only mmaps of the files (page cache, no copy) and their byte views; an empty
    file is an empty view (mmap refuses size 0)."""
    maps, views = [], []
    for path in paths:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                views.append(memoryview(b""))
                continue
            m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        maps.append(m)
        views.append(memoryview(m))
    return maps, views


def _close_views(maps: list[Any], views: list[memoryview]) -> None:
    for v in views:
        v.release()
    for m in maps:
        m.close()


class _BufferCounter:
    """A counter over buffers (``count_buffers``) that counts files through their mmaps."""

    def count_buffers(self, views: Sequence[Any]) -> np.ndarray:
        raise NotImplementedError

    def count_files(self, paths: Sequence[str]) -> np.ndarray:
        maps, views = _file_views(paths)
        try:
            return self.count_buffers(views)
        finally:
            _close_views(maps, views)


class HyperscanCounter(_BufferCounter):
    """Per-pattern counts with Hyperscan on ``threads`` threads (default: every host core).

    ``count_buffers`` / ``count_files`` return the counts summed over all the data."""

    name = "hyperscan"

    def __init__(self, patterns: Iterable[bytes], *, ignore_case: bool = False,
                 threads: int | None = None, piece_bytes: int = PIECE_BYTES) -> None:
        import hyperscan

        self._hs = hyperscan
        self.patterns = literal_patterns(patterns)
        self.threads = max(1, threads or host_cores())
        self.piece_bytes = max(1, piece_bytes)
        self.context = max(len(p) for p in self.patterns) - 1
        flags = hyperscan.HS_FLAG_CASELESS if ignore_case else 0
        self.db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self.db.compile(expressions=[b"".join(b"\\x%02x" % c for c in p) for p in self.patterns],
                        ids=list(range(len(self.patterns))), elements=len(self.patterns),
                        flags=flags)
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None

    def _scratch(self) -> Any:
        s = getattr(self._local, "scratch", None)
        if s is None:  # a scratch space per thread: hyperscan's are not shared
            s = self._local.scratch = self._hs.Scratch(self.db)
        return s

    def _piece(self, view: memoryview, lo: int, hi: int) -> list[int]:
        """Counts of the matches that end in ``view[lo:hi]`` (re-reading the context)."""
        c = min(self.context, lo)
        counts = [0] * len(self.patterns)

        def on_match(pid: int, start: int, end: int, flags: int, ctx: Any) -> None:
            if end > c:  # ends in the piece's own bytes; earlier ones are the last piece's
                counts[pid] += 1

        self.db.scan(view[lo - c:hi], match_event_handler=on_match,  # type: ignore[type-var]
                     scratch=self._scratch())
        return counts

    def count_buffers(self, views: Sequence[Any]) -> np.ndarray:
        """Counts over the bytes of every buffer in ``views``, summed."""
        mvs = [memoryview(v).cast("B") for v in views]
        tasks = [(v, lo, min(len(v), lo + self.piece_bytes))
                 for v in mvs for lo in range(0, len(v), self.piece_bytes)]
        total = np.zeros(len(self.patterns), np.uint64)
        if self.threads == 1 or len(tasks) <= 1:
            results = [self._piece(*t) for t in tasks]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="hs-count")
            results = list(self._pool.map(lambda t: self._piece(*t), tasks))
        for r in results:
            total += np.asarray(r, np.uint64)
        return total

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class AhoCorasickCounter(_BufferCounter):
    """Per-pattern counts with pyahocorasick (one thread), every overlapping match."""

    name = "pyahocorasick"

    def __init__(self, patterns: Iterable[bytes], *, ignore_case: bool = False,
                 piece_bytes: int = PIECE_BYTES) -> None:
        import ahocorasick

        self.patterns = literal_patterns(patterns)
        self.ignore_case = ignore_case
        self.piece_bytes = max(1, piece_bytes)
        self.context = max(len(p) for p in self.patterns) - 1
        self.automaton = ahocorasick.Automaton()
        ids: dict[str, tuple[int, ...]] = {}
        for i, p in enumerate(self.patterns):
            key = (p.lower() if ignore_case else p).decode("latin-1")
            ids[key] = ids.get(key, ()) + (i,)  # a duplicate counts under each id
        for key, value in ids.items():
            self.automaton.add_word(key, value)
        self.automaton.make_automaton()

    def count_buffers(self, views: Sequence[Any]) -> np.ndarray:
        counts = [0] * len(self.patterns)
        for v in views:
            mv = memoryview(v).cast("B")
            for lo in range(0, len(mv), self.piece_bytes):
                c = min(self.context, lo)
                raw = bytes(mv[lo - c:min(len(mv), lo + self.piece_bytes)])
                text = (raw.lower() if self.ignore_case else raw).decode("latin-1")
                for end, pids in self.automaton.iter(text):
                    if end >= c:  # ends in the piece's own bytes
                        for pid in pids:
                            counts[pid] += 1
        return np.asarray(counts, np.uint64)

    def close(self) -> None:
        pass


class RipgrepCounter:
    """``rg -F --count-matches`` per pattern over files (ripgrep's own threads).

    :attr:`comparable` marks the patterns whose ripgrep count means the same as the
    others' (see the module docstring); the rest are not run and count 0."""

    name = "ripgrep"

    def __init__(self, patterns: Iterable[bytes], *, ignore_case: bool = False,
                 threads: int | None = None, rg: str | None = None) -> None:
        exe = rg or shutil.which("rg")
        if exe is None:
            raise FileNotFoundError("rg is not on the PATH")
        self.rg = exe
        self.patterns = literal_patterns(patterns)
        self.ignore_case = ignore_case
        self.threads = max(1, threads or host_cores())
        self.comparable = np.array([_rg_comparable(p, ignore_case) for p in self.patterns],
                                   dtype=bool)

    def count_files(self, paths: Sequence[str]) -> np.ndarray:
        counts = np.zeros(len(self.patterns), np.uint64)
        if not paths:
            return counts
        for i, p in enumerate(self.patterns):
            if not self.comparable[i]:
                continue
            cmd = [self.rg, "--no-config", "-F", "-a", "--count-matches", "--with-filename",
                   "--null", "-j", str(self.threads), "--no-ignore", "--hidden"]
            if self.ignore_case:
                cmd += ["-i", "--no-unicode"]
            cmd += ["-e", p.decode("ascii"), "--", *paths]
            done = subprocess.run(cmd, capture_output=True, check=False)
            if done.returncode not in (0, 1):  # 1: no match anywhere
                raise RuntimeError(f"rg exited {done.returncode}: "
                                   f"{done.stderr.decode(errors='replace').strip()}")
            for line in done.stdout.splitlines():
                _, _, n = line.rpartition(b"\0")
                counts[i] += np.uint64(int(n))
        return counts

    def close(self) -> None:
        pass


def _rg_comparable(p: bytes, ignore_case: bool) -> bool:
    """Does ripgrep's count of ``p`` mean every occurrence? Printable ASCII (what can be
    passed as a literal), no line break, no self-overlap (case folded when ignoring case)."""
    if not all(0x20 <= c < 0x7F for c in p):
        return False
    return not self_overlapping(p.lower() if ignore_case else p)
