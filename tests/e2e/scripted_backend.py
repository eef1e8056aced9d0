"""A third engine backend, written against engine/client/backend.py's ``EngineBackend``
alone, and the real language server running on it (``python -m scripted_backend``).

Its "model" is a function of the prompt's messages whose reply streams a few
characters at a time: everything else (which prompts to send, reading the file out
of the reply's fence, asking again, Started/Progress/Done) is engine/client/attempts.py's,
as for the daemon and the OpenAI-compatible server. test_lsp_backend.py drives it.
"""

from __future__ import annotations

import sys
from typing import AsyncIterator, Iterator

from blazedit_lsp import server
from blazedit_lsp.engine_link import EngineLink
from engine.client import protocol
from engine.client.attempts import EditAttempts, JobStream, Reply
from engine.client.prompts import PLAN_FIRST, EditPrompt, reply_reader

MODEL = protocol.ModelInfo(spec="scripted", runtime="none", device="none", dtype="none", context_tokens=32768)
PIECE = 7
"""Characters per streamed piece: lines arrive split, as tokens split them."""


def model(edit: protocol.Edit, prompt: EditPrompt) -> str:
    """The reply: the file unchanged, unless the prompt asks to plan first; then a
    sentence and the file with ``fetch`` renamed to ``get``."""
    asked = prompt.messages[-1]["content"]
    body = edit.text.replace("\r\n", "\n")
    if PLAN_FIRST not in asked:
        return f"{prompt.fence}python\n{body}{prompt.fence}\n"
    return f"I will rename fetch.\n{prompt.fence}python\n{body.replace('fetch', 'get')}{prompt.fence}\n"


def pieces(reply: str) -> Iterator[str]:
    return (reply[i:i + PIECE] for i in range(0, len(reply), PIECE))


class ScriptedBackend:
    """An ``EngineBackend`` (structurally: no base class) that serves edits from ``model``."""

    warms = False
    manages = False
    log_path = None

    def __init__(self, address: str, **_options) -> None:
        self.address = address

    async def connect(self) -> protocol.Welcome:
        return protocol.Welcome(protocol=protocol.PROTOCOL_VERSION, version="0", target=MODEL, draft=None)

    async def edit(self, edit: protocol.Edit) -> AsyncIterator[protocol.Message]:
        posted: list[protocol.Message] = []
        stream = JobStream(edit.job_id, posted.append, interval=0)
        attempts = EditAttempts.of(edit)
        attempt = attempts.first
        while attempt is not None:
            reader = reply_reader(attempt.prompt, prefilled=False)
            stats = protocol.Stats()
            for tokens, piece in enumerate(pieces(model(edit, attempt.prompt)), 1):
                stats = protocol.Stats(tokens=tokens, seconds=tokens / 100)
                stream.step(reader.feed(piece), reader.chars, stats, attempt.number)
                while posted:
                    yield posted.pop(0)
            attempt = attempts.next(Reply(reader.result(complete=True), "stop", stats, attempt.number))
        done = stream.done(attempts.final)
        for message in [*posted, done]:
            yield message

    async def warm(self, text: str, *, path: str = "", language: str | None = None,
                   document: str | None = None) -> None:
        """Nothing to prefill (``warms`` is False)."""

    async def cancel(self, job_id: str) -> None:
        """Every job ends at once."""

    async def status(self) -> protocol.StatusReply:
        return protocol.StatusReply(version="0", pid=0, uptime_seconds=0.0, target=MODEL, draft=None, jobs=[],
                                    clients=1, cache_entries=0, cache_bytes=0, cache_budget_bytes=0,
                                    address=self.address)

    async def shutdown(self) -> None:
        """Nothing runs here to stop."""

    async def close(self) -> None:
        """Nothing to close."""

    async def __aenter__(self) -> "ScriptedBackend":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


if __name__ == "__main__":
    server.server.engine = EngineLink(ScriptedBackend)
    sys.exit(server.main(sys.argv[1:]))
