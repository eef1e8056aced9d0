"""`engine: "openai:URL"` end to end: the language server and `blazedit edit` against
real OpenAI-compatible servers on loopback (llama-cpp-python's, and blazedit's own
`engine serve --openai`, which takes the file as `prediction`; remote_server.py),
with an API key.

"Correct" is exactly what the server itself streams for the same prompt with the
SDK alone; a cancel or a server killed mid-stream leaves the buffer untouched; a
wrong key is a clear message; and the key never reaches a log.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("fastapi")  # llama-cpp-python's [server] extra (the test extra lists it)

import pytest_lsp  # noqa: E402
from lsp_editor import SERVER, Editor, make_client, start  # noqa: E402
from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402
from remote_server import KEY, BlazeditServer, LlamaServer, reference, write_endless_directory, write_models  # noqa: E402

URI = "file:///work/demo.py"
PATH = "/work/demo.py"
TEXT = "import time\n\n\ndef fetch(url):\n    time.sleep(1)\n    return url\n"
WRONG_KEY = "sk-wrong-key-0123456789"
ROOT = Path(__file__).resolve().parents[2]


def lsp_config() -> ClientServerConfig:
    return ClientServerConfig(server_command=list(SERVER), client_factory=make_client)


right_key, wrong_key = lsp_config(), lsp_config()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("remote")


@pytest.fixture(scope="module")
def ggufs(workdir) -> dict[str, Path]:
    return write_models(workdir)


@pytest.fixture(scope="module")
def server(workdir, ggufs):
    server = LlamaServer(workdir, ggufs).wait_ready()
    base = {k: v for k, v in os.environ.items() if k not in ("BLAZEDIT_API_KEY", "OPENAI_API_KEY")}
    for config, key, log in ((right_key, KEY, "lsp.log"), (wrong_key, WRONG_KEY, "lsp-wrong.log")):
        config.server_command = [*SERVER, "--log-file", str(workdir / log)]
        config.server_env = {**base, "BLAZEDIT_API_KEY": key}
    yield server
    server.kill()


def settings(server: LlamaServer | BlazeditServer, model: str, max_new_tokens: int) -> dict:
    return {"engine": f"openai:{server.url}", "engineModel": model, "maxNewTokens": max_new_tokens,
            "progressIntervalMs": 0, "guardRemovals": "allow",
            "retryUnchanged": False}  # one request: the edit is the server's own answer (no second ask, no apply pass)


@pytest_lsp.fixture(config=right_key)
async def client(lsp_client: LanguageClient, server):
    await start(lsp_client, "visual_studio_code", settings(server, "tiny", 300))
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=wrong_key)
async def wrong_client(lsp_client: LanguageClient, server):
    await start(lsp_client, "neovim", settings(server, "tiny", 300))
    yield
    await lsp_client.shutdown_session()


def editor_of(client: LanguageClient) -> Editor:
    return client.editor  # type: ignore[attr-defined]


def logs(workdir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in workdir.glob("lsp*.log"))


async def generating(editor: Editor) -> None:
    """Wait until the server streams tokens (a progress report with a rate)."""
    await editor.until(lambda: any(r.message and "tok/s" in r.message
                                   for r in editor.progress(types.WorkDoneProgressReport)), 120)


async def test_an_lsp_edit_is_the_servers_own_output(client: LanguageClient, server, workdir):
    editor = editor_of(client)
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "rename")
    expected, finish = reference(server.url, "tiny", TEXT, "rename", PATH, "python", 300)
    assert finish == "stop"  # the model ended its reply: no length guard in the way
    assert result["state"] == "applied", result
    assert editor.text(URI) == expected != TEXT
    assert len(editor.applied) == 1
    assert KEY not in logs(workdir) and "RemoteEngineClient(" in logs(workdir)  # the client is logged, its key not


async def test_a_wrong_api_key_is_a_clear_error_and_never_logged(wrong_client: LanguageClient, workdir):
    wrong_editor = editor_of(wrong_client)
    wrong_editor.open(URI, TEXT)
    result = await wrong_editor.edit(URI, "rename")
    assert result["state"] == "failed" and wrong_editor.applied == [] and wrong_editor.text(URI) == TEXT
    (error,) = wrong_editor.messages(types.MessageType.Error)
    assert "refused the API key (401" in error and "$BLAZEDIT_API_KEY" in error, error
    assert WRONG_KEY not in error and WRONG_KEY not in logs(workdir)


@pytest.fixture
def endless(workdir, ggufs):
    """A server of its own for a reply that does not end: llama-cpp-python's server
    goes on generating after its client closed the stream (vLLM and SGLang abort
    the request), and serves one request at a time."""
    directory = workdir / "endless"
    directory.mkdir(exist_ok=True)
    server = LlamaServer(directory, {"endless": ggufs["endless"]}).wait_ready()
    yield server
    server.kill()


async def cancel_mid_stream(client: LanguageClient, server: LlamaServer | BlazeditServer, model: str) -> Editor:
    """An edit cancelled while it streams: nothing applied, the buffer as it was."""
    editor = editor_of(client)
    editor.configure(settings(server, model, 30000))
    editor.open(URI, TEXT)
    command = asyncio.ensure_future(editor.edit(URI, "rename"))
    await generating(editor)
    assert (await editor.command("blazedit.cancel", {"uri": URI}))["cancelled"]
    result = await command
    assert result["state"] == "cancelled" and editor.applied == [] and editor.text(URI) == TEXT
    assert editor.ends() == ["cancelled (cancelled by blazedit.cancel)"]
    return editor


async def test_a_cancel_closes_the_stream_and_applies_nothing(client: LanguageClient, endless: LlamaServer):
    await cancel_mid_stream(client, endless, "endless")


async def test_a_server_killed_mid_stream_leaves_the_buffer_untouched(client: LanguageClient, endless: LlamaServer):
    editor = editor_of(client)
    editor.configure({"engine": f"openai:{endless.url}", "engineModel": "endless", "maxNewTokens": 30000})
    editor.open(URI, TEXT)
    command = asyncio.ensure_future(editor.edit(URI, "rename"))
    await generating(editor)
    endless.kill()
    result = await command
    assert result["state"] == "failed" and editor.applied == [] and editor.text(URI) == TEXT
    (error,) = editor.messages(types.MessageType.Error)
    assert "broke after" in error and "nothing was applied" in error, error


def blazedit(*args: str, key: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run([sys.executable, "-m", "engine.cli", "-vv", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**env, "BLAZEDIT_API_KEY": key})


def test_a_cli_edit_is_the_servers_own_output(server, tmp_path):
    path = tmp_path / "demo.py"
    path.write_text(TEXT)
    run = blazedit("edit", str(path), "-i", "rename", "--engine", f"openai:{server.url}", "--engine-model", "tiny",
                   "--max-new-tokens", "300", "--no-retry", "--json", key=KEY)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["finish_reason"] == "stop" and out["tokens"] > 0
    assert out["text"] == reference(server.url, "tiny", TEXT, "rename", str(path), None, 300)[0]
    assert KEY not in run.stderr


def test_the_cli_says_what_to_do_with_a_wrong_key(server, tmp_path):
    path = tmp_path / "demo.py"
    path.write_text(TEXT)
    run = blazedit("edit", str(path), "-i", "rename", "--engine", f"openai:{server.url}", "--in-place", key=WRONG_KEY)
    assert run.returncode == 2 and path.read_text() == TEXT
    assert "blazedit: error:" in run.stderr and "refused the API key (401" in run.stderr, run.stderr
    assert WRONG_KEY not in run.stderr


def test_engine_status_and_stop_on_a_server_blazedit_does_not_run(server):
    """status says what answers; stop refuses, saying where to stop it, and leaves it up."""
    status = blazedit("engine", "status", "--engine", f"openai:{server.url}", key=KEY)
    assert status.returncode == 0 and "OpenAI-compatible server" in status.stdout, status.stderr
    stop = blazedit("engine", "stop", "--engine", f"openai:{server.url}", key=KEY)
    assert stop.returncode == 1 and "a server blazedit does not run; stop it where it runs" in stop.stderr
    assert "Traceback" not in stop.stderr, stop.stderr
    assert blazedit("engine", "status", "--engine", f"openai:{server.url}", key=KEY).returncode == 0


# ---------------------------------------------------------------- blazedit's own server


@pytest.fixture(scope="module")
def blazedit_server():
    """`blazedit engine serve --openai` on tiny-random, KEY as its token."""
    server = BlazeditServer("tiny-random").wait_ready()
    yield server
    server.kill()


def accepted_predictions(server: BlazeditServer) -> list[int]:
    """Per finished job, the prediction tokens the daemon's reply accepted (its log)."""
    return [int(n) for n in re.findall(r"prediction (\d+) accepted", server.log())]


async def test_an_lsp_edit_through_engine_serve_openai_sends_the_prediction(client: LanguageClient, server,
                                                                            blazedit_server, workdir):
    """Lossless: the edit copied from the prediction is what the server answers without one."""
    editor = editor_of(client)
    editor.configure(settings(blazedit_server, blazedit_server.model, 300))
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "rename")
    expected, finish = reference(blazedit_server.url, blazedit_server.model, TEXT, "rename", PATH, "python", 300)
    assert finish == "stop" and result["state"] == "applied", result
    assert editor.text(URI) == expected != TEXT
    first, *_ = accepted_predictions(blazedit_server)  # the edit's job; the reference's came after it
    assert first > 0
    assert f"{blazedit_server.url} uses `prediction`" in logs(workdir)


def test_a_cli_edit_through_engine_serve_openai(blazedit_server, tmp_path):
    path = tmp_path / "demo.py"
    path.write_text(TEXT)
    before = len(accepted_predictions(blazedit_server))
    run = blazedit("edit", str(path), "-i", "rename", "--engine", f"openai:{blazedit_server.url}",
                   "--max-new-tokens", "300", "--no-retry", "--json", key=KEY)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["text"] == reference(blazedit_server.url, blazedit_server.model, TEXT, "rename",
                                                       str(path), None, 300)[0]
    assert accepted_predictions(blazedit_server)[before] > 0  # the CLI's job sent the prediction too


@pytest.fixture
def blazedit_endless(workdir):
    """The daemon on the model that never ends its reply."""
    server = BlazeditServer(str(write_endless_directory(workdir / "endless-hf"))).wait_ready()
    yield server
    server.kill()


async def test_a_cancel_through_engine_serve_openai_stops_the_daemons_job(client: LanguageClient, server,
                                                                          blazedit_endless: BlazeditServer):
    editor = await cancel_mid_stream(client, blazedit_endless, blazedit_endless.model)
    await editor.until(lambda: re.search(r"job \S+ cancelled", blazedit_endless.log()), 60)
