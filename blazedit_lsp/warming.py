"""Prompt warming: ask the engine to prefill a document's prompt before an edit asks for it.

Why: the prompt puts the system message and the file before the instruction, so
that prefix can be computed while the user is still reading or typing; the edit
then starts from the engine's prefix cache instead of a cold prefill (17 s → under
1 s on a 2-core CPU for a 1,700-token file). A document is warmed when it is opened
and again once the user pauses after a change (``warmDelayMs`` after the last one).

Warming never hurts: a Warm has no reply, the daemon runs it only while no edit
waits, and every failure here is logged, never shown or raised. After the engine
could not be reached, warming waits until an edit reaches it (or the engine
settings change), so a missing engine is not retried on every keystroke pause.
"""

from __future__ import annotations

import asyncio
import logging

from . import actions
from .engine_link import UNREACHABLE
from .host import Host

log = logging.getLogger(__name__)


class Warmer:
    """The pending warm of each open document (a timer) and the warms being sent."""

    def __init__(self, ls: Host) -> None:
        self._ls = ls
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._sending: set[asyncio.Task] = set()
        self._failed_key: tuple | None = None
        """The engine settings under which the engine was last unreachable."""

    def opened(self, uri: str) -> None:
        self._schedule(uri, 0.0)

    def changed(self, uri: str) -> None:
        """Warm once the user pauses: a newer change restarts the timer."""
        self._schedule(uri, self._ls.config.warm_delay_ms / 1000)

    def closed(self, uri: str) -> None:
        if (timer := self._timers.pop(uri, None)) is not None:
            timer.cancel()

    def close(self) -> None:
        """Stop every pending warm (the server is shutting down)."""
        for uri in list(self._timers):
            self.closed(uri)

    def _schedule(self, uri: str, delay: float) -> None:
        self.closed(uri)
        if self._ls.config.warm == "off":
            return
        self._timers[uri] = asyncio.get_running_loop().call_later(delay, self._fire, uri)

    def _fire(self, uri: str) -> None:
        """The timer ran out: send the warm (a send is never cancelled by a newer change)."""
        self._timers.pop(uri, None)
        task = asyncio.ensure_future(self._send(uri))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, uri: str) -> None:
        """Warm ``uri`` as it is now, unless there is no point; a task boundary."""
        ls, config = self._ls, self._ls.config
        doc = ls.open_document(uri)
        if (doc is None or config.warm == "off" or ls.jobs.get(uri) is not None
                or len(doc.source.encode("utf-8", "surrogatepass")) > config.max_file_bytes):
            return
        if self._failed_key == config.engine_key() and not ls.engine.connected:
            return
        resolved = actions.resolve(doc.source, None, config)  # the text an edit from its instruction comment sends
        try:
            if not (await ls.engine.backend(config)).warms:  # nothing to prefill there: not even a probe
                return
            client = await ls.engine.client(config)
            await client.warm(resolved.text if resolved else doc.source, path=doc.path or "",
                              language=doc.language_id, document=uri)
            self._failed_key = None
            log.debug("warming %s", uri)
        except UNREACHABLE as e:
            self._failed_key = config.engine_key()
            await ls.engine.drop()
            log.info("not warming %s: the engine is not reachable (%s); warming waits for an edit to reach it", uri, e)
        except Exception:  # boundary: warming must never hurt the editor
            log.warning("warming %s failed", uri, exc_info=True)
