"""The language server end to end with the real engine daemon and a real
(tiny, random) model: the product path, `engine: "auto"`, where the server
spawns the daemon on first use.

A random model's output is nonsense, so "correct" here means exactly what the
engine itself answers for the same request (EngineClient from the test), and
its guards (length limit) are answered through window/showMessageRequest.
Its output removes every definition, so the removal guard is off here
(guardRemovals "allow"; test_lsp_jobs.py tests it).
tiny-random:2 is used because, for the file and instruction below, it decodes
for ~20 s unless stopped: long enough to cancel or kill mid-job, always.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsp_editor import CLIENTS, SERVER, Editor, assert_minimal, edits_of, make_client, start
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from engine.client import protocol
from engine.client.daemon_client import EngineClient

MODEL = "tiny-random:2"
RUNTIME = Path(tempfile.gettempdir()) / f"bz-rt-{os.getpid()}"  # short: sun_path is 108 bytes
SOCKET = RUNTIME / "blazedit" / "engine.sock"
URI = "file:///work/demo.py"
TEXT = "import time\n\n\ndef fetch(url):\n    time.sleep(1)\n    return url\n"
UNICODE = "# 😀 中文 ünï\r\ndef fetch(s='😀😀'):  # 中\r\n    return s + '𝄞'\r\n"

config = ClientServerConfig(server_command=SERVER, client_factory=make_client)


@pytest.fixture(scope="module", autouse=True)
def runtime_dir(request):
    """A private runtime dir, so "auto" spawns our own daemon; the daemon
    spawned by the first test serves the module and is stopped after it.
    The dir (with the daemon's log) is kept when a test failed."""
    failed = request.session.testsfailed
    RUNTIME.mkdir(mode=0o700, exist_ok=True)
    config.server_env = {**os.environ, "XDG_RUNTIME_DIR": str(RUNTIME), "BLAZEDIT_CACHE_DIR": str(RUNTIME / "cache")}
    yield
    lock = SOCKET.with_suffix(".pid")
    if lock.exists() and (pid := lock.read_text().strip()).isdigit():
        os.kill(int(pid), signal.SIGTERM)  # it removes its socket and lock as it exits
    if request.session.testsfailed == failed:
        shutil.rmtree(RUNTIME, ignore_errors=True)


def settings(**extra) -> dict:
    return {"engine": "auto", "model": MODEL, "progressIntervalMs": 0, "guardRemovals": "allow", **extra}


@pytest_lsp.fixture(config=config, params=CLIENTS)
async def any_client(lsp_client: LanguageClient, request):
    await start(lsp_client, request.param, settings(maxNewTokens=300))
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=config)
async def long_jobs(lsp_client: LanguageClient):
    await start(lsp_client, "visual_studio_code", settings(maxNewTokens=30000))
    yield
    await lsp_client.shutdown_session()


async def engine_output(text: str, instruction: str, max_new_tokens: int) -> protocol.Done:
    """What the daemon answers for the server's request, asked directly."""
    async with EngineClient(str(SOCKET), model=MODEL, spawn=False) as client:
        edit = protocol.Edit(job_id="direct", text=text, instruction=instruction, path="/work/demo.py",
                             language="python", options=protocol.DecodingOptions(max_new_tokens=max_new_tokens))
        async for msg in client.edit(edit):
            if isinstance(msg, (protocol.Done, protocol.Error)):
                assert isinstance(msg, protocol.Done), msg
                return msg
    raise AssertionError("no Done")


def editor_of(client: LanguageClient) -> Editor:
    return client.editor  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", [TEXT, UNICODE], ids=["ascii-lf", "unicode-crlf"])
async def test_edit_gives_exactly_the_engines_output(any_client: LanguageClient, text: str):
    editor = editor_of(any_client)
    editor.answer = "Apply"  # if the tiny model runs into the length limit, the guard asks
    eol = "\r\n" if "\r\n" in text else "\n"
    editor.open(URI, f"# AI: rename{eol}{text}")
    action = (await editor.code_actions(URI, 1))[0]
    assert action.title == "AI edit whole file: rename"
    result = await any_client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=action.command.command, arguments=action.command.arguments))

    done = await engine_output(text, "rename", 300)
    if done.finish_reason == "length":
        assert len(editor.questions) == 1 and "length limit" in editor.questions[0].message
    assert result["state"] == "applied", result
    assert editor.text(URI) == done.text  # comment gone, the file is the engine's output
    assert len(editor.applied) == 1
    edits = edits_of(editor.applied[0], URI)
    assert_minimal(f"# AI: rename{eol}{text}", done.text, edits)
    assert editor.ends() == [f"{len(edits)} edit{'s' if len(edits) != 1 else ''} applied"]
    reports = editor.progress(types.WorkDoneProgressReport)
    assert any(r.percentage is not None and r.message and "tok/s" in r.message for r in reports)
    assert all(r.percentage is None or r.percentage < 100 for r in reports)


async def started(editor: Editor) -> None:
    """Wait until the engine reports decoding (a report with a percentage)."""
    await editor.until(lambda: any(r.percentage for r in editor.progress(types.WorkDoneProgressReport)), 180)


async def test_cancel_stops_the_engine_job(long_jobs: LanguageClient):
    editor = editor_of(long_jobs)
    editor.open(URI, TEXT)
    command = asyncio.ensure_future(editor.edit(URI, "rename"))
    await started(editor)
    assert (await editor.command("blazedit.cancel", {"uri": URI}))["cancelled"]
    result = await command
    assert result["state"] == "cancelled" and editor.applied == [] and editor.text(URI) == TEXT
    # The daemon logs a job's end before it sends the Done (its status may
    # list the job as running for a few ms after the Done: it reports the
    # worker thread, which files the prompt's KV cache after that).
    log = (SOCKET.parent / "engine.log").read_text()
    assert f"job {result['jobId']} cancelled:" in log
    assert (await editor.command("blazedit.status"))["jobs"] == []


async def test_killed_daemon_is_reported_and_respawned(long_jobs: LanguageClient):
    editor = editor_of(long_jobs)
    editor.open(URI, TEXT)
    command = asyncio.ensure_future(editor.edit(URI, "rename"))
    await started(editor)
    os.kill(int(SOCKET.with_suffix(".pid").read_text()), signal.SIGKILL)
    result = await command
    assert result["state"] == "failed" and editor.applied == []
    (error,) = editor.messages(types.MessageType.Error)
    assert "engine not reachable" in error and "Daemon log:" in error
    editor.configure({"maxNewTokens": 200})
    editor.answer = "Apply"
    again = await editor.edit(URI, "rename")  # spawns a new daemon
    assert again["state"] == "applied", again
    assert editor.text(URI) == (await engine_output(TEXT, "rename", 200)).text


@pytest_lsp.fixture(config=config)
async def bad_model(lsp_client: LanguageClient):
    await start(lsp_client, "neovim", settings(engine="embedded", model="no-such-model"))
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=config)
async def short_jobs(lsp_client: LanguageClient):
    await start(lsp_client, "visual_studio_code", settings(maxNewTokens=20))
    yield
    await lsp_client.shutdown_session()


async def daemon_status(editor: Editor) -> dict:
    return (await editor.command("blazedit.status"))["daemon"]


async def test_an_opened_document_is_warmed_and_its_edit_starts_cached(short_jobs: LanguageClient):
    editor = editor_of(short_jobs)
    editor.answer = "Apply"
    before = (await daemon_status(editor))["warms_done"]
    text = "".join(f"opened_{i} = {i} * {i}  # warm me\n" for i in range(30))  # in no cache yet
    editor.open(URI, "# AI: rename opened to seen\n" + text)
    deadline = asyncio.get_running_loop().time() + 180
    while (status := await daemon_status(editor))["warms_done"] <= before or status["warming"] is not None:
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.05)  # polling interval of a bounded wait
    assert (await editor.edit(URI))["state"] in ("applied", "unchanged", "refused")
    generating = [r.message for r in editor.progress(types.WorkDoneProgressReport)
                  if r.message and r.message.startswith("generating (")]
    prompt, cached = (int(n) for n in re.match(r"generating \((\d+) prompt tokens, (\d+) cached\)",
                                               generating[0]).groups())
    assert cached > len(text.encode()) and cached < prompt  # system message and file; not the instruction
    assert not editor.messages(types.MessageType.Error)


async def test_model_that_fails_to_load_is_reported_with_the_log(bad_model: LanguageClient):
    editor = editor_of(bad_model)
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "rename")
    assert result["state"] == "failed"
    (error,) = editor.messages(types.MessageType.Error)
    assert "no-such-model" in error and "Daemon log:" in error, error
