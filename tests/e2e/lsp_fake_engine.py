"""A scripted engine daemon for the language server's end-to-end tests.

It speaks the real engine.client.protocol on a Unix socket, in the test's own event
loop, so a test decides exactly when a job streams, ends or waits for a
cancel: the choreography tests (typing during generation, cancellation, guard
confirmations) need that, and a real model cannot give it deterministically.
The real daemon is used where the model's output matters (test_lsp.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.client import protocol

MODEL = protocol.ModelInfo(spec="fake", runtime="none", device="cpu", dtype="none", context_tokens=32768)


@dataclass(eq=False)
class FakeJob:
    edit: protocol.Edit
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    finish_reason: str = ""


class FakeEngine:
    """``respond(edit) -> (text, finish_reason)`` decides each job's result;
    with ``hold`` set, a job streams one Progress and then waits for
    ``job.release`` (or a Cancel) before its Done."""

    def __init__(self, path: Path):
        self.path = path
        self.respond: Callable[[protocol.Edit], tuple[str, str]] = lambda e: (e.text.upper(), "stop")
        self.hold = False
        self.unchanged_first = False
        """Stream the file unchanged first, then (for an Edit with ``retry_unchanged``)
        a second attempt with ``respond``'s text, as the engine does after an unchanged reply."""
        self.error: tuple[str, str] | None = None
        """(code, message): answer every job with this Error instead."""
        self.sketch: str | None = None
        self.partial: protocol.Partial | None = None
        """A reply that was part of the file: ``sketch`` streams, then the Done has
        ``respond``'s text (the merged file) and this ``partial``, as the engine sends them."""
        self.jobs: list[FakeJob] = []
        self.new_job = asyncio.Event()
        self.warms: list[protocol.Warm] = []
        """Every Warm received, in order (a Warm has no reply)."""
        self.new_warm = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.path))

    async def stop(self) -> None:
        """Like a killed daemon: the socket goes away, connections drop."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def next_job(self, timeout: float = 30) -> FakeJob:
        """The first job not yet returned by next_job, once it has started."""
        seen = getattr(self, "_seen", 0)
        while len(self.jobs) <= seen:
            self.new_job.clear()
            await asyncio.wait_for(self.new_job.wait(), timeout)
        self._seen = seen + 1
        job = self.jobs[seen]
        await asyncio.wait_for(job.started.wait(), timeout)
        return job

    async def next_warm(self, timeout: float = 30) -> protocol.Warm:
        """The first Warm not yet returned by next_warm."""
        seen = getattr(self, "_warms_seen", 0)
        while len(self.warms) <= seen:
            self.new_warm.clear()
            await asyncio.wait_for(self.new_warm.wait(), timeout)
        self._warms_seen = seen + 1
        return self.warms[seen]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        jobs: dict[str, FakeJob] = {}
        try:
            hello = protocol.decode_request(await protocol.read_frame(reader))
            assert isinstance(hello, protocol.Hello), hello
            await send(writer, protocol.Welcome(
                protocol=protocol.PROTOCOL_VERSION, version="fake", target=MODEL, draft=None))
            while True:
                msg = protocol.decode_request(await protocol.read_frame(reader))
                if isinstance(msg, protocol.Edit):
                    job = FakeJob(msg)
                    jobs[msg.job_id] = job
                    self.jobs.append(job)
                    self.new_job.set()
                    task = asyncio.ensure_future(self._run(job, writer))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif isinstance(msg, protocol.Warm):
                    self.warms.append(msg)
                    self.new_warm.set()
                elif isinstance(msg, protocol.Cancel):
                    if msg.job_id in jobs:
                        jobs[msg.job_id].cancelled.set()
                elif isinstance(msg, protocol.Status):
                    running = [protocol.JobInfo(job_id=j.edit.job_id, document=j.edit.document, state="running")
                               for j in jobs.values() if not j.ended.is_set()]
                    await send(writer, protocol.StatusReply(
                        version="fake", pid=os.getpid(), uptime_seconds=1.0, target=MODEL, draft=None, jobs=running,
                        clients=len(self._writers), cache_entries=0, cache_bytes=0, cache_budget_bytes=1 << 30))
                elif isinstance(msg, protocol.Shutdown):
                    await send(writer, protocol.Bye())
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for job in jobs.values():
                job.cancelled.set()  # a lost connection stops its jobs, as in the daemon
            self._writers.discard(writer)
            writer.close()

    async def _run(self, job: FakeJob, writer: asyncio.StreamWriter) -> None:
        edit = job.edit
        if self.error is not None:
            await send(writer, protocol.Error(code=self.error[0], message=self.error[1], job_id=edit.job_id))
            job.started.set()
            job.ended.set()
            return
        text, finish_reason = self.respond(edit)
        stats = protocol.Stats(prompt_tokens=len(edit.text) // 4)
        await send(writer, protocol.Started(job_id=edit.job_id, queue_position=0))
        attempt = 1
        if self.unchanged_first:
            await send(writer, protocol.Progress(job_id=edit.job_id, text=edit.text, chars=len(edit.text),
                                                 tokens_per_second=42.0, stats=stats))
            if not edit.retry_unchanged:
                text = edit.text
            else:
                attempt = 2
                await send(writer, protocol.Progress(job_id=edit.job_id, text="", chars=0, tokens_per_second=0.0,
                                                     stats=stats, attempt=attempt))
        streamed = self.sketch if self.sketch is not None else text
        half = streamed[: len(streamed) // 2]
        stats.tokens, stats.drafted, stats.accepted = len(half) // 4, len(half) // 4, len(half) // 5
        await send(writer, protocol.Progress(
            job_id=edit.job_id, text=half, chars=len(half), tokens_per_second=42.0, stats=stats, attempt=attempt))
        job.started.set()
        if self.hold:
            release = asyncio.ensure_future(job.release.wait())
            cancel = asyncio.ensure_future(job.cancelled.wait())
            await asyncio.wait({release, cancel}, return_when=asyncio.FIRST_COMPLETED)
            release.cancel()
            cancel.cancel()
        if job.cancelled.is_set():
            text, finish_reason = half, "cancelled"
        job.finish_reason = finish_reason
        stats.tokens = len(text) // 4
        with contextlib.suppress(ConnectionError):
            await send(writer, protocol.Done(
                job_id=edit.job_id, text=text, finish_reason=finish_reason, stats=stats, attempt=attempt,
                partial=self.partial))
        job.ended.set()


async def send(writer: asyncio.StreamWriter, message: protocol.Message) -> None:
    writer.write(protocol.encode(message))
    await writer.drain()
