"""What the feature modules (commands, editing) use of the language server.

They are handed the server, but know it only through this protocol: the import
graph stays one-way (server → commands → editing → host), and this list says
which of pygls's surface the features rely on. ``server.BlazeditServer`` is the
one implementation.
"""

from __future__ import annotations

from typing import Any, Awaitable, Protocol

from lsprotocol import types
from pygls.progress import Progress
from pygls.workspace import TextDocument, Workspace

from .config import Config
from .engine_link import EngineLink
from .jobs import JobRegistry
from .reviewing import ReviewStore


class Host(Protocol):
    config: Config
    jobs: JobRegistry
    review: ReviewStore
    engine: EngineLink
    client_capabilities: types.ClientCapabilities
    workspace: Workspace
    work_done_progress: Progress

    def tell(self, kind: types.MessageType, message: str) -> None:
        """window/showMessage, and the log."""

    def open_document(self, uri: str) -> TextDocument | None:
        """The document if the editor has it open (never read from disk)."""

    def window_log_message(self, params: types.LogMessageParams) -> None: ...

    def window_show_document_async(self, params: types.ShowDocumentParams) -> Awaitable[Any]: ...

    def window_show_message_request_async(self, params: types.ShowMessageRequestParams) -> Awaitable[Any]: ...

    def workspace_apply_edit_async(self, params: types.ApplyWorkspaceEditParams) -> Awaitable[Any]: ...
