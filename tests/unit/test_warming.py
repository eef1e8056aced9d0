"""blazedit_lsp.warming without a server: what is warmed, and the pause after an
unreachable engine (tests/e2e/test_lsp_jobs.py drives it through the real server)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import msgspec
from pygls.workspace import TextDocument

from blazedit_lsp.config import Config
from blazedit_lsp.engine_link import EngineLink
from blazedit_lsp.jobs import JobRegistry, LspJob
from blazedit_lsp.warming import Warmer
from engine.client.errors import EngineUnavailable

URI = "file:///work/demo.py"
TEXT = "def f():\n    return 1\n"


class Engine:
    """EngineLink's factory: every client it makes is recorded; ``down`` makes connecting fail."""

    def __init__(self) -> None:
        self.down = False
        self.connects: list[str] = []
        self.warms: list[tuple[str, dict]] = []

    def __call__(self, address: str, **_) -> SimpleNamespace:
        async def connect():
            self.connects.append(address)
            if self.down:
                raise EngineUnavailable(f"no engine daemon answers at {address}")

        async def warm(text: str, **where):
            self.warms.append((text, where))

        async def close():
            pass

        return SimpleNamespace(connect=connect, warm=warm, close=close, warms=True)

    @staticmethod
    async def until(predicate) -> None:
        """Bounded wait until ``predicate()``, re-checked each time the loop comes round."""
        async with asyncio.timeout(5):
            while not predicate():
                await asyncio.sleep(0)


def host(fake: Engine, text: str = TEXT, **config) -> SimpleNamespace:
    doc = TextDocument(URI, text, language_id="python")
    return SimpleNamespace(config=Config(**config), jobs=JobRegistry(), engine=EngineLink(fake),
                           open_document=lambda uri: doc if uri == URI else None)


async def test_warms_the_text_an_edit_from_its_comment_sends():
    engine = Engine()
    Warmer(host(engine, "# AI: add a docstring\n" + TEXT)).opened(URI)
    await engine.until(lambda: engine.warms)
    assert engine.warms == [(TEXT, {"path": "/work/demo.py", "language": "python", "document": URI})]


async def test_skips_large_documents_and_documents_being_edited():
    engine = Engine()
    small = host(engine, max_file_bytes=10)
    Warmer(small).opened(URI)
    busy = host(engine)
    busy.jobs.add(LspJob(uri=URI, base=TEXT, sent=TEXT, instruction="x"))
    Warmer(busy).opened(URI)
    Warmer(host(engine, engine="/elsewhere.sock")).opened(URI)  # warms after the two skipped ones
    await engine.until(lambda: engine.warms)
    assert engine.connects == ["/elsewhere.sock"]


async def test_an_unreachable_engine_pauses_warming_until_the_settings_change():
    engine = Engine()
    engine.down = True
    ls = host(engine, engine="/a.sock")
    warmer = Warmer(ls)
    warmer.opened(URI)
    await engine.until(lambda: engine.connects and not warmer._sending)  # the failed try is over
    warmer.opened(URI)  # paused: no new try
    await engine.until(lambda: not warmer._timers and not warmer._sending)  # it ran (a newer one would replace it)
    ls.config = msgspec.structs.replace(ls.config, engine="/b.sock")
    warmer.opened(URI)
    await engine.until(lambda: len(engine.connects) == 2)
    print("CONNECTS", engine.connects); assert engine.connects == ["/a.sock", "/b.sock"] and engine.warms == []


async def test_closing_and_a_newer_change_drop_the_pending_warm():
    engine = Engine()
    ls = host(engine, warm_delay_ms=60_000)
    warmer = Warmer(ls)
    warmer.changed(URI)
    warmer.changed(URI)
    assert len(warmer._timers) == 1  # the newer change restarted the one timer
    warmer.closed(URI)
    assert warmer._timers == {}
    ls.config = msgspec.structs.replace(ls.config, warm="off")
    warmer.opened(URI)
    assert warmer._timers == {}
