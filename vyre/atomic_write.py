"""Write a file so that readers see the old file or the whole new one, never a torn one."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable

__all__ = ["write_atomically"]


def write_atomically(path: str, parts: Iterable[bytes], *, prefix: str = ".tmp-",
                     suffix: str = "") -> None:
    """Write ``parts`` to ``path`` through a temporary file in the same folder (fsynced, then
    renamed over ``path``); the temporary file is removed when anything fails."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix,
                               dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
