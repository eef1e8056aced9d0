"""``engine_client()``: the backend (engine/client/backend.py) that serves an engine address.

The one place that reads an address's kind: ``openai:URL`` is an OpenAI-compatible
server (engine/client/remote.py), anything else the engine daemon
(engine/client/daemon_client.py). Apart from both so that neither imports the other.
"""

from __future__ import annotations

from engine.client.address import is_openai
from engine.client.backend import EngineBackend
from engine.client.daemon_client import EngineClient


def engine_client(address: str = "auto", *, engine_model: str | None = None, **daemon) -> EngineBackend:
    """The backend for ``address``: an OpenAI-compatible server's for ``openai:URL``,
    serving ``engine_model``; else the daemon's, with ``daemon``'s options (which a
    remote server ignores)."""
    if is_openai(address):
        from engine.client.remote import RemoteEngineClient  # the openai SDK: only when used

        return RemoteEngineClient(address, model=engine_model, client_name=daemon.get("client_name", "blazedit-lsp"))
    return EngineClient(address, **daemon)
