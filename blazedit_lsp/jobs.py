"""Job registry, progress reporting and cancellation.

Why our own registry: pygls does not stop an executeCommand coroutine on
$/cancelRequest, and an edit outlives its request anyway (it answers early and
applies later). So every edit is a Job, one per document; a Job is cancelled
by its progress token, by blazedit.cancel, by a newer edit of the same
document, or by the document closing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable
from urllib.parse import unquote

from lsprotocol import types

from engine import protocol

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One AI edit of one document, from request to applied (or not)."""

    uri: str
    version: int | None
    base: str
    """The document's text when the edit was asked for."""
    sent: str
    """What the engine edits: ``base`` without the instruction comment."""
    instruction: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "running"
    """running → applied | unchanged | cancelled | refused | failed."""
    summary: str = ""
    cancel_reason: str | None = None
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    stats: protocol.Stats | None = None

    @property
    def token(self) -> str:
        """The work-done progress token: fresh per job (pygls never frees one)."""
        return f"blazedit/{self.id}"

    def cancel(self, reason: str) -> None:
        if self.state == "running" and not self.cancelled.is_set():
            log.info("cancelling job %s (%s): %s", self.id, self.uri, reason)
            self.cancel_reason = reason
            self.cancelled.set()

    def finish(self, state: str, summary: str) -> None:
        self.state, self.summary = state, summary
        self.finished.set()


def _key(uri: str) -> str:
    """Clients differ in percent-encoding; pygls's workspace keys unquote too."""
    return unquote(uri)


class JobRegistry:
    """The running job of each document."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        """Register ``job``; an older job of the same document is cancelled."""
        if (old := self._jobs.get(_key(job.uri))) is not None:
            old.cancel("replaced by a newer edit of the document")
        self._jobs[_key(job.uri)] = job

    def remove(self, job: Job) -> None:
        if self._jobs.get(_key(job.uri)) is job:
            del self._jobs[_key(job.uri)]

    def get(self, uri: str) -> Job | None:
        return self._jobs.get(_key(uri))

    def by_token(self, token: str | int) -> Job | None:
        return next((j for j in self._jobs.values() if j.token == token), None)

    def cancel(self, uri: str | None, reason: str) -> list[Job]:
        """Cancel the job of ``uri`` (all jobs when None); returns them."""
        jobs = list(self._jobs.values()) if uri is None else [j for j in [self.get(uri)] if j]
        for job in jobs:
            job.cancel(reason)
        return jobs

    def running(self) -> list[Job]:
        return list(self._jobs.values())


def progress_message(stats: protocol.Stats, tokens_per_second: float) -> str:
    """e.g. "120 tokens, 35.2 tok/s, 87% accepted"."""
    parts = [f"{stats.tokens} tokens", f"{tokens_per_second:.1f} tok/s"]
    if stats.drafted:
        parts.append(f"{stats.accepted / stats.drafted:.0%} accepted")
    return ", ".join(parts)


def percentage(chars_out: int, chars_in: int) -> int:
    """Output length against input length; whole-file edits are about as long
    as their input. Capped at 99: 100 only comes with the end."""
    return min(99, chars_out * 100 // max(1, chars_in))


class Progress:
    """$/progress for one job, throttled; window/logMessage when the client
    has no work-done progress."""

    def __init__(self, ls: LanguageServer, job: Job, interval_ms: int, clock: Callable[[], float] = time.monotonic):
        self._ls, self._job, self._clock = ls, job, clock
        self._interval = interval_ms / 1000
        self._last = float("-inf")
        self._percent = 0
        self._lsp = False

    async def begin(self, title: str) -> None:
        if getattr(self._ls.client_capabilities.window, "work_done_progress", False):
            try:
                await self._ls.work_done_progress.create_async(self._job.token)
                self._lsp = True
            except Exception:  # boundary: a client may refuse; fall back to log messages
                log.warning("client refused progress token %s", self._job.token, exc_info=True)
        if self._lsp:
            begin = types.WorkDoneProgressBegin(title=title, cancellable=True, message="starting", percentage=0)
            self._ls.work_done_progress.begin(self._job.token, begin)
        else:
            self._log(f"{title}: started")

    def report(self, stats: protocol.Stats, chars: int, tokens_per_second: float, force: bool = False) -> bool:
        """Send a report unless one went out less than the interval ago."""
        now = self._clock()
        if not force and now - self._last < self._interval:
            return False
        self._last = now
        self._percent = max(self._percent, percentage(chars, len(self._job.sent)))
        message = progress_message(stats, tokens_per_second)
        if self._lsp:
            report = types.WorkDoneProgressReport(message=message, percentage=self._percent, cancellable=True)
            self._ls.work_done_progress.report(self._job.token, report)
        else:
            self._log(f"{message} ({self._percent}%)")
        return True

    def message(self, text: str) -> None:
        """A report with a message only (queue position, prefill)."""
        if self._lsp:
            self._ls.work_done_progress.report(self._job.token, types.WorkDoneProgressReport(message=text))
        else:
            self._log(text)

    def end(self, summary: str) -> None:
        if self._lsp:
            self._ls.work_done_progress.end(self._job.token, types.WorkDoneProgressEnd(message=summary))
        else:
            self._log(summary)

    def _log(self, text: str) -> None:
        self._ls.window_log_message(types.LogMessageParams(type=types.MessageType.Info, message=f"Blazedit: {text}"))
