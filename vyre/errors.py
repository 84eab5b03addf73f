"""Structured, actionable errors (docs/spec.md §11).

Every failure vyre raises is a :class:`PipelineError`; its message ends with
``Fix: <what to do>`` and the hint is also available as ``.fix``. Each subclass also derives
from the built-in exception a Python programmer would naturally catch, so ``except ValueError``
or ``except OSError`` keep working.
"""
from __future__ import annotations

__all__ = [
    "PipelineError",
    "ArgumentError",
    "InvalidValueError",
    "InvalidTypeError",
    "QueueFullError",
    "ProtocolError",
    "BackendError",
    "IoUringError",
    "SlotFaultError",
    "WaitTimeoutError",
]


class PipelineError(Exception):
    """Base of every vyre error. ``str(err)`` ends with ``Fix: ...``; ``err.fix`` holds the hint.

    ``published`` is set when a call that publishes several slots failed part-way: the
    tickets (a ``range`` or a list) that *were* published before the failure and will run;
    wait for them or account for them. It is ``None`` when nothing was published.
    """

    published: range | list[int] | None = None

    def __init__(self, message: str, fix: str) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message}. Fix: {fix}")


class ArgumentError(PipelineError):
    """An argument was refused before anything was written (wrong type, range or shape).

    Catch this for any invalid input; each concrete error is also the built-in a Python
    programmer expects (:class:`InvalidValueError` is a ``ValueError``,
    :class:`InvalidTypeError` a ``TypeError``).
    """


class InvalidValueError(ArgumentError, ValueError):
    """An argument has the right type but a value that is out of range or malformed."""


class InvalidTypeError(ArgumentError, TypeError):
    """An argument has the wrong type (a float where an integer is needed, None, a str...)."""


class QueueFullError(PipelineError, ValueError):
    """A publish was refused because the ring (or IO queue) has no free slot where it must write.

    ``queue`` names the queue concerned (``"ring"``, ``"io"``, ``"debug"``, ...).
    """

    def __init__(self, message: str, fix: str, queue: str = "ring") -> None:
        self.queue = queue
        super().__init__(message, fix)


class ProtocolError(PipelineError, ValueError):
    """A buffer handed to a decoder is malformed (wrong size, impossible contents)."""


class BackendError(PipelineError, RuntimeError):
    """A backend could not be set up, faulted, stalled, or failed to stop in time."""


class SlotFaultError(PipelineError, RuntimeError):
    """A published slot ended in FAULT (unauthorized tenant, protected word, IO error...).

    ``ticket`` is the ticket of the faulted slot and ``slot`` its ring index.
    """

    def __init__(self, message: str, fix: str, ticket: int = -1, slot: int = -1) -> None:
        self.ticket = ticket
        self.slot = slot
        super().__init__(message, fix)


class IoUringError(PipelineError, OSError):
    """An io_uring (or fallback read) system call failed; ``syscall`` and ``errno`` say which."""

    def __init__(self, message: str, fix: str, syscall: str = "", errno: int = 0) -> None:
        PipelineError.__init__(self, message, fix)
        self.syscall = syscall
        self.errno = errno

    def __str__(self) -> str:  # OSError.__str__ would print only the errno form
        return f"{self.message}. Fix: {self.fix}"


class WaitTimeoutError(PipelineError, TimeoutError):
    """A wait's own timeout elapsed before its tickets retired (the kernel may still be alive)."""
