"""The editor side of the language server's end-to-end tests.

pytest-lsp's client records messages and progress but applies no edits and
answers no questions, so ``Editor`` adds what an editor does: it keeps the
open documents, applies ``workspace/applyEdit`` (refusing a stale version, as
VS Code does) and reports the change with didChange, and answers
``window/showMessageRequest``. Waits are bounded waits on an event set by
every incoming message, never sleeps.
"""

from __future__ import annotations

import asyncio
import difflib
import sys
from typing import Any, Callable, Union

from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from blazedit_lsp.edits import apply_text_edits, split_lines

SERVER = [sys.executable, "-m", "blazedit_lsp", "-vv"]  # logs to stderr, shown for failed tests
CLIENTS = ["neovim", "visual_studio_code", "emacs"]
TIMEOUT = 60.0


class Editor:
    def __init__(self, client: LanguageClient):
        self.client = client
        self.docs: dict[str, tuple[int, str]] = {}
        self.applied: list[types.ApplyWorkspaceEditParams] = []
        self.questions: list[types.ShowMessageRequestParams] = []
        self.answer: str | Exception | None = "Apply"
        self.silent = asyncio.Event()  # while set, workspace/applyEdit gets no answer
        self.unsilenced = asyncio.Event()  # then the held ones get "not applied"
        """The action picked for window/showMessageRequest (None: dismissed; an exception: the request fails)."""
        self.encoding: str | None = None
        self.changed = asyncio.Event()
        self.hunks: dict[str, dict] = {}
        """The last `blazedit/hunks` notification of each document."""
        self.lens_refreshes = 0

    # ------------------------------------------------------------ documents

    def open(self, uri: str, text: str, language: str = "python", version: int = 1) -> None:
        self.docs[uri] = (version, text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))

    def type(self, uri: str, text: str) -> None:
        """The user edits the document (full sync)."""
        version = self.docs[uri][0] + 1
        self.docs[uri] = (version, text)
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))

    def close(self, uri: str) -> None:
        del self.docs[uri]
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))

    def text(self, uri: str) -> str:
        return self.docs[uri][1]

    def version(self, uri: str) -> int:
        return self.docs[uri][0]

    # ------------------------------------------------------------ requests

    async def barrier(self) -> None:
        """A round trip: the server has handled every notification sent before."""
        await self.code_actions("file:///barrier", 0)

    async def edit(self, uri: str, instruction: str | None = None, **extra: Any) -> dict:
        args: dict[str, Any] = {"uri": uri, "version": self.version(uri), **extra}
        if instruction is not None:
            args["instruction"] = instruction
        return await self.client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="blazedit.editFile", arguments=[args]))

    async def command(self, name: str, *arguments: Any) -> Any:
        return await self.client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=name, arguments=list(arguments) if arguments else None))

    async def code_actions(self, uri: str, line: int) -> list[types.CodeAction]:
        here = types.Position(line=line, character=0)
        return await self.client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), range=types.Range(start=here, end=here),
            context=types.CodeActionContext(diagnostics=[]))) or []

    def configure(self, settings: Any) -> None:
        self.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))

    # ------------------------------------------------------------ waiting

    async def until(self, predicate: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
        """Wait (bounded) until ``predicate()`` is truthy; re-checked on every message."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (value := predicate()):
            self.changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {predicate}")
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return value

    def progress(self, kind: type | None = None) -> list:
        values = [v for vs in self.client.progress_reports.values() for v in vs]
        return [v for v in values if kind is None or isinstance(v, kind)]

    def ends(self) -> list[str]:
        return [v.message for v in self.progress(types.WorkDoneProgressEnd)]

    def messages(self, kind: types.MessageType | None = None) -> list[str]:
        return [m.message for m in self.client.messages if kind is None or m.type == kind]

    # ------------------------------------------------------------ handlers

    def _apply(self, params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        self.applied.append(params)
        edit = params.edit
        if edit.document_changes:
            changes = [(dc.text_document.uri, dc.text_document.version, dc.edits) for dc in edit.document_changes]
        else:
            changes = [(uri, None, edits) for uri, edits in (edit.changes or {}).items()]
        for uri, version, edits in changes:
            if uri not in self.docs:
                return types.ApplyWorkspaceEditResult(applied=False, failure_reason=f"{uri} is not open")
            if version is not None and version != self.docs[uri][0]:
                return types.ApplyWorkspaceEditResult(applied=False, failure_reason="version mismatch")
        for uri, _, edits in changes:
            self.type(uri, apply_text_edits(self.text(uri), edits, self.encoding))
        self.changed.set()
        return types.ApplyWorkspaceEditResult(applied=True)

    def _ask(self, params: types.ShowMessageRequestParams) -> types.MessageActionItem | None:
        self.questions.append(params)
        self.changed.set()
        if isinstance(self.answer, Exception):
            raise self.answer
        return types.MessageActionItem(title=self.answer) if self.answer else None


def assert_minimal(old: str, new: str, edits: list) -> None:
    """Lines that a line diff keeps are inside no edit (an edit may end at a
    kept line's start, or begin right after the previous line)."""
    matcher = difflib.SequenceMatcher(None, split_lines(old), split_lines(new), autojunk=False)
    kept = [i for tag, i1, i2, _, _ in matcher.get_opcodes() if tag == "equal" for i in range(i1, i2)]
    for e in edits:
        s, t = (e.range.start.line, e.range.start.character), (e.range.end.line, e.range.end.character)
        for i in kept:
            if s == t:
                assert not (i, 0) < s < (i + 1, 0), f"insertion inside kept line {i}: {e}"
            else:
                assert not (s < (i + 1, 0) and t > (i, 0)), f"kept line {i} inside {e}"


def edits_of(params: types.ApplyWorkspaceEditParams, uri: str) -> list:
    change = params.edit
    return list(change.document_changes[0].edits if change.document_changes else change.changes[uri])


def make_client() -> LanguageClient:
    """pytest-lsp's client plus an Editor (``client.editor``)."""
    client = LanguageClient(converter_factory=default_converter)
    _fix_code_action_union(client.protocol._converter)
    editor = Editor(client)
    client.editor = editor  # type: ignore[attr-defined]

    def notify(handler):
        def wrapped(ls: LanguageClient, params):
            result = handler(ls, params)
            editor.changed.set()
            return result

        return wrapped

    features = {method: notify(f) for method, f in DEFAULT_CLIENT_FEATURES.items()}
    async def apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        if editor.silent.is_set():
            await editor.unsilenced.wait()
            return types.ApplyWorkspaceEditResult(applied=False, failure_reason="answered too late")
        return editor._apply(params)

    features[types.WORKSPACE_APPLY_EDIT] = apply

    def hunks(params: Any) -> None:
        params = _plain(params)
        editor.hunks[params["uri"]] = params
        editor.changed.set()

    def refresh(params: None) -> None:
        editor.lens_refreshes += 1

    features["blazedit/hunks"] = hunks
    features[types.WORKSPACE_CODE_LENS_REFRESH] = refresh
    features[types.WINDOW_SHOW_MESSAGE_REQUEST] = lambda params: editor._ask(params)
    register_lsp_features(client, features)
    return client


def _plain(value: Any) -> Any:
    """pygls's namedtuples for a custom notification's params, as JSON-like data."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _fix_code_action_union(converter) -> None:
    """lsprotocol 2025.0.0 reads every code action that has a `command` as a
    bare Command (it only checks the key); a Command's `command` is a string."""

    def hook(obj: Any, _: type) -> types.Command | types.CodeAction:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, types.Command)
        return converter.structure(obj, types.CodeAction)

    converter.register_structure_hook(Union[types.Command, types.CodeAction], hook)


def capabilities(name: str, progress: bool = True) -> types.ClientCapabilities:
    from pytest_lsp import client_capabilities

    caps = client_capabilities(name)
    if not progress:
        caps.window.work_done_progress = False
    return caps


async def start(client: LanguageClient, name: str, options: dict, progress: bool = True) -> Editor:
    result = await client.initialize_session(types.InitializeParams(
        capabilities=capabilities(name, progress), initialization_options=options))
    editor: Editor = client.editor  # type: ignore[attr-defined]
    editor.encoding = result.capabilities.position_encoding
    return editor
