"""The server's one engine connection: made on first use, remade when the
engine settings change or after the engine went away.

Why lazy: starting an editor must not wait for (or spawn) an engine; the
first edit does, and says so in its progress.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from engine.client.daemon_client import EngineClient, EngineUnavailable, engine_client

from .config import Config

log = logging.getLogger(__name__)

UNREACHABLE = (EngineUnavailable, ConnectionError, EOFError)
"""What a use of the engine raises when it cannot be reached or went away: the
client's own error, and the connection errors that may still slip through."""


class EngineLink:
    def __init__(self, factory: Callable[..., EngineClient] = engine_client) -> None:
        self._factory = factory
        self._client: EngineClient | None = None
        self._key: tuple | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def client(self, config: Config) -> EngineClient:
        """A connected EngineClient for ``config``; raises EngineUnavailable."""
        async with self._lock:
            if self._client is not None and self._key == config.engine_key():
                return self._client
            await self._close_locked()
            log.info("connecting to the engine at %s (model %s, draft %s, engine model %s)", config.engine,
                     config.model, config.draft, config.engine_model)
            client = self._factory(address=config.engine, model=config.model, draft=config.draft,
                                   token=config.engine_token, engine_model=config.engine_model)
            try:
                await client.connect()
            except BaseException:
                await _close_quietly(client)
                raise
            self._client, self._key = client, config.engine_key()
            return client

    async def drop(self) -> None:
        """Forget the connection (it failed); the next use reconnects."""
        async with self._lock:
            await self._close_locked()

    async def _close_locked(self) -> None:
        client, self._client, self._key = self._client, None, None
        if client is not None:
            await _close_quietly(client)

    close = drop


async def _close_quietly(client: EngineClient) -> None:
    try:
        await client.close()
    except Exception:  # boundary: closing a broken connection may fail; nothing to do
        log.debug("closing the engine client failed", exc_info=True)
