"""Dense DFA tables for DFA_SCAN / DFA_STEP (docs/spec.md §3) built from literal byte patterns.

:func:`build_dfa` compiles a list of byte strings into an Aho–Corasick automaton and lays it
out as the dense table the interpreter reads: ``states * 256`` little-endian ``uint32``
entries, entry ``[s*256 + b] = next_state | accept << 31``, where *accept* means that at least
one pattern ends at this byte. DFA_SCAN adds one per accepting position, so a position where
several patterns end (``"he"`` and ``"she"`` in ``"she"``) counts once, and overlapping
occurrences all count (``"aa"`` in ``"aaaa"`` counts 3).

Context length (DFA_SCAN ``a6``)
--------------------------------
``Dfa.context`` is the length ``L`` of the longest pattern. Claim: the state after reading any
byte string ``s`` depends only on the last ``L`` bytes of ``s``, so a scan that restarts from
state 0 ``L`` bytes early (and does not count accepts inside those ``L`` bytes) is exact.

Proof. Let ``P`` be the set of prefixes of the patterns (the trie nodes; state ``q`` is the
node spelling ``w(q)``). The Aho–Corasick DFA keeps the invariant

    state(s) = the node whose word is the longest suffix of s that lies in P.      (I)

(I) holds for the empty string (root); and if it holds for ``s`` then for ``s + c`` the
longest suffix of ``s + c`` in ``P`` is ``u + c`` for the longest suffix ``u`` of ``s`` with
``u + c`` in ``P`` (every prefix of a word in ``P`` is in ``P``, so ``u`` is in ``P`` and is a
suffix of ``w(state(s))``); the goto/failure construction below picks exactly that node.
Every word of ``P`` has length ``<= L``, so the longest suffix of ``s`` in ``P`` is also a
suffix of ``t = last L bytes of s``, and every suffix of ``t`` is a suffix of ``s``; hence the
longest suffix in ``P`` of ``s`` and of ``t`` coincide: ``state(s) = state(t)``, and ``state(t)``
is what a scan started at state 0 ``L`` bytes early computes. The accept bit of a transition is
a function of the target state only (``out(q)`` = some pattern is a suffix of ``w(q)``), so the
accepts after the context are exact too. ∎

(``L - 1`` bytes would already make every *accept* exact, but not the stored end state, which
DFA_SCAN writes to ``obs[a4]``; ``L`` makes both exact and is what docs/spec.md §3 asks of ``a6``.)

Pattern ids (DFA_MATCH, docs/spec.md §3.2)
------------------------------------------
A pattern's id is its position in the list given to :func:`build_dfa`; a pattern given twice
has two ids and every match counts under both (as two patterns with two ids would). Beside the
dense table, ``Dfa.ids`` lists which patterns end in each state: ``len(patterns)`` words
``same_next[id]`` (the next id with the same bytes), then ``[own_id, dict_link]`` per state,
where ``own_id[q]`` is the first id whose pattern is the word of trie node ``q`` and
``dict_link[q]`` the nearest state on ``q``'s failure chain that has an ``own_id``
(``DFA_NO_ID`` for none). The patterns ending in state ``q`` are ``out(q) = own(q) ∪
out(fail(q))``; by invariant (I) below they are exactly the patterns that end at the byte just
read, so the context rule makes per-pattern counts exact too. Walking ``own_id`` /
``same_next`` / ``dict_link`` visits one word per match (an explicit ``out(q)`` list per state
can grow quadratically: ``a``, ``aa``, ``aaa``, ...).

``ignore_case=True`` folds ASCII letters: the trie is built from the patterns with ``A``-``Z``
lowered, and every state's row for an upper-case letter is its row for the lower-case one.
Other bytes (including non-ASCII letters) match exactly.

The table size is ``4 * 256 * states`` bytes (1 KiB per state; states <= 1 + total pattern
bytes), and ``states`` must stay below 2**31 (bit 31 is the accept flag).
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vyre.errors import InvalidTypeError, InvalidValueError

__all__ = ["Dfa", "PatternError", "PatternTypeError", "build_dfa", "count_matches",
           "count_per_pattern", "find_matches", "load_dfa"]


def _abi() -> dict:
    from vyre.protocol import ABI

    return ABI


class PatternError(InvalidValueError):
    """A pattern list that cannot be compiled (an empty pattern, too many states).

    A pattern that is not bytes-like raises :class:`PatternTypeError`.
    """


class PatternTypeError(InvalidTypeError, PatternError):
    """A pattern (or the pattern list) is not bytes-like: both a ``TypeError`` and, like
    every pattern refusal, a :class:`PatternError`."""


@dataclass(frozen=True)
class Dfa:
    """A dense DFA table for DFA_SCAN / DFA_MATCH (see the module docstring).

    Attributes:
        table: ``uint32`` array of ``states * 256`` entries (``next | accept << 31``).
        states: number of states; state 0 is the start state.
        context: DFA_SCAN ``a6``: the state depends only on the last ``context`` bytes.
        patterns: the literal patterns, as given; pattern id ``i`` is ``patterns[i]``.
        ignore_case: ASCII letters match either case.
        ids: DFA_MATCH's id table (``uint32``, ``len(patterns) + 2 * states`` words: see
            the module docstring).
    """

    table: np.ndarray
    states: int
    context: int
    patterns: tuple[bytes, ...] = field(default=())
    ignore_case: bool = False
    ids: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.dtype("<u4")))

    def count_matches(self, data: bytes | bytearray | memoryview | np.ndarray) -> int:
        """Reference count, independent of the table: positions where a pattern ends."""
        return count_matches(self.patterns, data, ignore_case=self.ignore_case)

    def count_per_pattern(self, data: Any) -> np.ndarray:
        """Reference per-pattern counts, independent of the tables (:func:`count_per_pattern`)."""
        return count_per_pattern(self.patterns, data, ignore_case=self.ignore_case)

    def find_matches(self, data: Any) -> list[tuple[int, int]]:
        """Reference match records, independent of the tables (:func:`find_matches`)."""
        return find_matches(self.patterns, data, ignore_case=self.ignore_case)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this compiled pattern set to ``path`` (versioned, checksummed; the file is
        replaced atomically). :func:`load_dfa` reads it back."""
        from vyre.ingest.dfa_file import save_dfa

        save_dfa(self, path)

    def walk_matches(self, data: Any, context: int = 0) -> tuple[int, np.ndarray,
                                                                 list[tuple[int, int]]]:
        """Walk the table and the id table over ``data`` like DFA_MATCH does (pure Python,
        slow; for checking the tables): ``(positions, per_pattern, [(id, end), ...])``,
        nothing counted inside the first ``context`` bytes."""
        accept_bit = _abi()["DFA_ACCEPT_BIT"]
        mask = _abi()["DFA_STATE_MASK"]
        none = _abi()["DFA_NO_ID"]
        rows = self.table.tolist()
        ids = self.ids.tolist()
        npat = len(self.patterns)
        buf = _as_bytes(data)
        per = np.zeros(npat, dtype=np.uint64)
        found: list[tuple[int, int]] = []
        positions = 0
        s = 0
        for i, b in enumerate(buf):
            e = rows[s * 256 + b]
            s = e & mask
            if not e & accept_bit or i < context:
                continue
            positions += 1
            q = s
            while q != none:
                pid, q = ids[npat + 2 * q], ids[npat + 2 * q + 1]
                while pid != none:
                    per[pid] += 1
                    found.append((pid, i + 1))
                    pid = ids[pid]
        return positions, per, found

    def scan(self, data: Any, state: int = 0, context: int = 0) -> tuple[int, int]:
        """Walk the table over ``data`` like DFA_SCAN does: ``(accepts, end_state)``.

        Accepts inside the first ``context`` bytes are not counted (DFA_SCAN ``a6``). Pure
        Python (slow); for tests and for checking the table against :meth:`count_matches`.
        """
        accept_bit = _abi()["DFA_ACCEPT_BIT"]
        mask = _abi()["DFA_STATE_MASK"]
        rows = self.table.tolist()
        buf = bytes(memoryview(data).cast("B")) if not isinstance(data, bytes) else data
        count = 0
        s = int(state)
        for i, b in enumerate(buf):
            e = rows[s * 256 + b]
            if e & accept_bit and i >= context:
                count += 1
            s = e & mask
        return count, s

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes)


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
    return bytes(memoryview(data).cast("B"))


def _ends(pattern: bytes, buf: bytes) -> Iterator[int]:
    """End offsets (one past the last byte) of every occurrence, overlapping ones too."""
    i = buf.find(pattern)
    while i >= 0:
        yield i + len(pattern)
        i = buf.find(pattern, i + 1)


def _reference_inputs(patterns: Iterable[Any], data: Any,
                      ignore_case: bool) -> tuple[list[bytes], bytes]:
    pats = [bytes(memoryview(p).cast("B")) for p in patterns]
    buf = _as_bytes(data)
    if ignore_case:  # bytes.lower() folds ASCII letters only, as build_dfa does
        pats = [p.lower() for p in pats]
        buf = buf.lower()
    return pats, buf


def count_matches(patterns: Iterable[bytes], data: Any, *, ignore_case: bool = False) -> int:
    """Number of byte positions of ``data`` where at least one of ``patterns`` ends.

    A plain search per pattern (``bytes.find``, overlapping), independent of any automaton:
    the reference the tests compare DFA_SCAN results with.
    """
    pats, buf = _reference_inputs(patterns, data, ignore_case)
    ends: set[int] = set()
    for p in pats:
        if p:
            ends.update(_ends(p, buf))
    return len(ends)


def count_per_pattern(patterns: Iterable[bytes], data: Any, *,
                      ignore_case: bool = False) -> np.ndarray:
    """Occurrences of each pattern in ``data`` (overlapping ones too), as a ``uint64`` array
    indexed by pattern id (the position in ``patterns``; a pattern given twice counts under
    both ids). A plain ``bytes.find`` loop per pattern: the reference for DFA_MATCH.
    """
    pats, buf = _reference_inputs(patterns, data, ignore_case)
    return np.array([sum(1 for _ in _ends(p, buf)) if p else 0 for p in pats],
                    dtype=np.uint64)


def find_matches(patterns: Iterable[bytes], data: Any, *,
                 ignore_case: bool = False) -> list[tuple[int, int]]:
    """Every match as ``(pattern id, end offset)``, where the end offset is the index one
    past the match's last byte, sorted by offset then id. A plain ``bytes.find`` loop per
    pattern: the reference for DFA_MATCH's records.
    """
    pats, buf = _reference_inputs(patterns, data, ignore_case)
    found = [(pid, end) for pid, p in enumerate(pats) if p for end in _ends(p, buf)]
    found.sort(key=lambda m: (m[1], m[0]))
    return found


def _normalize(patterns: Any) -> tuple[bytes, ...]:
    if isinstance(patterns, (bytes, bytearray, memoryview, str)):
        raise PatternTypeError("patterns must be a list of byte strings, not a single "
                               f"{type(patterns).__name__}",
                               "wrap it in a list: build_dfa([b'needle'])")
    try:
        items = list(patterns)
    except TypeError:
        raise PatternTypeError(f"patterns must be a list of byte strings, not "
                               f"{type(patterns).__name__}",
                               "pass a list: build_dfa([b'needle', b'haystack'])") from None
    out: list[bytes] = []
    for i, p in enumerate(items):
        if isinstance(p, str):
            raise PatternTypeError(f"pattern {i} is a str ({p!r}), not bytes",
                                   "encode it: pattern.encode('utf-8')")
        # the buffer protocol only: bytes(5) would be five NUL bytes, bytes([97]) b"a"
        try:
            b = memoryview(p).tobytes()
        except TypeError:
            raise PatternTypeError(
                f"pattern {i} is not bytes-like ({type(p).__name__}: {p!r:.40})",
                "pass bytes, bytearray, memoryview or uint8 NumPy patterns; for a list of "
                "byte values use bytes(values)") from None
        if not b:
            raise PatternError(f"pattern {i} is empty (it would match at every position)",
                               "remove empty patterns")
        out.append(b)
    return tuple(out)


def build_dfa(patterns: Sequence[bytes], *, ignore_case: bool = False,
              max_states: int = 1 << 20) -> Dfa:
    """Compile literal byte patterns into a dense DFA table (Aho–Corasick) and its id table.

    Args:
        patterns: byte strings; pattern id ``i`` is ``patterns[i]``. A pattern given twice
            has two ids and counts under both. An empty list gives a one-state table that
            never accepts (context 0).
        ignore_case: ASCII letters match in either case (other bytes exactly).
        max_states: refuse automata larger than this (each state costs 1 KiB of table).

    Returns:
        :class:`Dfa` with ``table``, ``ids``, ``states``, ``context`` (longest pattern
        length) and the reference counts.
    """
    from vyre.ingest.args import check_int

    pats = _normalize(patterns)
    if not isinstance(ignore_case, bool):
        raise InvalidTypeError(f"ignore_case must be a bool, not {type(ignore_case).__name__}",
                               "pass ignore_case=True or ignore_case=False")
    max_states = check_int("max_states", max_states, 1)
    abi = _abi()
    alphabet = abi["DFA_ALPHABET"]
    none = abi["DFA_NO_ID"]
    total = sum(len(p) for p in pats)
    if total + 1 > max_states or total + 1 > abi["DFA_STATE_MASK"]:
        raise PatternError(
            f"the patterns need up to {total + 1} states, over the limit of {max_states}",
            "split the patterns over several DFAs or raise max_states")
    if len(pats) >= none:
        raise PatternError(f"{len(pats)} patterns: ids must stay below {none}",
                           "split the patterns over several DFAs")
    keys = [p.lower() for p in pats] if ignore_case else list(pats)

    # trie: goto[node] = {byte: child}; own[node] = first id ending here; same_next chains
    # the ids of identical patterns
    goto: list[dict[int, int]] = [{}]
    own = [none]
    same_next = [none] * len(pats)
    last_id: dict[int, int] = {}
    for pid, p in enumerate(keys):
        node = 0
        for b in p:
            nxt = goto[node].get(b)
            if nxt is None:
                nxt = len(goto)
                goto[node][b] = nxt
                goto.append({})
                own.append(none)
            node = nxt
        if own[node] == none:
            own[node] = pid
        else:
            same_next[last_id[node]] = pid
        last_id[node] = pid
    n = len(goto)

    # BFS: failure links and the full transition rows. Row of a node = row of its failure
    # node, overridden by its own trie children (the textbook delta construction, which
    # yields invariant (I) of the module docstring). dict_link: the nearest state on the
    # failure chain that ends a pattern.
    rows = np.zeros((n, alphabet), dtype=np.uint32)
    out = np.zeros(n, dtype=bool)
    fail = [0] * n
    link = [none] * n
    queue: deque[int] = deque()
    for b, child in goto[0].items():
        rows[0, b] = child
        queue.append(child)
    while queue:
        node = queue.popleft()
        f = fail[node]
        out[node] = own[node] != none or out[f]
        if node:
            link[node] = f if own[f] != none else link[f]
            rows[node] = rows[f]
        for b, child in goto[node].items():
            fail[child] = int(rows[f, b]) if node else 0  # longest proper suffix in the trie
            rows[node, b] = child
            queue.append(child)
    if ignore_case:  # the trie holds lower-case letters only: upper-case bytes follow them
        rows[:, ord("A"):ord("Z") + 1] = rows[:, ord("a"):ord("z") + 1]

    accept = np.uint32(abi["DFA_ACCEPT_BIT"])
    table = rows | np.where(out[rows], accept, np.uint32(0))
    context = max((len(p) for p in pats), default=0)
    table = np.ascontiguousarray(table.reshape(-1), dtype=np.dtype("<u4"))
    per_state = np.empty((n, 2), dtype=np.int64)
    per_state[:, 0] = own
    per_state[:, 1] = link
    ids = np.concatenate([np.array(same_next, dtype=np.int64), per_state.reshape(-1)])
    return Dfa(table=table, states=n, context=context, patterns=pats,
               ignore_case=ignore_case, ids=np.ascontiguousarray(ids, dtype=np.dtype("<u4")))


def load_dfa(path: str | os.PathLike[str]) -> Dfa:
    """Read a pattern set written by :meth:`Dfa.save`. A file that is not one, was written
    by another format version, or is damaged raises
    :class:`~vyre.ingest.dfa_file.PatternSetFileError` (a :class:`~vyre.PipelineError`)."""
    from vyre.ingest.dfa_file import load_dfa as _load

    return _load(path)
