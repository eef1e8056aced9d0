"""The job registry and cancellation.

Why our own registry: pygls does not stop an executeCommand coroutine on
$/cancelRequest, and an edit outlives its request anyway (it answers early and
applies later). So every edit is an LspJob, one per document; an LspJob is cancelled
by its progress token, by blazedit.cancel, by a newer edit of the same
document, or by the document closing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote

from engine.client import protocol

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LspJob:
    """One AI edit of one document, from request to applied (or not)."""

    uri: str
    base: str
    """The document's text when the edit was asked for."""
    sent: str
    """What the engine edits: ``base`` without the instruction comment."""
    instruction: str
    region: protocol.Region | None = None
    """Edit only these lines of ``sent`` (a selection); None: the whole file."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "running"
    """running → applied | unchanged | cancelled | refused | failed."""
    summary: str = ""
    cancel_reason: str | None = None
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    stats: protocol.Stats | None = None
    streamed: str = ""
    """The engine's output so far (of the region, for a selection)."""
    attempt: int = 1
    """The engine's attempt: a second one (after an unchanged reply) streams the file again."""
    ours: str = ""
    """The AI's side of the document as last applied, without the user's typing: ``base``
    until a hunk lands. The document is always ``ours`` plus what the user typed, so the
    next AI text is rebased from ``ours`` (edits.rebase)."""
    hunks_applied: int = 0
    """Hunks applied while streaming (applyWhileStreaming)."""

    def __post_init__(self) -> None:
        self.ours = self.ours or self.base

    def partial(self) -> str:
        """The file as far as the engine has streamed it (the region's output after the
        text before the region; nothing after it yet)."""
        return self.streamed if self.region is None else self.sent[: self.region.start] + self.streamed

    def output(self, text: str) -> str:
        """The whole file for an output of the engine (a region's output spliced in)."""
        if self.region is None:
            return text
        return self.sent[: self.region.start] + text + self.sent[self.region.end :]

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


@dataclass(frozen=True)
class AppliedEdit:
    """The last AI edit of a document, for blazedit.undo: the text before it, and
    the AI's text after it (the document then, less the user's typing)."""

    before: str
    after: str


class JobRegistry:
    """The running job of each document, and the last AI edit applied to each."""

    def __init__(self) -> None:
        self._jobs: dict[str, LspJob] = {}
        self.applied: dict[str, AppliedEdit] = {}
        """Keyed like the jobs (``_key``); use ``record_applied`` / ``last_applied``."""

    def add(self, job: LspJob) -> None:
        """Register ``job``; an older job of the same document is cancelled."""
        if (old := self._jobs.get(_key(job.uri))) is not None:
            old.cancel("replaced by a newer edit of the document")
        self._jobs[_key(job.uri)] = job

    def remove(self, job: LspJob) -> None:
        if self._jobs.get(_key(job.uri)) is job:
            del self._jobs[_key(job.uri)]

    def get(self, uri: str) -> LspJob | None:
        return self._jobs.get(_key(uri))

    def by_token(self, token: str | int) -> LspJob | None:
        return next((j for j in self._jobs.values() if j.token == token), None)

    def cancel(self, uri: str | None, reason: str) -> list[LspJob]:
        """Cancel the job of ``uri`` (all jobs when None); returns them."""
        jobs = list(self._jobs.values()) if uri is None else [j for j in [self.get(uri)] if j]
        for job in jobs:
            job.cancel(reason)
        return jobs

    def running(self) -> list[LspJob]:
        return list(self._jobs.values())

    def record_applied(self, job: LspJob) -> None:
        """``job`` has changed its document: it is now the edit blazedit.undo reverts."""
        self.applied[_key(job.uri)] = AppliedEdit(job.base, job.ours)

    def last_applied(self, uri: str) -> AppliedEdit | None:
        return self.applied.get(_key(uri))

    def forget_applied(self, uri: str) -> None:
        self.applied.pop(_key(uri), None)
