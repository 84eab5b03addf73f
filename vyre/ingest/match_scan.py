"""``GpuStream.scan(..., per_pattern=True / matches=True)``: DFA_MATCH slots over the chunks
(docs/ingest.md, "Per-pattern counts and match records"; docs/spec.md §3.2).

The chunk pipeline is the plain scan's (same staging slots, context re-read, slices); only the
slots differ. Each slot publishes DFA_MATCH instead of DFA_SCAN, which still adds the positions
to the slot's observable and in the same pass adds one per match to the chunk's per-pattern
counters and appends records to its slice's record region, all in one *match buffer* (u32
words; device memory on CUDA, read back once a slot finished: thousands of warps adding to a
few counters in host memory serialize on the bus, ~0.8 us per match on the H200)::

    [ counters: depth x P ][ record regions: depth x (slices + 1) x (1 + 2 * cap) ]

``P`` is the number of patterns. Counter row ``r`` is words ``r*P .. r*P+P-1``; a source
holds one row while any chunk of it is in flight (every slice of its chunks adds there,
atomically), and the host reads the row when the source's last chunk in flight is done (or
after 2**31 bytes, before a u32 could wrap), so a big file costs one read, not one per
chunk: a read of device memory is a synchronous copy. At most ``depth`` chunks are in
flight, so ``depth`` rows always suffice. Where ``depth`` chunks together reach 2**32 bytes
(so could add 2**32 to a counter between two readings) each chunk counts into its scan
slot's row instead, read once that chunk is done. Slice ``j`` of scan slot ``s`` records into region
``s*(slices+1)+j``:
``[records written, (pattern id, end offset from a2) * cap]``. The host never writes the
buffer while slots run: like the observables, counters are read as the difference since the
last reading (u32 arithmetic; one chunk adds below 2**32 per pattern, since a pattern ends at
most once per byte), and a region's records are read after its slot is DONE. Record offsets
are relative to the slot's a2; the host adds the file offset of that byte, so offsets are
64-bit whatever the source size. A slice's region holds up to ``cap`` of its matches (which
ones, when it has more, is unspecified: lane-parts append concurrently, docs/spec.md §3.2);
every match not returned is counted in ``dropped``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vyre.errors import InvalidTypeError, InvalidValueError
from vyre.ingest.args import check_int
from vyre.ingest.results import MATCH_DTYPE, ScanResult

if TYPE_CHECKING:
    from vyre.ingest.pipeline import Job

__all__ = ["MatchOptions", "cap_matches", "match_slices"]

_SLICE_BYTES = 16 << 10  # default scan slice: long enough that the per-slot cost is noise


def match_slices(chunk_bytes: int) -> int:
    """Scan slots per chunk of ``chunk_bytes`` (1..64 slices of about 16 KiB): the default
    (DFA_SCAN and DFA_MATCH alike) where no CUDA assist splits long scans."""
    return max(1, min(64, chunk_bytes // _SLICE_BYTES))


@dataclass(frozen=True)
class MatchOptions:
    """What a scan asked for (see :meth:`vyre.ingest.stream.GpuStream.scan`)."""

    matches: bool
    max_matches: int | None
    first_per_pattern: int | None


def in_order(rec: np.ndarray) -> bool:
    """Whether ``rec`` is sorted by offset, then pattern (one pass, no sort)."""
    o, p = rec["offset"], rec["pattern"]
    return bool(np.all((o[1:] > o[:-1]) | ((o[1:] == o[:-1]) & (p[1:] >= p[:-1]))))


def sorted_records(pairs: np.ndarray, base: int) -> np.ndarray:
    """The ``(pattern, offset from base)`` word pairs one scan slot wrote (in the order its
    lanes found them), as records sorted by offset then pattern: one sort of a 64-bit key
    (offset in the high word) instead of a two-key sort of the whole source at its end."""
    key = (pairs[:, 1].astype(np.uint64) << np.uint64(32)) | pairs[:, 0].astype(np.uint64)
    key.sort()
    rec = np.empty(key.size, dtype=MATCH_DTYPE)
    rec["pattern"] = key & np.uint64(0xFFFFFFFF)
    rec["offset"] = (key >> np.uint64(32)) + np.uint64(base)
    return rec


def cap_matches(rec: np.ndarray, max_matches: int | None,
                first_per_pattern: int | None) -> np.ndarray:
    """``rec`` sorted by offset then pattern, with at most ``first_per_pattern`` records per
    pattern (the earliest) and then at most ``max_matches`` in all (the earliest)."""
    if rec.size and not in_order(rec):  # slots' sorted runs, concatenated in file order
        rec = rec[np.lexsort((rec["pattern"], rec["offset"]))]
    if first_per_pattern is not None and rec.size:
        by_pattern = np.argsort(rec["pattern"], kind="stable")  # offset order within a pattern
        pats = rec["pattern"][by_pattern]
        starts = np.r_[0, np.flatnonzero(np.diff(pats)) + 1]
        rank = np.arange(pats.size) - np.repeat(starts, np.diff(np.r_[starts, pats.size]))
        keep = np.zeros(rec.size, dtype=bool)
        keep[by_pattern[rank < first_per_pattern]] = True
        rec = rec[keep]
    if max_matches is not None:
        rec = rec[:max_matches]
    return rec


@dataclass
class _Acc:
    """One source's running totals."""

    per: np.ndarray
    parts: list[np.ndarray] = field(default_factory=list)
    held: int = 0


class MatchScan:
    """The publish/retire pair of one matching scan over a stream's staging (or mirror)
    slots, and the results per source once the pipeline has run."""

    def __init__(self, stream: Any, abi: dict, dfa: Any, opts: MatchOptions, slices: int,
                 record_budget: int, table: int, ids: int, buffer: tuple[int, Any]) -> None:
        self.stream, self.opts, self.slices = stream, opts, slices
        self.op = abi["OP_DFA_MATCH"]
        self.rec_words = abi["DFA_RECORD_WORDS"]
        self.npat = len(dfa.patterns)
        self.table, self.ids = table, ids
        self.cap = self.slice_cap(opts, slices, record_budget)
        self.rows = slices + 1
        self.region = 1 + self.rec_words * self.cap
        self.out_handle, self.raw = buffer
        raw = self.raw
        if isinstance(raw, np.ndarray):
            self.words: np.ndarray | None = raw[:self.nbytes(
                stream.depth, self.npat, slices, self.cap, self.rec_words)].view(np.uint32)
        else:  # device memory (CUDA): read back after each slot, see _read
            self.words = None
            self.backend = stream.mk.backend
        depth = stream.depth
        self.rec_base = depth * self.npat
        self.last = self._read(0, self.rec_base).reshape(depth, self.npat) \
            if self.npat else np.zeros((depth, 0), np.uint32)
        # counter rows: free ones, the row each source in flight holds, its chunks in flight
        # and the bytes published into the row since it was last read
        self.free_rows = list(range(depth - 1, -1, -1))
        self.row_of: dict[int, int] = {}
        self.in_flight: dict[int, int] = {}
        self.unread: dict[int, int] = {}
        self.read_every = max(0, (1 << 31) - depth * int(stream.chunk_bytes))
        # a row read at every retire still takes what all chunks of its source in flight
        # added since the last reading: up to depth chunks, which can reach 2**32. Then each
        # chunk counts into its scan slot's own row, read when that chunk is done.
        self.per_chunk = depth * int(stream.chunk_bytes) >= 1 << 32
        # scan slot -> file offset of each published row's a2 byte
        self.bases: dict[int, list[int]] = {}
        self.acc: dict[int, _Acc] = {}

    @staticmethod
    def slice_cap(opts: MatchOptions, slices: int, record_budget: int) -> int:
        """Records one slot may write: the chunk's budget over its slots. Not cut to
        ``max_matches``: a slot that fills keeps an unspecified subset of its matches, so
        the earliest ``max_matches`` are only known from regions that did not fill."""
        return max(1, record_budget // slices) if opts.matches else 0

    @staticmethod
    def nbytes(depth: int, npat: int, slices: int, cap: int, rec_words: int) -> int:
        """Bytes of the match buffer (layout in the module docstring)."""
        words = depth * npat + depth * (slices + 1) * (1 + rec_words * cap)
        if words >= 1 << 32:
            raise InvalidValueError(
                f"the match buffer would need {words} words (over 2**32)",
                "lower depth, the number of patterns, or the record budget (match_records)")
        return 4 * words

    def args(self, slot: int, j: int, row: list[int], counters: int) -> list[int]:
        """DFA_MATCH args of row ``j`` of scan slot ``slot`` counting into counter row
        ``counters`` (:meth:`published`); ``row`` is the DFA_SCAN row
        ``[table, data, a2, a3, a4, obs, a6]`` the plain scan would publish."""
        region = self.rec_base + (slot * self.rows + j) * self.region
        return [self.table, row[1], row[2], row[3], self.ids, row[5], row[6],
                self.out_handle, counters * self.npat, self.npat, region, self.cap]

    def published(self, slot: int, bases: list[int], job: Any = None, nbytes: int = 0) -> int:
        """A chunk of ``job`` (``nbytes`` bytes) goes out on scan slot ``slot``, its slices'
        ``a2`` at file offsets ``bases``: the counter row its slots count into."""
        self.bases[slot] = bases
        if self.per_chunk:
            return slot
        key = id(job)
        row = self.row_of.get(key)
        if row is None:
            if not self.free_rows:  # more sources in flight than chunks: a pipeline bug
                raise RuntimeError("match counters: every row is held")
            row = self.row_of[key] = self.free_rows.pop()
            self.unread[row] = 0
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        self.unread[row] += nbytes
        return row

    def _acc(self, job: Job) -> _Acc:
        acc = self.acc.get(id(job))
        if acc is None:
            acc = self.acc[id(job)] = _Acc(np.zeros(self.npat, dtype=np.uint64))
        return acc

    def _read_row(self, row: int, acc: _Acc) -> None:
        if self.npat:
            now = self._read(row * self.npat, self.npat)
            acc.per += (now - self.last[row]).astype(np.uint64)  # u32 wrap-around
            self.last[row] = now
        self.unread[row] = 0

    def _read(self, word: int, n: int) -> np.ndarray:
        """A copy of words ``[word, word + n)`` of the match buffer."""
        if self.words is not None:
            return self.words[word:word + n].copy()
        out = np.empty(n, np.uint32)
        if n:
            self.backend.copy_from_device(self.raw, 4 * word, out)
        return out

    def _retire_row(self, key: int, acc: _Acc) -> None:
        row = self.row_of[key]
        self.in_flight[key] -= 1
        if not self.in_flight[key]:  # the source's last chunk in flight: read, free the row
            self._read_row(row, acc)
            del self.row_of[key], self.in_flight[key]
            self.free_rows.append(row)
        elif self.unread[row] >= self.read_every:  # only this source adds there: a partial sum
            self._read_row(row, acc)

    def retire(self, slot: int, job: Job) -> None:
        acc = self._acc(job)
        if self.per_chunk:
            self._read_row(slot, acc)
        else:
            self._retire_row(id(job), acc)
        if not self.cap:
            return
        for j, base in enumerate(self.bases.pop(slot, ())):
            at = self.rec_base + (slot * self.rows + j) * self.region
            n = min(int(self._read(at, 1)[0]), self.cap)
            if not n:
                continue
            pairs = self._read(at + 1, self.rec_words * n).reshape(n, self.rec_words)
            acc.parts.append(sorted_records(pairs, base))
            acc.held += n
        limit = self.opts.max_matches
        if limit is not None and acc.held > 2 * max(limit, 4096):
            kept = cap_matches(np.concatenate(acc.parts), limit, self.opts.first_per_pattern)
            acc.parts, acc.held = [kept], int(kept.size)

    def result(self, job: Job, positions: int) -> ScanResult:
        acc = self._acc(job)
        if not self.opts.matches:
            return ScanResult(positions=positions, per_pattern=acc.per)
        rec = np.concatenate(acc.parts) if acc.parts else np.zeros(0, MATCH_DTYPE)
        rec = cap_matches(rec, self.opts.max_matches, self.opts.first_per_pattern)
        return ScanResult(positions=positions, per_pattern=acc.per, matches=rec,
                          dropped=int(acc.per.sum()) - int(rec.size))


def match_options(per_pattern: Any, matches: Any, max_matches: Any,
                   first_per_pattern: Any) -> MatchOptions | None:
    """The scan's options for DFA_MATCH (checked), or None for a plain position count."""
    for name, v in (("per_pattern", per_pattern), ("matches", matches)):
        if not isinstance(v, bool):
            raise InvalidTypeError(f"{name} must be a bool, not {type(v).__name__}",
                                   f"pass {name}=True or {name}=False")
    caps = {"max_matches": max_matches, "first_per_pattern": first_per_pattern}
    for name, v in caps.items():
        if v is not None:
            caps[name] = check_int(name, v, 0)
            if not matches:
                raise InvalidValueError(f"{name} limits match records, but matches=False",
                                        f"pass matches=True with {name}, or drop {name}")
    if not (per_pattern or matches):
        return None
    return MatchOptions(matches, caps["max_matches"], caps["first_per_pattern"])
