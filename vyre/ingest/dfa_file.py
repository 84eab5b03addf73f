"""Saved pattern sets: :meth:`vyre.ingest.dfa.Dfa.save` and :func:`load_dfa` (docs/ingest.md).

A compiled pattern set is written as one little-endian file::

    magic    8 bytes  b"VYREDFA\\0"
    version  u32      FORMAT_VERSION
    flags    u32      bit 0: ignore_case
    states   u32
    context  u32
    patterns u32      P
    reserved u32      0
    lengths  u32 * P  pattern lengths
    bytes             the patterns, concatenated, then zero padding to a multiple of 4
    table    u32 * states * 256
    ids      u32 * (P + 2 * states)
    sha256   32 bytes over everything before it

Loading checks the magic, the version, the length and the digest, then that the tables fit
their sizes (every next state below ``states``, every id below ``P`` or ``DFA_NO_ID``) and that
``context`` is the longest pattern, so a file that passes is a table DFA_SCAN and DFA_MATCH can
walk. The file is written to a temporary name and renamed over ``path``, so a reader never
sees half a file.
"""
from __future__ import annotations

import hashlib
import os
import struct
from typing import TYPE_CHECKING

import numpy as np

from vyre.atomic_write import write_atomically
from vyre.errors import InvalidTypeError, PipelineError

if TYPE_CHECKING:
    from vyre.ingest.dfa import Dfa

__all__ = ["FORMAT_VERSION", "MAGIC", "PatternSetFileError", "load_dfa", "save_dfa"]

MAGIC = b"VYREDFA\0"
#: bumped whenever the layout above or the meaning of a table changes
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIIIIII")
_DIGEST = 32
_FLAG_IGNORE_CASE = 1
_REBUILD = ("rebuild the pattern set with vyre.build_dfa(patterns) and save it again "
            "(dfa.save(path))")


class PatternSetFileError(PipelineError, ValueError):
    """A file :func:`load_dfa` cannot use: not a saved pattern set, another format version,
    or damaged. ``path`` names it."""

    def __init__(self, message: str, fix: str, path: str = "") -> None:
        self.path = path
        super().__init__(message, fix)


def _fspath(path: object) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a str or os.PathLike, not {type(path).__name__}",
                               "pass a file name: dfa.save('patterns.vyredfa')")
    p = os.fspath(path)
    return p if isinstance(p, str) else os.fsdecode(p)


def save_dfa(dfa: Dfa, path: str | os.PathLike[str]) -> None:
    """Write ``dfa`` to ``path`` in the format above (atomically: temp file + rename)."""
    target = _fspath(path)
    pats = dfa.patterns
    body = bytearray(_HEADER.pack(MAGIC, FORMAT_VERSION,
                                  _FLAG_IGNORE_CASE if dfa.ignore_case else 0,
                                  dfa.states, dfa.context, len(pats), 0))
    body += np.array([len(p) for p in pats], dtype="<u4").tobytes()
    blob = b"".join(pats)
    body += blob + b"\0" * (-len(blob) % 4)
    body += np.ascontiguousarray(dfa.table, dtype="<u4").tobytes()
    body += np.ascontiguousarray(dfa.ids, dtype="<u4").tobytes()
    body += hashlib.sha256(body).digest()
    write_atomically(target, [bytes(body)], prefix=".vyredfa-")


def load_dfa(path: str | os.PathLike[str]) -> Dfa:
    """Read a pattern set written by :func:`save_dfa`; see the module docstring for what is
    checked. Raises :class:`PatternSetFileError` (with the fix) when the file cannot be used."""
    from vyre.ingest.dfa import Dfa, _abi

    name = _fspath(path)

    def bad(what: str, fix: str = _REBUILD) -> PatternSetFileError:
        return PatternSetFileError(f"{name!r} {what}", fix, path=name)

    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as err:
        raise PatternSetFileError(f"cannot read {name!r}: {err.strerror or err}",
                                  "check the path and that the file is readable",
                                  path=name) from err
    if len(data) < _HEADER.size or data[:8] != MAGIC:
        raise bad("is not a saved vyre pattern set (no VYREDFA header)",
                  "pass a file written by Dfa.save(); " + _REBUILD)
    _, version, flags, states, context, npat, _reserved = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise bad(f"was written in pattern-set format version {version}; this vyre reads "
                  f"version {FORMAT_VERSION}")
    if len(data) < _HEADER.size + _DIGEST or \
            hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:]:
        raise bad("is damaged (its checksum does not match: truncated or modified)")
    abi = _abi()
    none = abi["DFA_NO_ID"]
    at = _HEADER.size
    try:
        if flags & ~_FLAG_IGNORE_CASE or not 1 <= states <= abi["DFA_STATE_MASK"]:
            raise ValueError("header")
        lengths = np.frombuffer(data, dtype="<u4", count=npat, offset=at)
        at += 4 * npat
        total = int(lengths.sum(dtype=np.uint64))
        blob = data[at:at + total]
        at += total + (-total % 4)
        table = np.frombuffer(data, dtype="<u4", count=states * 256, offset=at).copy()
        at += table.nbytes
        ids = np.frombuffer(data, dtype="<u4", count=npat + 2 * states, offset=at).copy()
        at += ids.nbytes
        if at + _DIGEST != len(data) or len(blob) != total:
            raise ValueError("size")
    except ValueError:
        raise bad("is damaged (its sizes do not add up)") from None
    pats: list[bytes] = []
    pos = 0
    for n in lengths.tolist():
        pats.append(bytes(blob[pos:pos + n]))
        pos += n
    mask = abi["DFA_STATE_MASK"]
    per_state = ids[npat:].reshape(-1, 2)
    own, link = per_state[:, 0], per_state[:, 1]
    if (any(not p for p in pats) or context != max((len(p) for p in pats), default=0)
            or ((table & mask) >= states).any()
            or ((ids[:npat] != none) & (ids[:npat] >= npat)).any()
            or ((own != none) & (own >= npat)).any()
            or ((link != none) & (link >= states)).any()):
        raise bad("holds tables that do not fit together (not written by Dfa.save)")
    return Dfa(table=table, states=int(states), context=int(context), patterns=tuple(pats),
               ignore_case=bool(flags & _FLAG_IGNORE_CASE), ids=ids)
