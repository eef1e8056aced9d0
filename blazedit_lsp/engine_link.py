"""The server's one engine connection: made on first use, remade when the
engine settings change or after the engine went away.

Why lazy: starting an editor must not wait for (or spawn) an engine; the
first edit does, and says so in its progress.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from .config import Config

log = logging.getLogger(__name__)


def _default_factory(**kwargs: Any) -> Any:
    from .engine_client import EngineClient  # no torch: the client only speaks the protocol

    return EngineClient(**kwargs)


def unavailable_errors() -> tuple[type[BaseException], ...]:
    """The client library's EngineUnavailable, plus connection errors it may let through."""
    errors: tuple[type[BaseException], ...] = (ConnectionError, EOFError, asyncio.IncompleteReadError)
    try:
        from .engine_client import EngineUnavailable
    except ImportError:  # the client library is missing: connecting fails loudly elsewhere
        return errors
    return (EngineUnavailable, *errors)


class EngineLink:
    def __init__(self, factory: Callable[..., Any] = _default_factory) -> None:
        self._factory = factory
        self._client: Any = None
        self._key: tuple | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def client(self, config: Config) -> Any:
        """A connected EngineClient for ``config``; raises EngineUnavailable."""
        async with self._lock:
            if self._client is not None and self._key == config.engine_key():
                return self._client
            await self._close_locked()
            kwargs: dict[str, Any] = {"address": config.engine}
            for name in ("model", "draft"):
                if getattr(config, name) is not None:
                    kwargs[name] = getattr(config, name)
            if config.engine_token is not None:
                kwargs["token"] = config.engine_token
            log.info("connecting to the engine: %s", kwargs)
            client = self._factory(**kwargs)
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


async def _close_quietly(client: Any) -> None:
    try:
        await client.close()
    except Exception:  # boundary: closing a broken connection may fail; nothing to do
        log.debug("closing the engine client failed", exc_info=True)
