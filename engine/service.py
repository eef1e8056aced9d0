"""The daemon's job queue: one decoding job at a time, in one worker thread.

Two kinds of job share it: whole-file edits from the native socket (``protocol.Edit``,
answered with protocol messages) and completions from the OpenAI-compatible API
(``completion.Completion``, answered with the engine's own events, which
openai_api.py turns into HTTP responses).

``Engine.edit`` is a blocking generator and the Engine is not thread-safe, so a
single worker thread runs one job at a time while the event loop keeps serving
connections. Jobs run in arrival order. Every message of a job reaches its
connection's ``send`` on the event-loop thread, in order, and every accepted job
gets exactly one terminal message (``Done`` or ``Error``).

Warms (prompt prefills ahead of edits) run on the same worker at the lowest
priority: only while no job waits, newest first, and an arriving job stops a
running warm before its next chunk of prefill (the warm goes back to wait, and
what it prefilled is reused). They have no replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal

from engine.client import prompts, protocol
from engine.client.attempts import JobStream
from engine.client.errors import JobError
from engine.completion import Completion
from engine.local_engine import CompletionResult, CompletionStep, Engine, Result

log = logging.getLogger(__name__)

Send = Callable[[protocol.Message | CompletionStep | CompletionResult], None]  # on the loop thread; must not block
StopReason = Literal["cancelled", "shutting_down"]


@dataclass(eq=False)
class DaemonJob:
    """An accepted Edit or Completion, queued or running."""

    edit: protocol.Edit | Completion
    owner: object  # the connection that sent it
    send: Send
    queue_position: int
    state: Literal["queued", "running"] = "queued"
    stop: threading.Event = field(default_factory=threading.Event)
    stop_reason: StopReason = "cancelled"
    tokens: int = 0  # written by the worker thread, read by status

    @property
    def key(self) -> tuple[object, str]:
        return self.owner, self.edit.job_id  # the owner itself, not id(): ids are reused after a disconnect


@dataclass(eq=False)
class WarmJob:
    """A Warm waiting or running; ``replaced`` once a newer Warm of its document came."""

    warm: protocol.Warm
    stop: threading.Event = field(default_factory=threading.Event)
    replaced: bool = False

    @property
    def name(self) -> str:
        return self.warm.document if self.warm.document is not None else self.warm.path


def _ignore(message: protocol.Message) -> None:
    """Where a disconnected client's messages go."""


class Service:
    MAX_WARMS = 8  # waiting warms; beyond it the oldest are dropped

    def __init__(self, engine: Engine, *, max_document_bytes: int = 4 * 1024 * 1024,
                 max_queue: int = 256, progress_interval: float = 0.05):
        self.engine = engine
        self.max_document_bytes = max_document_bytes
        self.max_queue = max_queue
        self.progress_interval = progress_interval
        self.jobs_accepted = 0
        self.last_active = time.monotonic()
        self._queue: deque[DaemonJob] = deque()
        self._jobs: dict[tuple[object, str], DaemonJob] = {}
        self._running: DaemonJob | None = None
        self._warms: deque[WarmJob] = deque()  # newest last
        self._warming: WarmJob | None = None
        self.warms_done = 0
        self._closing = False
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self.cache_usage = self._read_cache_usage()

    def _read_cache_usage(self) -> tuple[int, int, int]:
        """(entries, bytes, budget) of the prefix KV cache. Read only by the worker thread
        (or before it starts): the status reads this copy, never the live cache."""
        cache = self.engine.prefix_cache
        return len(cache), cache.nbytes, cache.budget_bytes

    # ------------------------------------------------------------ loop thread

    def submit(self, owner: object, send: Send, edit: protocol.Edit | Completion) -> None:
        """Queue ``edit`` or answer it with an Error. (A newer edit of the same document
        does not cancel the older job here: the client that sent both does.)"""
        refusal = self._refusal(owner, edit)
        if refusal:
            send(protocol.Error(code=refusal[0], message=refusal[1], job_id=edit.job_id))
            return
        position = len(self._queue) + (self._running is not None)
        job = DaemonJob(edit, owner, send, position)
        self._queue.append(job)
        self._jobs[job.key] = job
        self.jobs_accepted += 1
        size = len(edit.text) if isinstance(edit, protocol.Edit) else edit.size
        log.info("job %s queued at %d (%s, %d chars)", edit.job_id, position, edit.method, size)
        if position:
            send(protocol.Queued(job_id=edit.job_id, position=position))
        if self._warming:
            self._warming.stop.set()  # the edit goes first; the warm resumes after it
        self._wakeup.set()

    def warm(self, warm: protocol.Warm) -> None:
        """Queue ``warm`` at the lowest priority, replacing (and stopping) any older warm of its document."""
        size = len(warm.text.encode("utf-8", "surrogatepass"))
        if self._closing or size > self.max_document_bytes:
            log.info("warm of %r ignored: %s", warm.document or warm.path,
                     "shutting down" if self._closing else f"{size} bytes is over the document limit")
            return
        job = WarmJob(warm)
        if warm.document is not None:
            for old in [w for w in self._warms if w.warm.document == warm.document]:
                self._warms.remove(old)
            if self._warming and self._warming.warm.document == warm.document:
                self._warming.replaced = True
                self._warming.stop.set()
        self._enqueue(job)
        self._wakeup.set()

    def _enqueue(self, job: WarmJob) -> None:
        self._warms.append(job)
        while len(self._warms) > self.MAX_WARMS:
            log.info("warm of %r dropped: %d warms wait", self._warms.popleft().name, self.MAX_WARMS)

    @property
    def warming(self) -> str | None:
        """The document being warmed now, if any."""
        return self._warming.name if self._warming else None

    def _refusal(self, owner: object, edit: protocol.Edit | Completion) -> tuple[protocol.ErrorCode, str] | None:
        if self._closing:
            return "shutting_down", "the engine daemon is shutting down"
        if (owner, edit.job_id) in self._jobs:
            return "duplicate_job", f"job id {edit.job_id!r} is already in use on this connection"
        size = len(edit.text.encode("utf-8", "surrogatepass")) if isinstance(edit, protocol.Edit) else 0
        if size > self.max_document_bytes:  # (the HTTP side limits a completion's size)
            return "too_large", f"the document is {size} bytes; this daemon accepts at most {self.max_document_bytes}"
        if why := self.engine.method_unavailable(edit.method):
            return "unknown_method", f"method {edit.method!r} is not available here: {why}"
        if isinstance(edit, protocol.Edit) and edit.region and (why := prompts.region_problem(edit.text, edit.region.start, edit.region.end)):
            return "bad_request", why
        if len(self._queue) >= self.max_queue:
            return "busy", f"the queue is full ({self.max_queue} jobs waiting); retry later"
        return None

    def cancel(self, owner: object, job_id: str) -> None:
        """Stop a job of ``owner``; unknown or finished jobs are ignored (the race is normal)."""
        job = self._jobs.get((owner, job_id))
        if job:
            self._stop(job, "cancelled")

    def has_job(self, owner: object, job_id: str) -> bool:
        return (owner, job_id) in self._jobs

    def drop_owner(self, owner: object) -> None:
        """The connection is gone: cancel its jobs and discard their messages."""
        for job in [j for j in self._jobs.values() if j.owner is owner]:
            job.send = _ignore
            self._stop(job, "cancelled")

    def _stop(self, job: DaemonJob, reason: StopReason) -> None:
        if job.state == "queued":
            log.info("job %s %s while queued", job.edit.job_id, reason)
            self._queue.remove(job)
            self._finish(job, self._stopped_message(job, reason, "", protocol.Stats()))
        else:
            job.stop_reason = reason
            job.stop.set()  # the engine polls it between forward passes

    @staticmethod
    def _stopped_message(job: DaemonJob, reason: StopReason, text: str, stats: protocol.Stats) -> protocol.Message:
        if reason == "shutting_down":
            return protocol.Error(code="shutting_down", message="the engine daemon is shutting down",
                                  job_id=job.edit.job_id)
        return protocol.Done(job_id=job.edit.job_id, text=text, finish_reason="cancelled", stats=stats)

    def _deliver(self, job: DaemonJob, message: protocol.Message | CompletionStep | CompletionResult) -> None:
        if isinstance(message, (protocol.Done, protocol.Error, CompletionResult)):
            self._finish(job, message)
        else:
            job.send(message)

    def _finish(self, job: DaemonJob, message: protocol.Message | CompletionResult) -> None:
        self._jobs.pop(job.key, None)
        self.last_active = time.monotonic()
        job.send(message)

    def job_infos(self) -> list[protocol.JobInfo]:
        jobs = ([self._running] if self._running else []) + list(self._queue)
        return [protocol.JobInfo(job_id=j.edit.job_id, document=j.edit.document, state=j.state, tokens=j.tokens)
                for j in jobs if j.key in self._jobs]  # a finished job's worker may not have returned yet

    @property
    def idle(self) -> bool:
        return not self._jobs

    async def run(self) -> None:
        """The worker loop; returns after ``close()`` once the running job has stopped."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not self._queue and not (self._warms and not self._closing):
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                if not self._queue:
                    await self._run_warm(loop)
                    continue
                job = self._running = self._queue.popleft()
                job.state = "running"
                try:
                    await loop.run_in_executor(self._executor, self._decode, job, loop)
                finally:
                    self._running = None
        finally:
            self._executor.shutdown(wait=False)

    async def _run_warm(self, loop: asyncio.AbstractEventLoop) -> None:
        warm = self._warming = self._warms.pop()
        try:
            done = await loop.run_in_executor(self._executor, self._warm, warm)
        finally:
            self._warming = None
        if done:
            self.warms_done += 1
        elif warm.stop.is_set() and not warm.replaced and not self._closing:
            self._enqueue(WarmJob(warm.warm))  # pre-empted by an edit: resume it after

    def close(self) -> None:
        """Refuse new jobs; end every job with Error(shutting_down)."""
        self._closing = True
        self._warms.clear()
        if self._warming:
            self._warming.stop.set()
        for job in list(self._jobs.values()):
            self._stop(job, "shutting_down")
        self._wakeup.set()

    # ------------------------------------------------------------ worker thread

    def _decode(self, job: DaemonJob, loop: asyncio.AbstractEventLoop) -> None:
        """Run one job to its end; the boundary where engine failures become Errors."""

        def post(message: protocol.Message | CompletionStep | CompletionResult) -> None:
            loop.call_soon_threadsafe(self._deliver, job, message)

        with self._boundary(job, post):
            if isinstance(job.edit, Completion):
                self._complete(job, post)
            else:
                self._edit(job, post)

    def _edit(self, job: DaemonJob, post: Send) -> None:
        edit = job.edit
        stream = JobStream(edit.job_id, post, self.progress_interval, job.queue_position)
        events = self.engine.edit(edit.text, edit.instruction, path=edit.path, language=edit.language,
                                  method=edit.method, options=edit.options, region=edit.region,
                                  retry_unchanged=edit.retry_unchanged, should_stop=job.stop.is_set)
        terminal: protocol.Message = protocol.Error(
            code="internal", message="the engine ended without a result", job_id=edit.job_id)
        with contextlib.closing(events):  # the engine files the prompt's KV cache on close, on this thread
            for event in events:
                if isinstance(event, Result):
                    terminal = self._terminal(job, event, stream)
                    break
                job.tokens = event.stats.tokens
                stream.step(event.text, event.chars, event.stats, event.attempt)
        self.cache_usage = self._read_cache_usage()
        post(terminal)

    def _complete(self, job: DaemonJob, post: Send) -> None:
        """Run a completion job: its events go to its sender as the engine yields them."""
        terminal: protocol.Message | CompletionResult = protocol.Error(
            code="internal", message="the engine ended without a result", job_id=job.edit.job_id)
        with contextlib.closing(self.engine.complete(job.edit, should_stop=job.stop.is_set)) as events:
            for event in events:
                job.tokens = event.stats.tokens
                if isinstance(event, CompletionStep):
                    post(event)
                    continue
                log.info("job %s %s: %d tokens in %.2fs (%d cached, prediction %d accepted)", job.edit.job_id,
                         event.finish_reason, event.stats.tokens, event.stats.seconds, event.stats.cached_tokens,
                         event.prediction.accepted)
                cancelled = event.finish_reason == "cancelled"
                terminal = self._stopped_message(job, job.stop_reason, event.text, event.stats) if cancelled else event
                break
        self.cache_usage = self._read_cache_usage()
        post(terminal)

    @contextlib.contextmanager
    def _boundary(self, job: DaemonJob, post: Send) -> Iterator[None]:
        """Where engine failures become the job's Error."""
        try:
            yield
        except JobError as exc:
            log.info("job %s refused: %s (%s)", job.edit.job_id, exc.code, exc.message)
            post(protocol.Error(code=exc.code, message=exc.message, job_id=job.edit.job_id))
        except Exception as exc:  # noqa: BLE001 - the worker must survive any engine failure
            log.exception("job %s failed", job.edit.job_id)
            post(protocol.Error(code="model_error", message=f"the engine failed: {exc}", job_id=job.edit.job_id))

    def _warm(self, job: WarmJob) -> bool:
        """Run one warm; whether it finished (a stopped or failed one did not). Never raises:
        a warm has no one to report to but the log."""
        warm = job.warm
        try:
            tokens = self.engine.warm(warm.text, path=warm.path, language=warm.language, should_stop=job.stop.is_set)
        except Exception:  # noqa: BLE001 - the worker must survive any engine failure
            log.exception("warm of %r failed", job.name)
            return False
        self.cache_usage = self._read_cache_usage()
        stopped = job.stop.is_set()
        log.info("warm of %r %s: %d prompt tokens cached", job.name, "stopped" if stopped else "done", tokens)
        return not stopped

    def _terminal(self, job: DaemonJob, result: Result, stream: JobStream) -> protocol.Message:
        log.info("job %s %s: %d tokens in %.2fs (%d cached)", job.edit.job_id, result.finish_reason,
                 result.stats.tokens, result.stats.seconds, result.stats.cached_tokens)
        if result.finish_reason == "cancelled":
            stream.flush()
            return self._stopped_message(job, job.stop_reason, result.text, result.stats)
        return stream.done(result)
