"""The language server over stdio against a scripted engine (lsp_fake_engine):
progress, cancellation, typing during generation, guards, bad input.

The engine double decides exactly when a job ends, so these tests need no
timing luck; test_lsp.py runs the real daemon with a real (tiny) model.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsp_editor import CLIENTS, SERVER, Editor, assert_minimal, edits_of, make_client, start
from lsp_fake_engine import FakeEngine
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient
from pytest_lsp.client import captured_exception_key

from blazedit_lsp.actions import KIND
from blazedit_lsp.edit_policy import ASKING_AGAIN
from engine.client import protocol
from engine.client.guard import UNCHANGED
from engine.client.merge import describe

URI = "file:///work/demo.py"
TEXT = "import time\n\n\ndef fetch(url):\n    time.sleep(1)\n    return url\n\n\ndef main():\n    print(fetch('x'))\n"

POISON = Path(tempfile.gettempdir()) / f"bz-poison-{os.getpid()}"


@pytest.fixture(scope="module", autouse=True)
def poison():
    """A `torch` package that fails and leaves a mark, first on the path of
    the `client` fixture's servers."""
    (POISON / "torch").mkdir(parents=True)
    (POISON / "torch" / "__init__.py").write_text(
        "import os, pathlib\n"
        f"pathlib.Path({str(POISON / 'imported')!r}).write_text(str(os.getpid()))\n"
        "raise ImportError('the language server must not import torch')\n"
    )
    poisoned.server_env = {**os.environ, "PYTHONPATH": f"{POISON}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    yield
    shutil.rmtree(POISON)


class running_fake:
    """A scripted daemon on a short socket path (sun_path is 108 bytes)."""

    async def __aenter__(self) -> FakeEngine:
        self.folder = Path(tempfile.mkdtemp(prefix="bz-", dir="/tmp"))
        self.engine = FakeEngine(self.folder / "e.sock")
        await self.engine.start()
        return self.engine

    async def __aexit__(self, *exc) -> None:
        await self.engine.stop()
        self.folder.rmdir()


def options(fake: FakeEngine, **extra) -> dict:
    return {"engine": str(fake.path), "progressIntervalMs": 0, **extra}


async def session(client: LanguageClient, name: str, progress: bool = True, **extra):
    """Start the engine double, then initialize the server against it. (The
    double lives in the client fixture: pytest-lsp resolves other fixtures
    from inside the running loop, where async fixtures cannot start.)"""
    async with running_fake() as fake:
        editor = await start(client, name, options(fake, **extra), progress=progress)
        editor.fake = fake  # type: ignore[attr-defined]
        yield
        await client.shutdown_session()


config = ClientServerConfig(server_command=SERVER, client_factory=make_client)
poisoned = ClientServerConfig(server_command=SERVER, client_factory=make_client)  # env: see poison()


@pytest_lsp.fixture(config=config, params=CLIENTS)
async def any_client(lsp_client: LanguageClient, request):
    """One server per client capability snapshot (Neovim UTF-8, VS Code
    UTF-16, Emacs UTF-32; Neovim without documentChanges)."""
    async for _ in session(lsp_client, request.param):
        yield


@pytest_lsp.fixture(config=poisoned)
async def client(lsp_client: LanguageClient):
    """VS Code's capabilities; `import torch` in the server fails and leaves a mark."""
    async for _ in session(lsp_client, "visual_studio_code"):
        yield
    assert not (POISON / "imported").exists(), "the language server imported torch"


@pytest_lsp.fixture(config=config)
async def no_progress_client(lsp_client: LanguageClient):
    async for _ in session(lsp_client, "neovim", progress=False):
        yield


@pytest_lsp.fixture(config=config)
async def cannot_ask_client(lsp_client: LanguageClient):
    """Emacs' capabilities: no window.showMessage, so no question."""
    async for _ in session(lsp_client, "emacs"):
        yield


@pytest_lsp.fixture(config=config)
async def misconfigured(lsp_client: LanguageClient):
    async for _ in session(lsp_client, "visual_studio_code", maxNgram=0, method="fastest", colour="red"):
        yield


WARM_DELAY_MS = 1000
"""A pause the tests' bursts of typing fit in many times over."""


@pytest_lsp.fixture(config=config)
async def quick_warm(lsp_client: LanguageClient):
    async for _ in session(lsp_client, "visual_studio_code", warmDelayMs=WARM_DELAY_MS):
        yield


@pytest_lsp.fixture(config=config)
async def cold(lsp_client: LanguageClient):
    async for _ in session(lsp_client, "visual_studio_code", warm="off", warmDelayMs=0):
        yield


@pytest.fixture
def fake(request) -> FakeEngine:
    """The engine double of the test's client fixture."""
    for name in ("any_client", "client", "no_progress_client", "cannot_ask_client", "misconfigured", "quick_warm",
                 "cold"):
        if name in request.fixturenames:
            return request.getfixturevalue(name).editor.fake
    raise LookupError("no client fixture")


def editor_of(client: LanguageClient) -> Editor:
    return client.editor  # type: ignore[attr-defined]


RENAME = "rename fetch to get"
"""The instruction of swap_words' edits (it names fetch, so its rename is no removal)."""


def swap(text: str) -> str:
    return text.replace("fetch", "get").replace("time.sleep(1)", "await asyncio.sleep(1)")


def swap_words(edit) -> tuple[str, str]:
    """A deterministic 'model': a few in-line edits, the rest kept."""
    return swap(edit.text), "stop"


async def held_job(editor: Editor, fake: FakeEngine, instruction: str = RENAME):
    """An edit whose engine job streams and then waits for release or cancel."""
    fake.hold, fake.respond = True, swap_words
    command = asyncio.ensure_future(editor.edit(URI, instruction))
    return command, await fake.next_job()


# ------------------------------------------------------------------ main flow


@pytest.mark.parametrize(
    "text",
    [TEXT, TEXT.replace("\n", "\r\n"), "# 😀 中文 ünï\r\ndef fetch(s='😀😀'):  # 中\n    return s + '𝄞'\n"],
    ids=["lf", "crlf", "non-ascii-mixed-eol"],
)
async def test_code_action_to_applied_edit(any_client: LanguageClient, fake: FakeEngine, text: str):
    editor = editor_of(any_client)
    fake.respond = swap_words
    eol = "\r\n" if text.startswith("import") and "\r\n" in text else "\n"
    editor.open(URI, f"# AI: rename fetch to get{eol}" + text)
    actions = await editor.code_actions(URI, 0)
    assert actions[0].title == "AI edit whole file: rename fetch to get"
    assert all(a.kind == KIND for a in actions) and len(actions) == 5  # comment, 3 presets, plain
    first = actions[0].command
    result = await editor.client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=first.command, arguments=first.arguments))

    sent = fake.jobs[0].edit
    assert sent.instruction == "rename fetch to get" and sent.text == text  # comment removed
    assert result["state"] == "applied"
    assert editor.text(URI) == swap(text)  # exactly the engine's output
    assert len(editor.applied) == 1 and editor.applied[0].label == "Blazedit: rename fetch to get"
    change = editor.applied[0].edit
    if change.document_changes:
        assert change.document_changes[0].text_document.version == 1
    edits = edits_of(editor.applied[0], URI)
    assert_minimal(f"# AI: rename fetch to get{eol}" + text, swap(text), edits)
    assert all(len(e.new_text) <= len("await asyncio.sleep(1)") for e in edits)  # no whole-buffer replace
    kinds = [type(v).__name__ for v in editor.progress()]
    assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
    reports = editor.progress(types.WorkDoneProgressReport)
    assert any(r.message and "tok/s" in r.message and "accepted" in r.message for r in reports)
    assert all(r.percentage is None or r.percentage < 100 for r in reports)
    assert editor.ends() == [f"{len(edits)} edits applied"]
    assert editor.progress(types.WorkDoneProgressBegin)[0].cancellable


async def test_no_changes_sends_nothing(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    fake.respond = lambda e: (e.text, "stop")
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "do nothing")
    assert result["state"] == "unchanged" and editor.applied == [] and editor.ends() == ["no changes"]
    assert editor.messages(types.MessageType.Info) == [f"Blazedit: {UNCHANGED}"]


async def test_without_progress_support_logs(no_progress_client: LanguageClient, fake: FakeEngine):
    editor = editor_of(no_progress_client)
    fake.respond = swap_words
    editor.open(URI, TEXT)
    result = await editor.edit(URI, RENAME)
    assert result["state"] == "applied" and editor.text(URI) == swap(TEXT)
    assert no_progress_client.progress_reports == {}
    logged = [m.message for m in no_progress_client.log_messages]
    assert any("started" in m for m in logged) and any("edits applied" in m for m in logged)


async def test_status(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    result = await editor.command("blazedit.status")
    assert result["daemon"]["target"]["spec"] == "fake" and result["jobs"] == []
    assert any("engine fake" in m for m in editor.messages(types.MessageType.Info))


# ------------------------------------------------------------------ typing meanwhile


async def test_typing_elsewhere_survives(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    editor.open(URI, TEXT)
    command, job = await held_job(editor, fake)
    typed = TEXT.replace("import time\n", "import time\nimport asyncio  # typed meanwhile\n")
    editor.type(URI, typed)
    await editor.barrier()
    job.release.set()
    result = await command
    assert result["state"] == "applied"
    assert editor.text(URI) == swap(typed)


async def test_typing_on_the_same_lines_applies_nothing(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    editor.open(URI, TEXT)
    command, job = await held_job(editor, fake)
    typed = TEXT.replace("    time.sleep(1)\n", "    time.sleep(2)\n")
    editor.type(URI, typed)
    await editor.barrier()
    job.release.set()
    result = await command
    assert result["state"] == "refused" and editor.applied == [] and editor.text(URI) == typed
    assert any("changed the lines" in m for m in editor.messages(types.MessageType.Warning))
    assert editor.ends()[0].startswith("not applied")


# ------------------------------------------------------------------ cancellation


@pytest.mark.parametrize("how", ["progress", "command", "newer", "close"])
async def test_cancel(client: LanguageClient, fake: FakeEngine, how: str):
    editor = editor_of(client)
    editor.open(URI, TEXT)
    command, job = await held_job(editor, fake)
    if how == "progress":
        await editor.until(lambda: editor.progress(types.WorkDoneProgressBegin))
        (token,) = client.progress_reports
        client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    elif how == "command":
        cancelled = await editor.command("blazedit.cancel", {"uri": URI})
        assert cancelled["cancelled"] == [job.edit.job_id]
    elif how == "newer":
        newer = asyncio.ensure_future(editor.edit(URI, f"{RENAME} again"))
        second = await fake.next_job()
    else:
        editor.close(URI)
    result = await command
    await asyncio.wait_for(job.ended.wait(), 30)
    assert result["state"] == "cancelled" and job.finish_reason == "cancelled"
    assert editor.applied == []
    assert editor.ends()[0].startswith("cancelled")
    if how == "newer":  # the newer edit goes on and lands
        second.release.set()
        assert (await newer)["state"] == "applied" and editor.text(URI) == swap(TEXT)
        assert len(client.progress_reports) == 2  # a fresh token per job


async def test_cancel_all_and_nothing_to_cancel(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    editor.open(URI, TEXT)
    command, job = await held_job(editor, fake)
    assert (await editor.command("blazedit.cancel"))["cancelled"] == [job.edit.job_id]
    assert (await command)["state"] == "cancelled"
    assert (await editor.command("blazedit.cancel"))["cancelled"] == []
    assert any("no AI edit is running" in m for m in editor.messages())


# ------------------------------------------------------------------ guards


@pytest.mark.parametrize(
    "respond, answer, state",
    [
        (lambda e: ("", "stop"), "Discard", "refused"),  # empty output
        (lambda e: (swap(e.text)[:40], "length"), None, "refused"),  # cut off; question dismissed
        (lambda e: (swap(e.text)[:-8], "length"), "Apply", "applied"),  # cut off; user says apply
        (lambda e: ("import time\n", "stop"), "Discard", "refused"),  # mass deletion
    ],
    ids=["empty", "length-dismissed", "length-applied", "mass-deletion"],
)
async def test_guards_ask_first(client: LanguageClient, fake: FakeEngine, respond, answer, state):
    editor = editor_of(client)
    fake.respond, editor.answer = respond, answer
    editor.open(URI, TEXT)
    result = await editor.edit(URI, RENAME)
    assert result["state"] == state and len(editor.questions) == 1
    assert editor.questions[0].type == types.MessageType.Warning
    assert editor.text(URI) == (respond(fake.jobs[0].edit)[0] if state == "applied" else TEXT)


async def test_asked_for_deletion_needs_no_confirmation(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    fake.respond = lambda e: ("import time\n", "stop")
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "remove fetch and main")
    assert result["state"] == "applied" and editor.questions == [] and editor.text(URI) == "import time\n"


# ------------------------------------------------------------------ definitions removed


SLOWER = TEXT.replace("sleep(1)", "sleep(2)")
SLOWER_WITHOUT_MAIN = SLOWER[: SLOWER.index("\n\n\ndef main")] + "\n"


def slower_without_main(edit) -> tuple[str, str]:
    """A model that makes its edit and stops before main()."""
    return SLOWER_WITHOUT_MAIN, "stop"


@pytest.mark.parametrize("answer, state, text", [
    ("Apply", "applied", SLOWER_WITHOUT_MAIN),
    ("Apply and keep main()", "applied", SLOWER),
    ("Cancel", "refused", TEXT),
    (None, "refused", TEXT),  # dismissed
])
async def test_a_removed_definition_is_asked_about(client: LanguageClient, fake: FakeEngine, answer, state, text):
    editor = editor_of(client)
    fake.respond, editor.answer = slower_without_main, answer
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "make fetch slower")
    (question,) = editor.questions
    assert question.message == "Blazedit: the edit removes main() (lines 9-10; the result stops before it)."
    assert [a.title for a in question.actions] == ["Apply", "Apply and keep main()", "Cancel"]
    assert result["state"] == state and editor.text(URI) == text
    if state == "refused":
        assert editor.applied == [] and editor.ends() == ["not applied: it removes main() (lines 9-10; the result "
                                                          "stops before it)"]


async def test_an_editor_that_cannot_ask_gets_the_definitions_kept(cannot_ask_client: LanguageClient,
                                                                   fake: FakeEngine):
    editor = editor_of(cannot_ask_client)
    fake.respond = slower_without_main
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "make fetch slower")
    assert result["state"] == "applied" and editor.questions == []
    assert editor.text(URI) == SLOWER
    (warning,) = editor.messages(types.MessageType.Warning)
    assert "removes main()" in warning and "kept" in warning and "guardRemovals" in warning


async def test_a_failed_question_keeps_the_definitions(client: LanguageClient, fake: FakeEngine, request):
    editor = editor_of(client)
    fake.respond, editor.answer = slower_without_main, RuntimeError("no dialogs here")
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "make fetch slower")
    assert result["state"] == "applied" and len(editor.questions) == 1
    assert editor.text(URI) == SLOWER
    assert any("kept" in m for m in editor.messages(types.MessageType.Warning))
    request.node.stash[captured_exception_key] = None  # the editor's failure was on purpose, not the test's


@pytest.mark.parametrize("policy, text", [
    ("keep", SLOWER),
    ("allow", SLOWER_WITHOUT_MAIN),
])
async def test_guard_removals_setting(client: LanguageClient, fake: FakeEngine, policy, text):
    editor = editor_of(client)
    editor.configure({"guardRemovals": policy})
    fake.respond = slower_without_main
    editor.open(URI, TEXT)
    result = await editor.edit(URI, "make fetch slower")
    assert result["state"] == "applied" and editor.questions == [] and editor.text(URI) == text
    kept = [m for m in editor.messages(types.MessageType.Info) if "kept main()" in m]
    assert len(kept) == (policy == "keep")


# ------------------------------------------------------------------ bad input


async def test_bad_requests_get_clear_messages(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    fake.respond = swap_words
    editor.open(URI, TEXT)
    unknown = await editor.command("blazedit.editFile", {"uri": "file:///not/open.py", "instruction": "x"})
    assert unknown["state"] == "rejected" and "not open" in unknown["message"]
    stale = await editor.command("blazedit.editFile", {"uri": URI, "version": 0, "instruction": "x"})
    assert stale["state"] == "rejected" and "changed since" in stale["message"]
    for bad in ([{"uri": 5}], [URI], [{"uri": URI, "instrucion": "x"}], [{"uri": URI}, {}]):
        with pytest.raises(JsonRpcException):
            await editor.command("blazedit.editFile", *bad)
    errors = editor.messages(types.MessageType.Error)
    assert len(errors) == 4 and all("invalid arguments to blazedit.editFile" in m for m in errors)
    assert "instrucion" in errors[2]
    none = await editor.edit(URI)  # no instruction from anywhere
    assert none["state"] == "rejected" and "AI:" in none["message"] and "defaultInstruction" in none["message"]
    assert fake.jobs == []
    assert (await editor.edit(URI, RENAME))["state"] == "applied"  # and the server still works


async def test_invalid_configuration(misconfigured: LanguageClient, fake: FakeEngine):
    editor = editor_of(misconfigured)
    warnings = "\n".join(editor.messages(types.MessageType.Warning))
    assert "'maxNgram'" in warnings and "'method'" in warnings and "'colour'" in warnings
    editor.configure({"blazedit": {"presets": "not a list", "maxFileBytes": 10}})
    await editor.until(lambda: any("'presets'" in m for m in editor.messages()))
    editor.open(URI, TEXT)
    big = await editor.edit(URI, RENAME)
    assert big["state"] == "rejected" and "maxFileBytes" in big["message"]
    editor.configure({"blazedit": {"defaultInstruction": RENAME}})
    await editor.barrier()
    fake.respond = swap_words
    assert (await editor.edit(URI))["state"] == "applied"
    assert fake.jobs[0].edit.method == "blazedit" and fake.jobs[0].edit.options.max_ngram == 10


async def test_engine_error_reaches_the_user(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    fake.error = ("context_overflow", "prompt of 40000 tokens exceeds 32768")
    editor.open(URI, TEXT)
    result = await editor.edit(URI, RENAME)
    assert result["state"] == "failed" and "too large for the model's context" in result["summary"]
    assert any("40000 tokens" in m for m in editor.messages(types.MessageType.Error))


async def test_engine_down_then_back(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    editor.open(URI, TEXT)
    command, job = await held_job(editor, fake)
    await fake.stop()  # the daemon dies mid-job
    result = await command
    assert result["state"] == "failed" and editor.applied == []
    assert any("engine not reachable" in m for m in editor.messages(types.MessageType.Error))
    down = await editor.edit(URI, RENAME)
    assert down["state"] == "failed" and "blazedit engine serve" in down["summary"]
    await fake.start()
    fake.hold = False
    assert (await editor.edit(URI, RENAME))["state"] == "applied"


async def test_command_answers_early_and_applies_later(client: LanguageClient, fake: FakeEngine):
    """commandTimeoutMs: the request is not held open past what a client
    tolerates (Zed: 120 s); the edit still lands through workspace/applyEdit."""
    editor = editor_of(client)
    editor.configure({"commandTimeoutMs": 0})
    editor.open(URI, TEXT)
    command, job = await held_job(editor, fake)
    answer = await command
    assert answer["state"] == "running" and editor.applied == []
    job.release.set()
    await editor.until(lambda: editor.applied and editor.ends())
    assert editor.text(URI) == swap(TEXT) and editor.ends() == ["3 edits applied"]


async def test_settings_pulled_when_the_client_sends_none(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    client.set_configuration({"presets": ["tidy"], "maxNgram": "x"}, section="blazedit")
    editor.configure(None)
    await editor.until(lambda: any("'maxNgram'" in m for m in editor.messages()))
    editor.open(URI, TEXT)
    titles = [a.title for a in await editor.code_actions(URI, 0)]
    assert titles == ["AI edit whole file: tidy", "AI edit whole file"]


# ------------------------------------------------------------------ applied while streaming, undo, selections

LONG = (
    "import time\n\n\ndef fetch(url):\n    time.sleep(1)\n    return url\n\n\n"
    "def parse(page):\n    lines = page.split()\n    return lines\n\n\n"
    "def store(rows):\n    for row in rows:\n        print(row)\n\n\n"
    "def main():\n    store(parse(fetch('x')))\n"
)


def first_hunk_settled(text: str) -> str:
    """What the streamed half of swap(LONG) settles: fetch's hunk, parse copied after it."""
    return text.replace("time.sleep(1)", "await asyncio.sleep(1)").replace("def fetch", "def get", 1)


async def test_settled_hunks_land_while_streaming_and_undo_reverts_all(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    editor.open(URI, LONG)
    command, job = await held_job(editor, fake)
    await editor.until(lambda: editor.applied)  # while the engine job still holds
    assert not job.release.is_set() and editor.text(URI) == first_hunk_settled(LONG)
    await editor.until(lambda: any(r.message == "1 hunk applied" for r in editor.progress(types.WorkDoneProgressReport)))
    job.release.set()
    result = await command
    assert result["state"] == "applied" and editor.text(URI) == swap(LONG)
    assert "while streaming" in editor.ends()[0]
    typed = "# typed after\n" + swap(LONG)
    editor.type(URI, typed)
    assert (await editor.command("blazedit.undo", {"uri": URI}))["state"] == "undone"
    assert editor.text(URI) == "# typed after\n" + LONG  # the whole AI edit reverted, the typing kept
    assert (await editor.command("blazedit.undo", {"uri": URI}))["state"] == "rejected"  # nothing left to undo


async def test_cancelled_after_early_hunks_keeps_them_and_says_so(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    editor.open(URI, LONG)
    command, job = await held_job(editor, fake)
    await editor.until(lambda: editor.applied)
    await editor.command("blazedit.cancel", {"uri": URI})
    result = await command
    assert result["state"] == "cancelled" and editor.text(URI) == first_hunk_settled(LONG)
    assert any("applied while streaming stay" in m for m in editor.messages(types.MessageType.Warning))
    await editor.command("blazedit.undo", {"uri": URI})
    assert editor.text(URI) == LONG


async def test_undo_refuses_where_typing_overlaps(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    fake.respond = swap_words
    editor.open(URI, LONG)
    assert (await editor.edit(URI, RENAME))["state"] == "applied"
    typed = swap(LONG).replace("await asyncio.sleep(1)", "await asyncio.sleep(5)")
    editor.type(URI, typed)
    assert (await editor.command("blazedit.undo", {"uri": URI}))["state"] == "rejected"
    assert editor.text(URI) == typed


async def test_apply_while_streaming_off_applies_once_at_the_end(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    editor.configure({"applyWhileStreaming": False})
    editor.open(URI, LONG)
    command, job = await held_job(editor, fake)
    await editor.barrier()
    await editor.until(lambda: editor.progress(types.WorkDoneProgressReport))  # the half has streamed
    assert editor.applied == []
    job.release.set()
    assert (await command)["state"] == "applied" and len(editor.applied) == 1 and editor.text(URI) == swap(LONG)


async def test_a_streamed_hunk_that_drops_a_definition_waits_for_the_question(client: LanguageClient,
                                                                               fake: FakeEngine):
    editor = editor_of(client)
    dropped = LONG.replace("def parse(page):\n    lines = page.split()\n    return lines\n\n\n", "")
    fake.hold, fake.respond = True, lambda e: (dropped, "stop")
    editor.open(URI, LONG)
    command = asyncio.ensure_future(editor.edit(URI, "tidy up"))
    job = await fake.next_job()
    await editor.until(lambda: editor.progress(types.WorkDoneProgressReport))
    await editor.barrier()
    assert editor.applied == []  # the half drops parse(): nothing lands before the user is asked
    editor.answer = "Cancel"
    job.release.set()
    assert (await command)["state"] == "refused" and editor.text(URI) == LONG and editor.questions


async def test_edit_selection(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    fake.respond = lambda e: (e.text[e.region.start:e.region.end].upper(), "stop")
    editor.open(URI, LONG.replace("def parse", "# AI: shout\ndef parse"))  # the comment on line 8
    selection = types.Range(start=types.Position(line=9, character=4), end=types.Position(line=12, character=0))
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), range=selection,
        context=types.CodeActionContext(diagnostics=[])))
    assert actions[0].title == "AI edit selection: shout" and actions[0].is_preferred
    assert any(a.title == "AI edit whole file: shout" for a in actions)
    command = actions[0].command
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command.command, arguments=command.arguments))
    sent = fake.jobs[0].edit
    assert sent.text == LONG and sent.text[sent.region.start:sent.region.end] == "def parse(page):\n    lines = page.split()\n    return lines\n"
    assert result["state"] == "applied" and len(editor.applied) == 1  # nothing settles inside the region early
    assert editor.text(URI) == LONG.replace("def parse(page):\n    lines = page.split()\n    return lines\n",
                                            "DEF PARSE(PAGE):\n    LINES = PAGE.SPLIT()\n    RETURN LINES\n")


async def test_an_empty_selection_is_refused(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    editor.open(URI, LONG)
    here = {"line": 3, "character": 2}
    result = await editor.edit(URI, "shout", range={"start": here, "end": here})
    assert result["state"] == "rejected" and fake.jobs == []


# ------------------------------------------------------------------ warming


async def test_opening_a_document_warms_what_its_edit_will_send(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    editor.open(URI, f"# AI: {RENAME}\n" + TEXT)
    warm = await fake.next_warm()
    assert (warm.text, warm.path, warm.language, warm.document) == (TEXT, "/work/demo.py", "python", URI)
    fake.respond = swap_words
    assert (await editor.edit(URI))["state"] == "applied"
    assert fake.jobs[0].edit.text == warm.text  # exactly the text the edit sent
    assert fake.warms == [warm]  # the edit's own change is warmed only after warmDelayMs (1.5 s)


@pytest.mark.parametrize("retry", [True, False])
async def test_an_unchanged_reply_is_asked_for_again(client: LanguageClient, fake: FakeEngine, retry: bool):
    """The file streams unchanged (nothing to apply), then the engine's second attempt
    streams it again from its start: the edit applied is the second one's, exactly."""
    editor = editor_of(client)
    editor.configure({"retryUnchanged": retry})
    fake.respond, fake.unchanged_first = swap_words, True
    editor.open(URI, TEXT)
    result = await editor.edit(URI, RENAME)
    assert fake.jobs[0].edit.retry_unchanged is retry
    reports = [r.message for r in editor.progress(types.WorkDoneProgressReport)]
    if retry:
        assert result["state"] == "applied" and editor.text(URI) == swap(TEXT)
        assert ASKING_AGAIN in reports
    else:
        assert result["state"] == "unchanged" and editor.applied == [] and ASKING_AGAIN not in reports
        assert editor.messages(types.MessageType.Info) == [f"Blazedit: {UNCHANGED}"]


async def test_a_partial_second_reply_lands_as_a_merged_edit_with_a_message(client: LanguageClient, fake: FakeEngine):
    """The second attempt streams only main() (the live apply must not apply it as the
    file); the engine merged it, and the editor gets the whole file and is told so."""
    editor = editor_of(client)
    fake.respond, fake.unchanged_first = swap_words, True
    fake.sketch = "def main():\n    print(get('x'))\n"
    fake.partial = protocol.Partial(how="merged", items=["main()"])
    editor.open(URI, TEXT)
    result = await editor.edit(URI, RENAME)
    assert result["state"] == "applied" and editor.text(URI) == swap(TEXT)
    assert f"Blazedit: {describe(fake.partial)}" in editor.messages(types.MessageType.Info)
    assert ASKING_AGAIN in [r.message for r in editor.progress(types.WorkDoneProgressReport)]


async def test_an_editor_that_never_answers_an_edit_does_not_hold_the_job(client: LanguageClient, fake: FakeEngine):
    editor = editor_of(client)
    editor.configure({"applyTimeoutMs": 500, "applyWhileStreaming": False})
    fake.respond = swap_words
    editor.silent.set()
    editor.open(URI, TEXT)
    result = await editor.edit(URI, RENAME)
    assert result["state"] == "failed" and "did not answer workspace/applyEdit within 0.5 s" in result["summary"]
    assert len(editor.applied) == 0 and editor.text(URI) == TEXT
    editor.silent.clear()
    editor.unsilenced.set()
    assert (await editor.edit(URI, RENAME))["state"] == "applied"  # the document is free for the next edit
    assert editor.text(URI) == swap(TEXT)


async def test_typing_warms_once_after_the_pause(quick_warm: LanguageClient, fake: FakeEngine):
    editor = editor_of(quick_warm)
    editor.open(URI, TEXT)
    await fake.next_warm()
    typed = [TEXT + "#" * n + "\n" for n in range(1, 6)]
    for text in typed:  # a burst, well inside the pause
        editor.type(URI, text)
    warm = await fake.next_warm()
    assert warm.text == typed[-1]
    fake.respond = lambda e: (e.text, "stop")
    assert (await editor.edit(URI, RENAME))["state"] == "unchanged"  # its Edit comes after any other Warm
    assert len(fake.warms) == 2 and len(fake.jobs) == 1


async def test_warm_off_sends_none(cold: LanguageClient, fake: FakeEngine):
    editor = editor_of(cold)
    editor.open(URI, TEXT)
    editor.type(URI, TEXT + "# typed\n")
    fake.respond = swap_words
    assert (await editor.edit(URI, RENAME))["state"] == "applied"  # a Warm would have come before its Edit
    assert fake.warms == [] and len(fake.jobs) == 1


async def test_an_unreachable_engine_is_not_an_error_when_warming(quick_warm: LanguageClient, fake: FakeEngine):
    editor = editor_of(quick_warm)
    await fake.stop()
    editor.open(URI, TEXT)
    editor.type(URI, TEXT + "# typed\n")
    status = await editor.command("blazedit.status")  # after the warm's try: both need the engine link
    assert "error" in status
    await editor.until(lambda: editor.messages(types.MessageType.Info))
    assert editor.messages(types.MessageType.Error) == [] and editor.messages(types.MessageType.Warning) == []
    await fake.start()
    fake.respond = swap_words
    assert (await editor.edit(URI, RENAME))["state"] == "applied"
    warm = await fake.next_warm()  # warming goes on once an edit has reached the engine
    assert warm.text == swap(TEXT + "# typed\n") and fake.warms == [warm]
