"""The resident engine daemon: loads the models once and serves every editor.

One asyncio server (a Unix socket in the per-user runtime directory, or TCP with a
token) speaks engine.client.protocol; engine.service runs the jobs. The connection loop
is the boundary: whatever a peer sends, it gets an ``Error`` or a closed
connection, and the daemon goes on serving the others.

Lifecycle: an flock'ed pid file keeps two daemons off one address (and a crashed
daemon's leftovers never block a new one); the socket is bound only once the
models are loaded, so "the socket answers" means "ready". It stops on
``Shutdown``, SIGTERM/SIGINT, after an idle timeout, or when the parent that
embedded it exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from engine import version as package_version
from engine.client import protocol
from engine.client.address import EXIT_ALREADY_RUNNING, Address, AddressError, PidLock, lock_owner, token_matches

log = logging.getLogger(__name__)

EXIT_FAILED = 2
HELLO_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
MAX_OUTBOX_MESSAGES = 1000  # replies waiting for a peer: progress comes at most ~20 a second
LOG_ROTATE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class ServeOptions:
    address: Address
    model: str
    draft: str | None = "default"
    runtime: str | None = None
    draft_runtime: str | None = None
    device: str | None = None
    dtype: str | None = None
    threads: int | None = None
    exact: bool = False  # only batch-invariant runtimes (Engine.load)
    token: str | None = None
    idle_timeout: float | None = None  # seconds without any request or job
    max_document_bytes: int = 4 * 1024 * 1024
    max_queue: int = 256
    max_clients: int = 64
    log_path: Path | None = None  # default: next to the socket
    parent_fd: int | None = None  # embedded: stop when this pipe reaches EOF (the parent died)
    openai: Address | None = None  # also serve the OpenAI-compatible HTTP API here (engine/openai_api.py)

    @property
    def log_file(self) -> Path:
        return self.log_path or self.address.log_path

    def check(self) -> None:
        """Refuse unsafe listeners before anything is loaded."""
        if not self.address.is_loopback() and not self.token:
            raise AddressError(
                f"refusing to listen on {self.address} without a token: anyone who can reach it could use "
                "the engine. Set BLAZEDIT_TOKEN or pass --token-file (or listen on 127.0.0.1)")
        if self.openai and not self.openai.is_loopback() and not self.token:
            raise AddressError(
                f"refusing to serve the OpenAI API on {self.openai.host}:{self.openai.port} without a token: anyone "
                "who can reach it could use the engine. Set BLAZEDIT_TOKEN or pass --token-file (or use 127.0.0.1)")


def serve(options: ServeOptions) -> int:
    """Run a daemon in this process until it stops; returns the exit status."""
    options.check()
    if not options.address.is_tcp:
        options.address.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = PidLock(options.address.lock_path)
    if not lock.acquire():
        owner = lock_owner(options.address.lock_path)
        print(f"blazedit engine: another engine daemon (pid {owner}) already serves {options.address}",
              file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    try:
        _log_to(options.log_file)  # only once the lock is ours: the log belongs to the live daemon
        print(f"blazedit engine: log file {options.log_file}", file=sys.stderr, flush=True)
        from engine.client.errors import JobError
        from engine.local_engine import Engine  # torch: only once we know we will serve

        log.info("pid %d loading %s (draft %s) for %s", os.getpid(), options.model, options.draft, options.address)
        started = time.monotonic()
        try:
            engine = Engine.load(options.model, options.draft, runtime=options.runtime,
                                 draft_runtime=options.draft_runtime, device=options.device, dtype=options.dtype,
                                 threads=options.threads, exact=options.exact)
        except JobError as exc:
            log.error("cannot load the models: %s", exc.message)
            print(f"blazedit engine: cannot load the models: {exc.message}", file=sys.stderr)
            return EXIT_FAILED
        log.info("models loaded in %.1fs", time.monotonic() - started)
        status = asyncio.run(Daemon(engine, options).run())
    finally:
        lock.release()
    if options.parent_fd is not None:
        _remove_private_dir(options)
    return status


def _remove_private_dir(options: ServeOptions) -> None:
    """An embedded daemon that ended cleanly leaves nothing behind in the runtime
    directory (its parent may have died before it could clean up)."""
    logging.shutdown()
    options.log_file.unlink(missing_ok=True)
    try:
        options.address.path.parent.rmdir()  # only if empty: never a user's directory with files
    except OSError:
        pass


def _log_to(path: Path) -> None:
    """All logging goes to ``path`` (owner-only); the previous big log is kept as .1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > LOG_ROTATE_BYTES:
        path.replace(path.with_name(path.name + ".1"))
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class DaemonConnection:
    """The daemon's end of one peer's connection: replies go through an outbox drained by a writer task, so the decoding
    worker never waits on a slow client; a peer that stops reading is dropped."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.peer = _peer_name(writer)
        self._outbox: asyncio.Queue[protocol.Message | None] = asyncio.Queue()
        self._writer_task = asyncio.create_task(self._write_loop())

    def send(self, message: protocol.Message) -> None:
        if self._outbox.qsize() >= MAX_OUTBOX_MESSAGES:
            if not self.writer.transport.is_closing():
                log.warning("dropped client %s: it left %d replies unread", self.peer, MAX_OUTBOX_MESSAGES)
                self.writer.transport.abort()  # its read loop ends, and with it its jobs
            return
        self._outbox.put_nowait(message)

    async def _write_loop(self) -> None:
        while (message := await self._outbox.get()) is not None:
            try:
                self.writer.write(_encode_or_refuse(message))
                await self.writer.drain()
            except (ConnectionError, RuntimeError):
                return  # the peer left; the read loop notices too

    async def close(self) -> None:
        """Flush what is queued (bounded), then close."""
        self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._writer_task), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            self._writer_task.cancel()
        self.writer.close()


def _encode_or_refuse(message: protocol.Message) -> bytes:
    """A reply over the frame limit (a huge regenerated file) becomes its job's Error."""
    try:
        return protocol.encode(message)
    except protocol.FrameTooLarge as exc:
        return protocol.encode(protocol.Error(code="too_large", message=f"the reply cannot be sent: {exc}",
                                              job_id=getattr(message, "job_id", None)))


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"


class Daemon:
    def __init__(self, engine, options: ServeOptions):
        from engine.service import Service  # imports engine.local_engine (torch)

        self.engine = engine
        self.options = options
        self.service = Service(engine, max_document_bytes=options.max_document_bytes, max_queue=options.max_queue)
        self.connections: set[DaemonConnection] = set()
        self.started = time.monotonic()
        self.last_request = time.monotonic()
        self._stop = asyncio.Event()
        self._stop_reason = ""
        self._bye_to: list[DaemonConnection] = []

    def stop(self, reason: str) -> None:
        if not self._stop.is_set():
            log.info("stopping: %s", reason)
            self._stop_reason = reason
            self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        openai_socket = self._bind_openai() if self.options.openai else None  # a taken port fails before anything
        server = await self._listen()
        worker = asyncio.create_task(self.service.run())
        openai = await self._serve_openai(openai_socket) if openai_socket else None
        worker.add_done_callback(self._worker_ended)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, signal.Signals(sig).name)
        if self.options.parent_fd is not None:
            loop.add_reader(self.options.parent_fd, self.stop, "the parent process exited")
        watch = asyncio.create_task(self._watch_idle()) if self.options.idle_timeout else None
        log.info("serving on %s (pid %d, log %s)", self.options.address, os.getpid(), self.options.log_file)
        print(f"blazedit engine: serving on {self.options.address} (pid {os.getpid()})", file=sys.stderr, flush=True)
        try:
            await self._stop.wait()
        finally:
            server.close()
            self.service.close()  # queued jobs end now, the running one within one forward pass
            await asyncio.wait([worker], timeout=60)
            if openai:
                openai.should_exit = True  # its streams have ended with the jobs
                await asyncio.wait([openai.done], timeout=60)
            for conn in self._bye_to:
                conn.send(protocol.Bye())
            await asyncio.gather(*(c.close() for c in list(self.connections)))
            if watch:
                watch.cancel()
            if not self.options.address.is_tcp:
                self.options.address.path.unlink(missing_ok=True)
            log.info("stopped (%s)", self._stop_reason)
        return 0

    def _worker_ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception():
            log.error("the decoding worker failed", exc_info=task.exception())
            self.stop("the decoding worker failed")

    async def _listen(self) -> asyncio.AbstractServer:
        address = self.options.address
        try:
            if address.is_tcp:
                return await asyncio.start_server(self._handle, address.host, address.port)
            return await self._listen_unix(address.path)
        except OSError as exc:
            raise AddressError(f"cannot listen on {address}: {exc.strerror or exc}") from None

    def _bind_openai(self):
        from engine import openai_api  # Starlette and uvicorn: the [openai] extra

        return openai_api.bind(self.options.openai)

    async def _serve_openai(self, sock):
        from engine import openai_api

        address = self.options.openai
        settings = openai_api.Settings(token=self.options.token,
                                       max_body_bytes=4 * self.options.max_document_bytes)  # file and prediction
        server = await openai_api.serve(self.service, sock, settings, max_clients=self.options.max_clients)
        log.info("serving the OpenAI API on http://%s:%d/v1", address.host, address.port)
        print(f"blazedit engine: OpenAI API on http://{address.host}:{address.port}/v1", file=sys.stderr, flush=True)
        return server

    async def _listen_unix(self, path: Path) -> asyncio.AbstractServer:
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise AddressError(f"{path} exists and is not a socket; refusing to replace it")
            path.unlink()  # we hold the lock, so this is a crashed daemon's socket
        old_umask = os.umask(0o177)  # the socket is created 0600: only this user may connect
        try:
            server = await asyncio.start_unix_server(self._handle, path=str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        return server

    async def _watch_idle(self) -> None:
        """Stop after idle_timeout seconds with no job and no request (bounded polling)."""
        timeout = self.options.idle_timeout
        while True:
            await asyncio.sleep(min(timeout / 4, 5.0))
            quiet = time.monotonic() - max(self.last_request, self.service.last_active)
            if self.service.idle and quiet >= timeout:
                self.stop(f"idle for {quiet:.0f}s")
                return

    # ------------------------------------------------------------ connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The boundary: nothing a peer sends may escape from here."""
        conn = DaemonConnection(reader, writer)
        self.connections.add(conn)
        try:
            if await self._handshake(conn):
                await self._serve(conn)
        except Exception:  # noqa: BLE001 - one broken connection must not take the daemon down
            log.exception("connection from %s failed", conn.peer)
            conn.send(protocol.Error(code="internal", message="internal error; see the daemon log"))
        finally:
            self.service.drop_owner(conn)
            self.connections.discard(conn)
            await conn.close()
            log.info("client from %s disconnected", conn.peer)

    async def _handshake(self, conn: DaemonConnection) -> bool:
        try:
            body = await asyncio.wait_for(protocol.read_frame(conn.reader, protocol.HELLO_MAX_FRAME_BYTES),
                                          HELLO_TIMEOUT)
        except protocol.FrameTooLarge as exc:
            conn.send(protocol.Error(code="too_large", message=f"{exc} before hello"))
            return False
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return False
        try:
            hello = protocol.decode_request(body)
        except msgspec.DecodeError as exc:
            conn.send(protocol.Error(code="bad_request", message=f"malformed hello: {exc}"))
            return False
        if not isinstance(hello, protocol.Hello):
            code = "unauthorized" if self.options.token else "bad_request"
            conn.send(protocol.Error(code=code, message="the first message must be hello"))
            return False
        if self.options.token and not token_matches(hello.token, self.options.token):
            log.warning("refused a client from %s: missing or wrong token", conn.peer)
            conn.send(protocol.Error(code="unauthorized", message="missing or wrong token"))
            return False
        if hello.protocol != protocol.PROTOCOL_VERSION:
            conn.send(protocol.Error(code="protocol_version", message=(
                f"this daemon speaks protocol {protocol.PROTOCOL_VERSION}, the client {hello.protocol}: "
                "restart the daemon (blazedit engine stop) after upgrading")))
            return False
        if len(self.connections) > self.options.max_clients:  # counting this one
            log.warning("refused client %r from %s: %d clients already", hello.client, conn.peer,
                        len(self.connections) - 1)
            conn.send(protocol.Error(code="busy", message=f"the engine serves at most {self.options.max_clients} "
                                                          "clients at once; retry later"))
            return False
        log.info("client %r connected from %s", hello.client, conn.peer)
        conn.send(protocol.Welcome(
            protocol=protocol.PROTOCOL_VERSION, version=package_version(), target=self.engine.target,
            draft=self.engine.draft))
        return True

    async def _serve(self, conn: DaemonConnection) -> None:
        while True:
            try:
                body = await protocol.read_frame(conn.reader)
            except protocol.FrameTooLarge as exc:
                conn.send(protocol.Error(code="too_large", message=str(exc)))
                return  # the stream is out of step now
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            self.last_request = time.monotonic()
            try:
                request = protocol.decode_request(body)
            except msgspec.DecodeError as exc:
                if _raw(body).get("type") == "warm":  # a Warm has no reply, not even an error
                    log.info("ignored a malformed warm from %s: %s", conn.peer, exc)
                    continue
                conn.send(protocol.Error(code="bad_request", message=f"malformed request: {exc}",
                                         job_id=self._job_id_of(conn, body)))
                continue
            match request:
                case protocol.Edit():
                    self.service.submit(conn, conn.send, request)
                case protocol.Warm():
                    self.service.warm(request)
                case protocol.Cancel(job_id=job_id):
                    self.service.cancel(conn, job_id)
                case protocol.Status():
                    conn.send(self.status())
                case protocol.Shutdown():
                    log.info("shutdown requested by %s", conn.peer)
                    self._bye_to.append(conn)
                    self.stop("shutdown requested")
                case protocol.Hello():
                    conn.send(protocol.Error(code="bad_request", message="hello was already sent"))

    def _job_id_of(self, conn: DaemonConnection, body: bytes) -> str | None:
        """The job id of a malformed request, when it has a usable one, so that the
        client's job gets its terminal Error."""
        raw = _raw(body)
        job_id = raw.get("job_id")
        if isinstance(job_id, str) and raw.get("type") == "edit" and not self.service.has_job(conn, job_id):
            return job_id
        return None

    def status(self) -> protocol.StatusReply:
        entries, nbytes, budget = self.service.cache_usage
        return protocol.StatusReply(
            version=package_version(), pid=os.getpid(), uptime_seconds=time.monotonic() - self.started,
            target=self.engine.target, draft=self.engine.draft, jobs=self.service.job_infos(),
            clients=len(self.connections), cache_entries=entries, cache_bytes=nbytes, cache_budget_bytes=budget,
            address=str(self.options.address), log_path=str(self.options.log_file),
            idle_timeout_seconds=self.options.idle_timeout, jobs_accepted=self.service.jobs_accepted,
            warming=self.service.warming, warms_done=self.service.warms_done,
            runtime_choice=self.engine.choice.describe() if self.engine.choice else [],
            second=self.engine.second_target, peak_rss_bytes=_peak_rss_bytes())


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def _raw(body: bytes) -> dict:
    """A malformed request's body as a map, if it is one (else empty)."""
    try:
        raw = msgspec.msgpack.decode(body)
    except msgspec.DecodeError:
        return {}
    return raw if isinstance(raw, dict) else {}

