"""What :meth:`vyre.ingest.stream.GpuStream.scan` returns per source when asked for per-pattern
counts or match records (docs/ingest.md, "Per-pattern counts and match records")."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["MATCH_DTYPE", "ScanResult"]

#: one match record: the pattern id and the end offset (one past the match's last byte)
MATCH_DTYPE = np.dtype([("pattern", np.uint32), ("offset", np.uint64)])


def _no_matches() -> np.ndarray:
    return np.zeros(0, dtype=MATCH_DTYPE)


@dataclass(frozen=True)
class ScanResult:
    """One source's result of a scan with ``per_pattern=True`` or ``matches=True``.

    Attributes:
        positions: byte positions where at least one pattern ends (what a plain scan
            returns; a position where several patterns end counts once).
        per_pattern: ``uint64`` array, one count per pattern id (every occurrence, overlapping
            ones too; a position where three patterns end adds one to each).
        matches: records ``(pattern, offset)`` (:data:`MATCH_DTYPE`; ``offset`` is the end
            offset, one past the match's last byte), sorted by offset then pattern; empty
            unless the scan asked for ``matches``.
        dropped: matches not in ``matches`` (a cap asked for, or a full per-chunk record
            buffer); ``len(matches) + dropped == per_pattern.sum()`` when records were asked
            for, and 0 otherwise. Which matches a full record buffer keeps is unspecified
            (a slot's lane-parts append concurrently), so with ``dropped`` caused by it the
            records are real matches but not necessarily the earliest.
    """

    positions: int
    per_pattern: np.ndarray
    matches: np.ndarray = field(default_factory=_no_matches)
    dropped: int = 0
