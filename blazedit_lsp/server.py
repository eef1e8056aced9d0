"""The Blazedit language server: thin pygls handlers over the feature modules
(actions, commands, editing, jobs, edits, config, warming).

This process never imports torch: the engine runs in a daemon (or, with
``engine: "embedded"``, in a child process, or on an OpenAI-compatible server) and is
reached through an ``EngineBackend`` (engine/client/backend.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from engine import version as package_version

from . import actions, commands, reviewing
from . import config as settings
from .engine_link import EngineLink
from .jobs import JobRegistry
from .reviewing import ReviewStore
from .warming import Warmer

log = logging.getLogger(__name__)


class BlazeditServer(LanguageServer):
    """Holds the server's state: settings, jobs and the engine connection."""

    def __init__(self, engine: EngineLink | None = None) -> None:
        super().__init__("blazedit-lsp", package_version(), text_document_sync_kind=types.TextDocumentSyncKind.Full)
        self.init_config = settings.Config()
        self.config = settings.Config()
        self.jobs = JobRegistry()
        self.engine = engine or EngineLink()
        self.warmer = Warmer(self)
        self.review = ReviewStore(self)

    def configure(self, raw: Any, initial: bool = False) -> None:
        """Apply settings; bad keys are reported and keep their defaults.
        didChangeConfiguration settings apply over initializationOptions."""
        config, problems = settings.parse(raw, None if initial else self.init_config)
        if initial:
            self.init_config = config
        self.config = config
        for problem in problems:
            self.tell(types.MessageType.Warning, f"Blazedit settings: {problem}")

    def can_pull_configuration(self) -> bool:
        """Clients that send `settings: null` expect workspace/configuration."""
        workspace = self.client_capabilities.workspace
        return bool(workspace and workspace.configuration)

    def tell(self, kind: types.MessageType, message: str) -> None:
        """window/showMessage, and the log."""
        log.log(logging.ERROR if kind == types.MessageType.Error else logging.INFO, "%s", message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def open_document(self, uri: str) -> TextDocument | None:
        """The document if the editor has it open (never read from disk)."""
        docs = self.workspace.text_documents
        return docs.get(uri) or docs.get(unquote(uri))


server = BlazeditServer()


@server.feature(types.INITIALIZE)
def initialize(ls: BlazeditServer, params: types.InitializeParams) -> None:
    ls.configure(params.initialization_options, initial=True)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(ls: BlazeditServer, params: types.DidChangeConfigurationParams) -> None:
    raw = params.settings
    if raw is None and ls.can_pull_configuration():
        (raw,) = await ls.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=settings.SECTION)]))
    ls.configure(raw)


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: BlazeditServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.warmer.opened(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: BlazeditServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.warmer.changed(params.text_document.uri)
    ls.review.changed(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: BlazeditServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.warmer.closed(params.text_document.uri)
    ls.jobs.cancel(params.text_document.uri, "the document was closed")
    ls.review.closed(params.text_document.uri)


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[reviewing.KIND, actions.KIND]),
)
def code_action(ls: BlazeditServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
    doc = ls.open_document(params.text_document.uri)
    if doc is None:
        return None
    only = [getattr(k, "value", k) for k in params.context.only] if params.context.only else None
    found = ls.review.code_actions(doc.uri, params.range, only)
    found += actions.code_actions(doc.uri, doc.version, doc.source, params.range, only, ls.config)
    return found or None


@server.feature(types.TEXT_DOCUMENT_CODE_LENS)
def code_lens(ls: BlazeditServer, params: types.CodeLensParams) -> list[types.CodeLens] | None:
    return ls.review.code_lenses(params.text_document.uri) or None


@server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
def progress_cancel(ls: BlazeditServer, params: types.WorkDoneProgressCancelParams) -> None:
    if (job := ls.jobs.by_token(params.token)) is not None:
        job.cancel("cancelled from the progress")


@server.feature(types.SHUTDOWN)
async def shutdown(ls: BlazeditServer, params: None) -> None:
    ls.warmer.close()
    ls.jobs.cancel(None, "the server is shutting down")
    await ls.engine.close()


@server.command(actions.EDIT_FILE)
async def edit_file(ls: BlazeditServer, *args: Any) -> dict[str, Any]:
    return await commands.edit_file(ls, args)


@server.command(actions.CANCEL)
async def cancel(ls: BlazeditServer, *args: Any) -> dict[str, Any]:
    return await commands.cancel(ls, args)


@server.command(actions.UNDO)
async def undo(ls: BlazeditServer, *args: Any) -> dict[str, Any]:
    return await commands.undo(ls, args)


@server.command(reviewing.ACCEPT_HUNK)
async def accept_hunk(ls: BlazeditServer, *args: Any) -> dict[str, Any]:
    return await commands.accept_hunk(ls, args)


@server.command(reviewing.REJECT_HUNK)
async def reject_hunk(ls: BlazeditServer, *args: Any) -> dict[str, Any]:
    return await commands.reject_hunk(ls, args)


@server.command(reviewing.ACCEPT_ALL)
async def accept_all(ls: BlazeditServer, *args: Any) -> dict[str, Any]:
    return await commands.accept_all(ls, args)


@server.command(reviewing.REJECT_ALL)
async def reject_all(ls: BlazeditServer, *args: Any) -> dict[str, Any]:
    return await commands.reject_all(ls, args)


@server.command(reviewing.NEXT_HUNK)
async def next_hunk(ls: BlazeditServer, *args: Any) -> dict[str, Any]:
    return await commands.next_hunk(ls, args)


@server.command(actions.STATUS)
async def status(ls: BlazeditServer, *args: Any) -> dict[str, Any]:
    return await commands.status(ls, args)


def main(argv: list[str] | None = None) -> int:
    """`blazedit-lsp [--stdio | --tcp | --ws] [--host H] [--port P] [-v]`"""
    parser = argparse.ArgumentParser(
        prog="blazedit-lsp", description="Blazedit language server: AI whole-file edits applied as small LSP edits.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (default)")
    mode.add_argument("--tcp", action="store_true", help="listen on TCP")
    mode.add_argument("--ws", action="store_true", help="listen on a WebSocket")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2087)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug, -vvv with pygls's messages")
    parser.add_argument("--log-file", help="log here instead of stderr")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    args = parser.parse_args(argv)
    if args.ws and importlib.util.find_spec("websockets") is None:
        parser.error("--ws needs the websockets package: pip install 'pygls[ws]'")
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    handler = logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=level, handlers=[handler], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose < 3:  # pygls logs every message at info
        logging.getLogger("pygls").setLevel(logging.WARNING)
    if args.tcp:
        server.start_tcp(args.host, args.port)
    elif args.ws:
        server.start_ws(args.host, args.port)
    else:
        server.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
