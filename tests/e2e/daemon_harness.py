"""Helpers for the daemon tests: a real `blazedit engine serve` process on a short
socket path, a raw protocol connection (to see exactly what goes over the wire),
and cold reference outputs from an in-process Engine with empty caches."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.client import protocol

MODEL = "tiny-random"
TIMEOUT = 30.0  # bound on any single wait in these tests


def short_dir() -> Path:
    """A directory short enough for AF_UNIX paths (< 108 bytes), unlike pytest's tmp_path."""
    return Path(tempfile.mkdtemp(prefix="bzd-", dir="/tmp"))


def free_port() -> int:
    """A TCP port nothing listens on now (for servers started with --tcp or --port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli", "engine", "serve", "--model", MODEL, "--threads", "1", *args]


class DaemonProcess:
    """`blazedit engine serve` in a child process, waited for until its socket answers."""

    def __init__(self, *args: str, directory: Path | None = None, env: dict | None = None):
        self.dir = directory or short_dir()
        self.socket = self.dir / "engine.sock"
        self.log = self.dir / "engine.log"
        where = ("--log-file", str(self.log)) if "--tcp" in args else ("--socket", str(self.socket))
        command = serve_command(*where, *args)
        with open(self.dir / "stderr.txt", "ab") as err:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                            env={**os.environ, **(env or {})})

    def wait_ready(self, address: tuple | None = None, timeout: float = 60.0) -> "DaemonProcess":
        """Bounded polling until a connect succeeds (the daemon binds only once loaded)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"daemon exited with {self.process.returncode}: {self.output()}"
            try:
                with socket.create_connection(address, 1) if address else _unix(self.socket):
                    return self
            except OSError:
                assert time.monotonic() < deadline, f"daemon not ready in {timeout}s: {self.output()}"
                time.sleep(0.05)

    def output(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.dir / "stderr.txt", self.log) if p.exists()]
        return "\n".join(parts)[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=TIMEOUT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


class RawConnection:
    """A protocol connection without the client library: every frame is visible."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path, hello: bool = True, token: str | None = None) -> "RawConnection":
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), TIMEOUT)
        conn = cls(reader, writer)
        if hello:
            await conn.send(protocol.Hello(client="test", token=token))
            assert isinstance(await conn.recv(), protocol.Welcome)
        return conn

    async def send(self, message: protocol.Message) -> None:
        await self.send_bytes(protocol.encode(message))

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> protocol.Message:
        body = await asyncio.wait_for(protocol.read_frame(self.reader), TIMEOUT)
        return protocol.decode_reply(body)

    async def recv_or_eof(self) -> protocol.Message | None:
        try:
            return await self.recv()
        except asyncio.IncompleteReadError:
            return None

    async def until_closed(self) -> list[protocol.Message]:
        """Everything the daemon sends until it closes the connection (bounded)."""
        messages = []
        while (message := await self.recv_or_eof()) is not None:
            messages.append(message)
        return messages

    async def job(self, job_id: str) -> list[protocol.Message]:
        """This job's messages through its terminal one (other jobs' are not expected here)."""
        messages = []
        while True:
            message = await self.recv()
            assert getattr(message, "job_id", None) == job_id, message
            messages.append(message)
            if isinstance(message, (protocol.Done, protocol.Error)):
                return messages

    async def close(self) -> None:
        self.writer.close()


def check_job_stream(messages: list[protocol.Message]) -> protocol.Message:
    """Queued? Started? Progress* then exactly one terminal message, last; returns it."""
    kinds = [type(m).__name__ for m in messages]
    assert kinds and kinds[-1] in ("Done", "Error"), kinds
    body = kinds[:-1]
    if body and body[0] == "Queued":
        body = body[1:]
    if body and body[0] == "Started":
        body = body[1:]
    assert all(k == "Progress" for k in body), kinds
    progress = [m for m in messages if isinstance(m, protocol.Progress)]
    if progress:  # a later attempt (a second ask, an apply pass) streams the file again from its start
        streamed = "".join(m.text for m in progress if m.attempt == progress[-1].attempt)
        assert progress[-1].chars == len(streamed)
    return messages[-1]


class Reference:
    """Cold outputs: a fresh Engine over the same loaded weights, with empty KV caches
    and no prefix cache, so nothing is reused."""

    def __init__(self):
        from engine.local_engine import Engine

        self._loaded = Engine.load(MODEL)
        self._memo: dict[tuple, str] = {}

    def text(self, edit: protocol.Edit) -> tuple[str, str]:
        from engine.local_engine import Engine, Result

        key = (edit.text, edit.instruction, edit.path, edit.method, edit.options.max_new_tokens,
               (edit.region.start, edit.region.end) if edit.region else None)
        if key not in self._memo:
            engine = Engine(self._loaded.loaded_target, self._loaded.loaded_draft, prefix_cache_bytes=0)
            events = engine.edit(edit.text, edit.instruction, path=edit.path, language=edit.language,
                                 method=edit.method, options=edit.options, region=edit.region)
            result = [e for e in events if isinstance(e, Result)][0]
            self._memo[key] = (result.text, result.finish_reason)
        return self._memo[key]
