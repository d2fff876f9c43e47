"""One error tree for embedfleet.

``PermanentError`` (bad input: the job can never succeed) and
``TransientError`` (Redis away, an I/O hiccup: try again later) are handled
differently by every worker: the first dead-letters the job at once, the
second retries it with backoff.
"""

from __future__ import annotations


class EmbedfleetError(Exception):
    """Root of every error embedfleet raises on purpose."""


class PermanentError(EmbedfleetError):
    """The job cannot succeed as it is; retrying would fail the same way."""


class BadInput(PermanentError):
    """An input file is unreadable, corrupt, or lacks the expected column.

    The message always names the file and the problem."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class UnsafePath(PermanentError):
    """A job path escapes its dataset root (absolute, ``..``, symlink out)."""


class ProtocolError(PermanentError):
    """A bus message is malformed or of an unknown version."""


class InvalidMessage(ProtocolError):
    """A job message no worker can read: not JSON, an unknown version, a
    missing or mistyped field, a value out of range, an unsafe path.

    ``str()`` is the dead-letter reason, ``invalid job message: <what>:
    <detail>``. ``what`` is one of the stable categories of
    ``docs/protocol.md`` (``bad field attempt``, ``unsafe path``, ...), the
    same in both workers; the detail is for people."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"invalid job message: {what}: {detail}")
        self.what = what


class ModelMismatch(PermanentError):
    """The job asks for a model this worker does not hold."""


class TransientError(EmbedfleetError):
    """A fault that may pass: retry later."""


class BusUnavailable(TransientError):
    """Redis cannot be reached right now (translated from redis-py errors)."""


class BusAccessDenied(EmbedfleetError):
    """Redis refused this client: wrong password (WRONGPASS), none given
    (NOAUTH), or an ACL user without a command or key it needs (NOPERM).

    Retrying cannot help, and it is no fault of a job: a worker stops with its
    own exit status (``EXIT_ACCESS_DENIED``). The message names the Redis
    location with the password masked, never the password."""


class LeaseLost(EmbedfleetError):
    """Another worker took this job over; this worker must not finish it."""


class JobTimeout(EmbedfleetError):
    """A job ran past the per-job timeout; the worker must exit."""
