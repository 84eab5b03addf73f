"""Errors of user-op builds."""
from __future__ import annotations

from vyre.errors import PipelineError

__all__ = ["OpBuildError"]


class OpBuildError(PipelineError, RuntimeError):
    """User ops could not be compiled or loaded (no compiler, a compile error, a bad artefact).

    ``log`` holds the compiler's output when it ran and failed (file positions read
    ``op:<name>:<line>``), else "".
    """

    def __init__(self, message: str, fix: str, log: str = "") -> None:
        self.log = log
        super().__init__(message, fix)
