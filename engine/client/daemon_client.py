"""Client of the engine daemon: connect, auto-spawn, reconnect, stream jobs.

The language server and `blazedit edit|engine status|engine stop` use it. It lives
next to the protocol and, like it, never pulls in torch: it speaks engine.client.protocol
over a socket and starts the daemon as a separate process (``python -m engine.cli
engine serve``). One connection carries many jobs; a reader task routes each reply
to its job's queue. It is one ``EngineBackend`` (engine/client/backend.py).

Addresses: ``auto`` (the per-user default socket; spawn a detached daemon there
if none answers), ``embedded`` (a private daemon on a private socket that exits
with this process), a socket path, or ``tcp://HOST:PORT``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import AsyncIterator

import engine
from engine.client import protocol
from engine.client.address import (EXIT_ALREADY_RUNNING, TOKEN_ENV, Address, AddressError, default_address,
                            lock_owner, parse_address, runtime_dir)
from engine.client.backend import EngineBackend
from engine.client.errors import EngineUnavailable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 30.0


class ClientConnection:
    """The client's end of one open connection, and the jobs and requests waiting on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, welcome: protocol.Welcome):
        self.reader, self.writer, self.welcome = reader, writer, welcome
        self.jobs: dict[str, asyncio.Queue] = {}
        self.status_waiters: deque[asyncio.Future] = deque()
        self.bye: asyncio.Future = asyncio.get_running_loop().create_future()
        self.lost: EngineUnavailable | None = None
        self.reader_task = asyncio.create_task(self._read_loop())

    @property
    def alive(self) -> bool:
        return self.lost is None

    async def send(self, message: protocol.Message) -> None:
        if self.lost:
            raise self.lost
        try:
            self.writer.write(protocol.encode(message))
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            self._fail(EngineUnavailable(f"lost the connection to the engine daemon: {exc}"))
            raise self.lost from None

    async def _read_loop(self) -> None:
        """The boundary of the client: whatever happens here ends the connection, and
        every waiter learns why."""
        reason = "the engine daemon closed the connection"
        try:
            while True:
                self._route(protocol.decode_reply(await protocol.read_frame(self.reader)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (protocol.FrameTooLarge, ValueError) as exc:  # msgspec.DecodeError is a ValueError
            reason = f"the engine daemon sent a bad frame ({exc})"
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave jobs waiting forever
            log.exception("engine connection reader failed")
            reason = f"the engine client failed ({exc!r})"
        self._fail(EngineUnavailable(reason))

    def _route(self, message: protocol.Message) -> None:
        match message:
            case protocol.StatusReply():
                if self.status_waiters and not (waiter := self.status_waiters.popleft()).done():
                    waiter.set_result(message)  # (done: its caller timed out)
            case protocol.Bye():
                if not self.bye.done():
                    self.bye.set_result(message)
            case protocol.Error(job_id=None):
                self._fail(EngineUnavailable(f"the engine daemon refused the connection: {message.message}"))
            case protocol.Queued() | protocol.Started() | protocol.Progress() | protocol.Done() | protocol.Error():
                queue = self.jobs.get(message.job_id)
                if queue is not None:
                    queue.put_nowait(message)

    def _fail(self, error: EngineUnavailable) -> None:
        """The connection is over: every waiter gets ``error``."""
        if self.lost:
            return
        self.lost = error
        for queue in self.jobs.values():
            queue.put_nowait(error)
        while self.status_waiters:
            waiter = self.status_waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if not self.bye.done():
            self.bye.set_exception(error)
            self.bye.exception()  # retrieved: nobody may be waiting for it
        self.writer.close()

    async def close(self) -> None:
        self._fail(EngineUnavailable("the client closed the connection"))
        self.reader_task.cancel()
        await asyncio.gather(self.reader_task, return_exceptions=True)


class EngineClient(EngineBackend):
    """The engine daemon's backend: jobs over one connection, spawning the daemon where allowed."""

    warms = True
    manages = True

    def __init__(self, address: str = "auto", *, model: str | None = None, draft: str | None = None,
                 token: str | None = None, spawn: bool | None = None, spawn_timeout: float = 120.0,
                 serve_args: list[str] | None = None, client_name: str = "blazedit-lsp"):
        self.mode = address if address in ("auto", "embedded") else "address"
        try:
            self.address: Address | None = None if address == "embedded" else (
                default_address() if address == "auto" else parse_address(address))
        except AddressError as exc:
            raise EngineUnavailable(f"bad engine address {address!r}: {exc}") from None
        self.model, self.draft = model, draft
        self.token = token or os.environ.get(TOKEN_ENV) or None
        self.spawn = (self.mode != "address") if spawn is None else spawn
        self.spawn_timeout = spawn_timeout
        self.serve_args = list(serve_args or [])
        self.client_name = client_name
        self._conn: ClientConnection | None = None
        self._connect_lock = asyncio.Lock()
        self._process: subprocess.Popen | None = None
        self._parent_pipe: int | None = None  # embedded: the child exits when this closes
        self._private_dir: Path | None = None

    @property
    def log_path(self) -> Path | None:
        return self.address.log_path if self.address else None

    @property
    def welcome(self) -> protocol.Welcome | None:
        return self._conn.welcome if self._conn else None

    # ------------------------------------------------------------ public API

    async def connect(self) -> protocol.Welcome:
        """Connect (spawning the daemon if allowed and absent); a no-op when connected."""
        return (await self._connected()).welcome

    async def edit(self, edit: protocol.Edit) -> AsyncIterator[protocol.Message]:
        """Stream a job's replies. Leaving the loop early cancels the job."""
        conn = await self._connected()
        if edit.job_id in conn.jobs:
            raise ValueError(f"job id {edit.job_id!r} is already running on this client")
        queue: asyncio.Queue = asyncio.Queue()
        conn.jobs[edit.job_id] = queue
        finished = False
        try:
            await conn.send(edit)
            while True:
                item = await queue.get()
                if isinstance(item, EngineUnavailable):
                    finished = True
                    raise EngineUnavailable(
                        f"{item} during job {edit.job_id}; nothing was applied. {self._log_hint()}".strip())
                finished = isinstance(item, (protocol.Done, protocol.Error))
                yield item
                if finished:
                    return
        finally:
            conn.jobs.pop(edit.job_id, None)
            if not finished and conn.alive:
                conn.writer.write(protocol.encode(protocol.Cancel(job_id=edit.job_id)))

    async def warm(self, text: str, *, path: str = "", language: str | None = None,
                   document: str | None = None) -> None:
        """Ask the daemon to prefill the prompt prefix of ``text`` ahead of an edit; returns
        once sent (a Warm has no reply). Connects (or spawns) like ``edit``."""
        conn = await self._connected()
        await conn.send(protocol.Warm(text=text, path=path, language=language, document=document))

    async def cancel(self, job_id: str) -> None:
        """Ask the daemon to stop a job; its stream then ends with Done(cancelled)."""
        if self._conn and self._conn.alive:
            await self._conn.send(protocol.Cancel(job_id=job_id))

    async def status(self) -> protocol.StatusReply:
        conn = await self._connected()
        waiter = asyncio.get_running_loop().create_future()
        conn.status_waiters.append(waiter)
        await conn.send(protocol.Status())
        return await asyncio.wait_for(waiter, REPLY_TIMEOUT)

    async def shutdown(self) -> None:
        """Stop the daemon (its jobs end with Error(shutting_down)) and wait for its Bye."""
        conn = await self._connected(spawn=False)
        await conn.send(protocol.Shutdown())
        try:
            await asyncio.wait_for(asyncio.shield(conn.bye), REPLY_TIMEOUT)
        except EngineUnavailable:
            pass  # it closed without a Bye: stopped all the same
        await conn.close()

    async def close(self) -> None:
        """Close the connection; an embedded daemon exits with it."""
        if self._conn:
            await self._conn.close()
            self._conn = None
        if self._parent_pipe is not None:
            os.close(self._parent_pipe)
            self._parent_pipe = None
        if self.mode == "embedded" and self._process:
            await _wait_process(self._process, CONNECT_TIMEOUT)
        elif self._process:
            self._process.poll()  # reap a detached daemon that has exited; a live one keeps running
        self._process = None
        if self._private_dir:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    # ------------------------------------------------------------ connecting

    async def _connected(self, spawn: bool | None = None) -> ClientConnection:
        async with self._connect_lock:
            if self._conn and self._conn.alive:
                return self._conn
            if self._conn:
                await self._conn.close()
                self._conn = None
            spawn = self.spawn if spawn is None else spawn
            if self.mode == "embedded" and self.address is None:
                self._private_dir = Path(tempfile.mkdtemp(prefix="embedded-", dir=runtime_dir()))
                self.address = Address(path=self._private_dir / "engine.sock")
            try:
                self._conn = await self._open()
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                if not spawn or self.address.is_tcp:
                    raise EngineUnavailable(
                        f"no engine daemon answers at {self.address} ({_reason(exc)}); start one with "
                        f"`blazedit engine serve{_address_flag(self.address)}`") from None
                self._conn = await self._spawn_and_connect()
            try:
                self._check_models(self._conn.welcome)
            except EngineUnavailable:
                await self._conn.close()
                self._conn = None
                raise
            return self._conn

    async def _open(self) -> ClientConnection:
        if self.address.is_tcp:
            opening = asyncio.open_connection(self.address.host, self.address.port)
        else:
            opening = asyncio.open_unix_connection(str(self.address.path))
        reader, writer = await asyncio.wait_for(opening, CONNECT_TIMEOUT)
        try:
            writer.write(protocol.encode(protocol.Hello(client=self.client_name, token=self.token)))
            await writer.drain()
            reply = protocol.decode_reply(await asyncio.wait_for(protocol.read_frame(reader), REPLY_TIMEOUT))
        except ValueError as exc:  # msgspec.DecodeError, FrameTooLarge: something else listens there
            writer.close()
            raise EngineUnavailable(f"{self.address} does not speak the engine protocol ({exc})") from None
        except BaseException:
            writer.close()
            raise
        if isinstance(reply, protocol.Error):
            writer.close()
            raise EngineUnavailable(f"the engine daemon at {self.address} refused us: {reply.message}")
        if not isinstance(reply, protocol.Welcome):
            writer.close()
            raise EngineUnavailable(f"the engine daemon at {self.address} answered hello with {type(reply).__name__}")
        return ClientConnection(reader, writer, reply)

    def _check_models(self, welcome: protocol.Welcome) -> None:
        if self.model and welcome.target.spec != self.model:
            raise EngineUnavailable(
                f"the engine daemon at {self.address} serves {welcome.target.spec}, not {self.model}: stop it "
                f"(`blazedit engine stop{_address_flag(self.address)}`) or use another address")

    async def _spawn_and_connect(self) -> ClientConnection:
        """Start a daemon on our address and wait until it answers, or fail with its log."""
        if not engine.installed():
            raise EngineUnavailable(
                f"no engine daemon answers at {self.address}, and this installation cannot start one: the engine "
                f"is not installed (no torch). Install it ({engine.INSTALL_HINT}) or use a running daemon's address")
        deadline = time.monotonic() + self.spawn_timeout
        process = self._spawn()
        delay = 0.02
        while True:
            try:
                return await self._open()
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                pass  # not listening yet
            status = process.poll()
            if status == EXIT_ALREADY_RUNNING and lock_owner(self.address.lock_path) is None:
                process = self._spawn()  # the other daemon was stopping: try again
            elif status is not None and status != EXIT_ALREADY_RUNNING:
                raise EngineUnavailable(
                    f"the engine daemon failed to start (exit status {status}){_last_line(self.log_path)}. "
                    f"{self._log_hint()}")
            if time.monotonic() > deadline and not self._still_loading(process):
                raise EngineUnavailable(
                    f"the engine daemon did not answer at {self.address} within {self.spawn_timeout:.0f}s. "
                    f"{self._log_hint()}")
            await asyncio.sleep(delay)  # bounded polling: the daemon binds its socket once models are loaded
            delay = min(delay * 1.5, 0.25)

    def _still_loading(self, process: subprocess.Popen) -> bool:
        """Alive and writing its log within ``spawn_timeout``: a daemon's first load of a model
        pair calibrates the machine (engine/calibration.py, minutes), logging each step."""
        try:
            return process.poll() is None and self.log_path is not None and \
                time.time() - self.log_path.stat().st_mtime < self.spawn_timeout
        except OSError:
            return False

    def _spawn(self) -> subprocess.Popen:
        command = [sys.executable, "-m", "engine.cli", "engine", "serve", "--socket", str(self.address.path)]
        if self.model:
            command += ["--model", self.model]
        if self.draft:
            command += ["--draft", self.draft]
        command += self.serve_args
        embedded = self.mode == "embedded"
        pass_fds: tuple[int, ...] = ()
        if embedded:
            if self._parent_pipe is not None:
                os.close(self._parent_pipe)  # a previous child: let it go
            child_end, self._parent_pipe = os.pipe()
            pass_fds = (child_end,)
            command += ["--parent-fd", str(child_end)]
        log.info("starting the engine daemon: %s (log %s)", " ".join(command), self.log_path)
        self.address.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, pass_fds=pass_fds,
                start_new_session=not embedded,  # detached: survives this process and its terminal
            )
        finally:
            os.close(log_fd)
            if embedded:
                os.close(child_end)
        self._process = process
        return process

    def _log_hint(self) -> str:
        return f"Daemon log: {self.log_path}" if self.log_path and not self.address.is_tcp else ""


async def _wait_process(process: subprocess.Popen, timeout: float) -> None:
    """Wait (bounded) for a child to exit; kill it if it does not."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if process.poll() is None:
        process.kill()
        process.wait()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no socket"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _address_flag(address: Address) -> str:
    return f" --tcp {address.host}:{address.port}" if address.is_tcp else f" --socket {address.path}"


def _last_line(path: Path | None) -> str:
    """The log's last non-empty line: usually the reason a daemon did not start."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except (OSError, AttributeError):
        return ""
    return f": {lines[-1].strip()}" if lines else ""
