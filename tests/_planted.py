"""Scan test data: random bytes with patterns planted across chunk boundaries and elsewhere."""
from __future__ import annotations

import random


def planted(rng: random.Random, size: int, pats: list[bytes], chunk: int,
            alphabet: bytes = b"abcdefgh", every: int = 500) -> bytes:
    """``size`` random bytes of ``alphabet``, a pattern straddling every ``chunk`` boundary and
    one more about every ``every`` bytes."""
    data = bytearray(rng.choice(alphabet) for _ in range(size))
    for b in range(chunk, size, chunk):
        p = rng.choice(pats)
        at = b - rng.randint(1, len(p)) if len(p) > 1 else b
        if 0 <= at and at + len(p) <= size:
            data[at:at + len(p)] = p
    for _ in range(size // every):
        p = rng.choice(pats)
        at = rng.randrange(0, max(1, size - len(p)))
        data[at:at + len(p)] = p
    return bytes(data)
