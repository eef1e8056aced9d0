"""The base install (no `[engine]` extra) runs the language server and the client
commands against a running daemon, and says how to install the engine to whatever
needs it. The server and the CLI run under BLAZEDIT_BASE_PYTHON when it is set
(.ci/run: a fresh venv with `pip install .`), else under this interpreter with
tests/e2e/no_engine on PYTHONPATH, whose sitecustomize hides torch, transformers,
llama_cpp and the like. The daemon runs with the engine: another machine's, say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from daemon_harness import DaemonProcess
from lsp_editor import Editor, make_client, start
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

ROOT = Path(__file__).resolve().parents[2]
BASE_PYTHON = os.environ.get("BLAZEDIT_BASE_PYTHON")
PYTHON = BASE_PYTHON or sys.executable
NO_ENGINE = dict(os.environ) if BASE_PYTHON else {
    **os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent / "no_engine"), str(ROOT)])}
INSTALL = "pip install 'blazedit-lsp[engine]'"
URI = "file:///work/demo.py"
TEXT = "def fetch(url):\n    return url\n"


@pytest.fixture(scope="module")
def daemon():
    process = DaemonProcess().wait_ready()
    yield process
    process.cleanup()


config = ClientServerConfig(server_command=[PYTHON, "-m", "blazedit_lsp", "-vv"], client_factory=make_client,
                            server_env=NO_ENGINE)


@pytest_lsp.fixture(config=config)
async def server(lsp_client: LanguageClient):
    yield lsp_client
    await lsp_client.shutdown_session()


def editor_of(client: LanguageClient) -> Editor:
    return client.editor  # type: ignore[attr-defined]


def blazedit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "engine.cli", *args], env=NO_ENGINE, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_there_is_no_torch():
    hidden = subprocess.run([PYTHON, "-c", "import torch"], env=NO_ENGINE, capture_output=True, text=True)
    assert hidden.returncode != 0 and "torch" in hidden.stderr


async def test_the_language_server_edits_through_a_running_daemon(server: LanguageClient, daemon):
    await start(server, "neovim", {"engine": str(daemon.socket), "model": "tiny-random", "maxNewTokens": 40,
                                   "guardRemovals": "allow", "progressIntervalMs": 0})
    editor = editor_of(server)
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "rename fetch to get")
    assert result["state"] in ("applied", "unchanged", "refused"), result  # a random model's edit, but an edit
    assert not editor.messages(types.MessageType.Error)


async def test_an_embedded_engine_says_how_to_install_it(server: LanguageClient):
    await start(server, "neovim", {"engine": "embedded", "model": "tiny-random"})
    editor = editor_of(server)
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "rename")
    assert result["state"] == "failed"
    (error,) = editor.messages(types.MessageType.Error)
    assert INSTALL in error and "not installed" in error, error


def test_the_cli_talks_to_a_daemon_and_says_how_to_install_the_engine(daemon, tmp_path):
    status = blazedit("engine", "status", "--engine", str(daemon.socket))
    assert status.returncode == 0 and "tiny-random" in status.stdout, status.stderr
    source = tmp_path / "demo.py"
    source.write_text(TEXT)
    edited = blazedit("edit", str(source), "-i", "rename", "--model", "tiny-random", "--engine", str(daemon.socket),
                      "--max-new-tokens", "20", "--json")
    assert edited.returncode in (0, 1) and '"finish_reason"' in edited.stdout, edited.stderr
    for args in (["edit", str(source), "-i", "x", "--engine", "embedded"], ["engine", "serve"],
                 ["bench", "bench/data/edits-humanevalfix.jsonl", "--quick"]):
        refused = blazedit(*args)
        assert refused.returncode == 2 and INSTALL in refused.stderr, (args, refused.stderr)
