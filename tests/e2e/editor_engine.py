"""The scripted engine (lsp_fake_engine) served from a thread, for tests that drive a
real editor as a subprocess: the editor's blazedit-lsp reaches it with engine "auto"
because the engine listens on the per-user default socket of ``runtime``
($XDG_RUNTIME_DIR of the editor's environment), so the editor needs no settings at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from engine.client import protocol
from lsp_fake_engine import FakeEngine, FakeJob

HINTED = {
    "def restock(stock, name, count):": "def restock(stock: dict[str, int], name: str, count: int) -> None:",
    "def total(stock):": "def total(stock: dict[str, int]) -> int:",
}
SOURCE = '''"""Inventory helpers."""

# AI: add type hints


def restock(stock, name, count):
    stock[name] = stock.get(name, 0) + count


def total(stock):
    return sum(stock.values())
'''
"""A file with an instruction comment; `add_hints` is what the scripted model makes of it."""


def add_hints(edit: protocol.Edit) -> tuple[str, str]:
    """A deterministic 'model': type hints on the two signatures, the rest kept."""
    text = edit.text
    for old, new in HINTED.items():
        text = text.replace(old, new)
    return text, "stop"


REVIEW_SOURCE = '''"""Inventory helpers."""


def restock(stock, name, count):
    stock[name] = stock.get(name, 0) + count


def total(stock):
    return sum(stock.values())


def empty(stock):
    return not stock
'''
"""A file without an instruction comment; `review_hints` types its three functions."""
REVIEW_HINTS = {
    "def restock(stock, name, count):": "def restock(stock: dict[str, int], name: str, count: int) -> None:",
    "def total(stock):": "def total(stock: dict[str, int]) -> int:",
    "def empty(stock):": "def empty(stock: dict[str, int]) -> bool:",
}


def review_hints(edit: protocol.Edit) -> tuple[str, str]:
    """Three one-line hunks, one per signature (the review tests)."""
    text = edit.text
    for old, new in REVIEW_HINTS.items():
        text = text.replace(old, new)
    return text, "stop"


@dataclass
class Served:
    engine: FakeEngine
    runtime: Path
    """The editor's XDG_RUNTIME_DIR."""
    loop: asyncio.AbstractEventLoop

    def release(self, job: FakeJob) -> None:
        """Let a held job (``engine.hold``) finish."""
        self.loop.call_soon_threadsafe(job.release.set)

    def __iter__(self):  # `fake, runtime = served`
        return iter((self.engine, self.runtime))


@contextlib.contextmanager
def serve_fake_engine(respond: Callable[[protocol.Edit], tuple[str, str]] = add_hints) -> Iterator[Served]:
    """Yield the engine and the runtime directory to give the editor as XDG_RUNTIME_DIR
    (short, under /tmp: a socket path has at most 107 bytes)."""
    runtime = Path(tempfile.mkdtemp(prefix="bz-", dir="/tmp"))
    (runtime / "blazedit").mkdir(mode=0o700)
    fake = FakeEngine(runtime / "blazedit" / "engine.sock")
    fake.respond = respond
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-engine", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
        yield Served(fake, runtime, loop)
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        shutil.rmtree(runtime, ignore_errors=True)
