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

The table size is ``4 * 256 * states`` bytes (1 KiB per state; states <= 1 + total pattern
bytes), and ``states`` must stay below 2**31 (bit 31 is the accept flag).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vyre.errors import InvalidTypeError, InvalidValueError

__all__ = ["Dfa", "PatternError", "PatternTypeError", "build_dfa", "count_matches"]


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
    """A dense DFA table for DFA_SCAN (see the module docstring).

    Attributes:
        table: ``uint32`` array of ``states * 256`` entries (``next | accept << 31``).
        states: number of states; state 0 is the start state.
        context: DFA_SCAN ``a6``: the state depends only on the last ``context`` bytes.
        patterns: the literal patterns, as given (deduplicated, in first-seen order).
    """

    table: np.ndarray
    states: int
    context: int
    patterns: tuple[bytes, ...] = field(default=())

    def count_matches(self, data: bytes | bytearray | memoryview | np.ndarray) -> int:
        """Reference count, independent of the table: positions where a pattern ends."""
        return count_matches(self.patterns, data)

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


def count_matches(patterns: Iterable[bytes], data: Any) -> int:
    """Number of byte positions of ``data`` where at least one of ``patterns`` ends.

    A plain search per pattern (``bytes.find``, overlapping), independent of any automaton:
    the reference the tests compare DFA_SCAN results with.
    """
    buf = bytes(memoryview(data).cast("B")) if not isinstance(data, bytes) else data
    ends: set[int] = set()
    for p in patterns:
        p = bytes(p)
        if not p:
            continue
        i = buf.find(p)
        while i >= 0:
            ends.add(i + len(p) - 1)
            i = buf.find(p, i + 1)
    return len(ends)


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
    seen: dict[bytes, None] = {}
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
        seen.setdefault(b, None)
    return tuple(seen)


def build_dfa(patterns: Sequence[bytes], *, max_states: int = 1 << 20) -> Dfa:
    """Compile literal byte patterns into a dense DFA table (Aho–Corasick).

    Args:
        patterns: byte strings; duplicates are ignored. An empty list gives a one-state
            table that never accepts (context 0).
        max_states: refuse automata larger than this (each state costs 1 KiB of table).

    Returns:
        :class:`Dfa` with ``table``, ``states``, ``context`` (longest pattern length) and a
        reference ``count_matches``.
    """
    from vyre.ingest.args import check_int

    pats = _normalize(patterns)
    max_states = check_int("max_states", max_states, 1)
    abi = _abi()
    alphabet = abi["DFA_ALPHABET"]
    total = sum(len(p) for p in pats)
    if total + 1 > max_states or total + 1 > abi["DFA_STATE_MASK"]:
        raise PatternError(
            f"the patterns need up to {total + 1} states, over the limit of {max_states}",
            "split the patterns over several DFAs or raise max_states")

    # trie: goto[node] = {byte: child}; terminal[node] = a pattern ends here
    goto: list[dict[int, int]] = [{}]
    terminal = [False]
    for p in pats:
        node = 0
        for b in p:
            nxt = goto[node].get(b)
            if nxt is None:
                nxt = len(goto)
                goto[node][b] = nxt
                goto.append({})
                terminal.append(False)
            node = nxt
        terminal[node] = True
    n = len(goto)

    # BFS: failure links and the full transition rows. Row of a node = row of its failure
    # node, overridden by its own trie children (the textbook delta construction, which
    # yields invariant (I) of the module docstring).
    rows = np.zeros((n, alphabet), dtype=np.uint32)
    out = np.zeros(n, dtype=bool)
    fail = [0] * n
    queue: deque[int] = deque()
    for b, child in goto[0].items():
        rows[0, b] = child
        fail[child] = 0
        queue.append(child)
    out[0] = False
    while queue:
        node = queue.popleft()
        out[node] = terminal[node] or out[fail[node]]
        rows[node] = rows[fail[node]]
        for b, child in goto[node].items():
            fail[child] = int(rows[fail[node], b])  # longest proper suffix in the trie
            rows[node, b] = child
            queue.append(child)

    accept = np.uint32(abi["DFA_ACCEPT_BIT"])
    table = rows | np.where(out[rows], accept, np.uint32(0))
    context = max((len(p) for p in pats), default=0)
    table = np.ascontiguousarray(table.reshape(-1), dtype=np.dtype("<u4"))
    return Dfa(table=table, states=n, context=context, patterns=pats)
