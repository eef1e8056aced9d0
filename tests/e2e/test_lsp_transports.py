"""`blazedit-lsp --tcp` and `--ws`: the server answers an editor over a socket as over stdio
(Neovim and Emacs users attach to a server started by hand; the WebSocket for browser editors)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
from daemon_harness import free_port
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from blazedit_lsp import actions


async def _connect(start, port: int, server: subprocess.Popen) -> None:
    """Retry until the server listens (a second or two to import pygls)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited before listening"
        try:
            await start("127.0.0.1", port)
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_server_answers_over_a_socket(transport):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "blazedit_lsp", f"--{transport}", "--port", str(port)])
    client = LanguageClient("transport-test", "1")
    try:
        await _connect(client.start_tcp if transport == "tcp" else client.start_ws, port, server)
        result = await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), process_id=None, root_uri=None)), 30)
        assert result.server_info.name == "blazedit-lsp"
        assert actions.EDIT_FILE in result.capabilities.execute_command_provider.commands
        client.initialized(types.InitializedParams())
        await asyncio.wait_for(client.shutdown_async(None), 30)
        client.exit(None)
        # waited for off the event loop: the client must still answer the WebSocket close
        assert await asyncio.to_thread(server.wait, 30) == 0
    finally:
        await client.stop()
        if server.poll() is None:
            server.kill()
            server.wait()
