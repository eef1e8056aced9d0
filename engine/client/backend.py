"""What the language server and the CLI need of whatever serves an edit: ``EngineBackend``.

Two backends implement it: engine/client/daemon_client.py's ``EngineClient`` (the
engine daemon, local or on another machine) and engine/client/remote.py's
``RemoteEngineClient`` (an OpenAI-compatible server). Callers ask a backend what it
can do (``warms``, ``manages``), never which one it is, so a third backend is one new
module plus a line in engine/client/connect.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Protocol

from engine.client import protocol


class EngineBackend(Protocol):
    """``async for msg in backend.edit(protocol.Edit(...))`` yields Queued/Started/Progress,
    then exactly one Done or Error; failing to reach the engine raises ``EngineUnavailable``."""

    warms: bool
    """Whether ``warm`` prefills the prompt (else it does nothing, and is not worth a connection)."""
    manages: bool
    """Whether blazedit runs this engine: its status has a pid, caches and a log, and ``shutdown`` stops it."""
    address: object
    """Where it is, for messages."""
    log_path: Path | None

    async def connect(self) -> protocol.Welcome:
        """Reach the engine (a no-op once done) and learn what it serves."""
        ...

    def edit(self, edit: protocol.Edit) -> AsyncIterator[protocol.Message]:
        """Stream a job's messages; leaving the loop early cancels the job."""
        ...

    async def warm(self, text: str, *, path: str = "", language: str | None = None,
                   document: str | None = None) -> None:
        ...

    async def cancel(self, job_id: str) -> None:
        """Stop a job; its stream then ends with Done(cancelled)."""
        ...

    async def status(self) -> protocol.StatusReply:
        ...

    async def shutdown(self) -> None:
        ...

    async def close(self) -> None:
        ...

    async def __aenter__(self) -> "EngineBackend":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
