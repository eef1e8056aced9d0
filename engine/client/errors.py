"""The errors of both sides of the engine: ``EngineUnavailable`` (every backend raises it
when its engine cannot be reached) and ``JobError`` (one job's code and message).

A leaf of its own: every backend, the local engine and the language server import it.
"""

from __future__ import annotations


class EngineUnavailable(Exception):
    """The engine cannot be reached, failed to start, or went away mid-job; the
    message says what to do (and where the daemon's log is)."""


class JobError(Exception):
    """A job the engine refused or failed: a protocol error code (``protocol.ErrorCode``)
    and a message for the user. The local engine raises it for bad input; the language
    server raises it for a job's Error message; both sides read the same two fields."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
