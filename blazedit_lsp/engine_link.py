"""The server's one engine backend: made on first use, remade when the engine
settings change or after the engine went away.

Why lazy: starting an editor must not wait for (or spawn) an engine; the
first edit does, and says so in its progress.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from engine.client.backend import EngineBackend
from engine.client.connect import engine_client
from engine.client.errors import EngineUnavailable

from .config import Config

log = logging.getLogger(__name__)

UNREACHABLE = (EngineUnavailable, ConnectionError, EOFError)
"""What a use of the engine raises when it cannot be reached or went away: the
client's own error, and the connection errors that may still slip through."""


class EngineLink:
    def __init__(self, factory: Callable[..., EngineBackend] = engine_client) -> None:
        self._factory = factory
        self._backend: EngineBackend | None = None
        self._connected = False
        self._key: tuple | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._connected

    async def backend(self, config: Config) -> EngineBackend:
        """The backend for ``config``, not necessarily connected: to ask what it can do."""
        async with self._lock:
            return await self._backend_locked(config)

    async def client(self, config: Config) -> EngineBackend:
        """The backend for ``config``, connected; raises EngineUnavailable."""
        async with self._lock:
            backend = await self._backend_locked(config)
            if not self._connected:
                try:
                    await backend.connect()
                except BaseException:
                    await self._close_locked()
                    raise
                self._connected = True
            return backend

    async def _backend_locked(self, config: Config) -> EngineBackend:
        if self._backend is not None and self._key == config.engine_key():
            return self._backend
        await self._close_locked()
        log.info("connecting to the engine at %s (model %s, draft %s, engine model %s)", config.engine,
                 config.model, config.draft, config.engine_model)
        self._backend = self._factory(address=config.engine, model=config.model, draft=config.draft,
                                      token=config.engine_token, engine_model=config.engine_model)
        self._key = config.engine_key()
        return self._backend

    async def drop(self) -> None:
        """Forget the backend (it failed); the next use reconnects."""
        async with self._lock:
            await self._close_locked()

    async def _close_locked(self) -> None:
        backend, self._backend, self._key, self._connected = self._backend, None, None, False
        if backend is not None:
            await _close_quietly(backend)

    close = drop


async def _close_quietly(backend: EngineBackend) -> None:
    try:
        await backend.close()
    except Exception:  # boundary: closing a broken connection may fail; nothing to do
        log.debug("closing the engine backend failed", exc_info=True)
