"""A third engine backend (scripted_backend.py: a scripted reply stream that implements
only engine/client/backend.py's protocol) edits a document through the real language
server over stdio: the server asks a backend what it can do, never which one it is."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest_lsp
from lsp_editor import make_client, start
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from blazedit_lsp.edit_policy import ASKING_AGAIN

URI = "file:///work/demo.py"
TEXT = "import time\n\n\ndef fetch(url):\n    time.sleep(1)\n    return url\n\n\ndef main():\n    print(fetch('x'))\n"
HERE = Path(__file__).resolve().parent

config = ClientServerConfig(server_command=[sys.executable, "-m", "scripted_backend", "-vv"],
                            client_factory=make_client)
config.server_env = {**os.environ,
                     "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")])}


@pytest_lsp.fixture(config=config)
async def client(lsp_client: LanguageClient):
    await start(lsp_client, "visual_studio_code", {"engine": "scripted", "progressIntervalMs": 0})
    yield
    await lsp_client.shutdown_session()


async def test_a_backend_that_implements_only_the_protocol_edits_a_document(client: LanguageClient):
    editor = client.editor  # type: ignore[attr-defined]
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "rename fetch to get")
    assert result["state"] == "applied"
    assert editor.text(URI) == TEXT.replace("fetch", "get")
    # the first reply was the file unchanged: the shared attempts asked again, plan first
    assert ASKING_AGAIN in [r.message for r in editor.progress(types.WorkDoneProgressReport)]
    status = await editor.command("blazedit.status")
    assert status["daemon"]["target"]["spec"] == "scripted"
    assert any("scripted" in m for m in editor.messages(types.MessageType.Info))
