"""Review of AI edits in the editor: each open document's review state (review.Review) kept in
step with the editor, and shown with what every LSP client renders: diagnostics, code lenses
and code actions, plus the `blazedit/hunks` notification for clients that draw removed text.

Why a lock per document: the server must tell its own edits from the user's typing. Its
applies (AI hunks, rejects) take turns; while one is in flight, a didChange is not typing
and moves nothing; once the editor has applied it, the sender records it (``landed``,
``reverted``) and the review follows the document again from the next version on.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
from typing import Any, AsyncIterator, Protocol
from urllib.parse import unquote

import msgspec
from lsprotocol import types
from pygls.protocol import LanguageServerProtocol
from pygls.workspace import TextDocument, Workspace
from pygls.workspace.position_codec import PositionCodec

from .config import Config
from .edits import split_lines
from .review import Hunk, Review

log = logging.getLogger(__name__)

HUNKS = "blazedit/hunks"
"""Notification: {uri, version, instruction, hunks: [{id, range, original}]} (docs/lsp.md)."""
SOURCE = "blazedit"
KIND = "quickfix.blazedit"
ACCEPT_HUNK, REJECT_HUNK = "blazedit.acceptHunk", "blazedit.rejectHunk"
ACCEPT_ALL, REJECT_ALL, NEXT_HUNK = "blazedit.acceptAll", "blazedit.rejectAll", "blazedit.nextHunk"
COMMANDS = (ACCEPT_HUNK, REJECT_HUNK, ACCEPT_ALL, REJECT_ALL, NEXT_HUNK)


class Shows(Protocol):
    """What the store uses of the server (host.Host holds the store, so it cannot be named here)."""

    config: Config
    client_capabilities: types.ClientCapabilities
    workspace: Workspace
    protocol: LanguageServerProtocol

    def open_document(self, uri: str) -> TextDocument | None: ...

    def text_document_publish_diagnostics(self, params: types.PublishDiagnosticsParams) -> None: ...

    def workspace_code_lens_refresh(self, params: None) -> Any: ...

    def tell(self, kind: types.MessageType, message: str) -> None: ...


def _key(uri: str) -> str:
    return unquote(uri)


class ReviewStore:
    """The review of each open document, and the lock its applies take turns on."""

    def __init__(self, ls: Shows) -> None:
        self._ls = ls
        self._reviews: dict[str, Review] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._applied_at: dict[str, int | None] = {}
        """The version our last applied edit went onto: the document shows it only after that."""
        self._told_no_preview = False

    def mode(self) -> str:
        """The review mode in effect: the setting, less "preview" where the client cannot
        confirm annotated changes (then "afterApply", and the user is told once)."""
        mode = self._ls.config.review
        if mode != "preview" or previews(self._ls.client_capabilities):
            return mode
        if not self._told_no_preview:
            self._told_no_preview = True
            self._ls.tell(types.MessageType.Info,
                          'Blazedit: review "preview" needs an editor that confirms annotated changes '
                          "(workspace.workspaceEdit.changeAnnotationSupport), which this one does not "
                          'declare: AI edits land, then each change can be kept or rejected ("afterApply")')
        return "afterApply"

    def preview_edit(self, uri: str, version: int | None, current: str, merged: str,
                     instruction: str) -> types.WorkspaceEdit | None:
        """Under "preview": the edit from ``current`` to ``merged`` with a change annotation per
        hunk, each needing confirmation; None otherwise."""
        if self.mode() != "preview":
            return None
        return annotated_edit(uri, version, current, merged, instruction, self._ls.workspace.position_encoding)

    @contextlib.asynccontextmanager
    async def applying(self, uri: str) -> AsyncIterator[None]:
        """Hold the document's lock around reading its text, sending an edit and recording it."""
        lock = self._locks.setdefault(_key(uri), asyncio.Lock())
        async with lock:
            yield
        self.changed(uri)

    def get(self, uri: str) -> Review | None:
        """The document's review, moved through what the user typed since (not while one of
        our edits is in flight: that change is not typing)."""
        lock = self._locks.get(_key(uri))
        return self._reviews.get(_key(uri)) if lock is not None and lock.locked() else self.synced(uri)

    def synced(self, uri: str) -> Review | None:
        """The review moved to the document's text, unless the editor has yet to report our
        last applied edit; for the holder of the lock."""
        key = _key(uri)
        review, doc = self._reviews.get(key), self._ls.open_document(uri)
        if review is None or doc is None:
            return review
        applied_at = self._applied_at.get(key)
        if applied_at is None or doc.version is None or doc.version > applied_at:
            self._applied_at.pop(key, None)
            review.typed(doc.source)
        return review

    def changed(self, uri: str) -> None:
        """didChange (or the end of one of our applies): follow the typing and show it."""
        if _key(uri) in self._reviews:
            self.get(uri)
            self.publish(uri)

    def landed(self, uri: str, job: str, instruction: str, before: str, after: str, version: int | None) -> None:
        """The editor applied an AI edit (a hunk of it, while streaming) from ``before`` to ``after``."""
        if self.mode() != "afterApply":
            return
        key = _key(uri)
        review = self._reviews.get(key)
        if review is None or review.job != job:
            review = self._reviews[key] = Review(before, instruction, job)
        review.typed(before)
        review.landed(after)
        self._settled(uri, version)

    def reverted(self, uri: str, review: Review, text: str, hunks: list[Hunk], version: int | None) -> None:
        review.reverted(text, hunks)
        self._settled(uri, version)

    def _settled(self, uri: str, version: int | None) -> None:
        key = _key(uri)
        self._applied_at[key] = version
        if not self._reviews[key].hunks:
            del self._reviews[key]
            self.publish(uri)  # none left: nothing to show

    def keep(self, uri: str, review: Review, hunks: list[Hunk]) -> None:
        review.keep(hunks)
        if not review.hunks:
            self._reviews.pop(_key(uri), None)
        self.publish(uri)

    def keep_all(self, uri: str) -> int:
        """Keep every pending hunk of the document; how many there were."""
        review = self._reviews.pop(_key(uri), None)
        if review is None:
            return 0
        self.publish(uri)
        return len(review.hunks)

    def closed(self, uri: str) -> None:
        if self._reviews.pop(_key(uri), None) is not None:
            self.publish(uri)
        self._applied_at.pop(_key(uri), None)

    # ------------------------------------------------------------ showing it

    def publish(self, uri: str) -> None:
        """Diagnostics, the `blazedit/hunks` notification and a code lens refresh."""
        ls = self._ls
        review, doc = self._reviews.get(_key(uri)), ls.open_document(uri)
        version = doc.version if doc else None
        hunks = review.hunks if review else []
        ranges = [hunk_range(review.text, h, ls.workspace.position_encoding) for h in hunks] if review else []
        diagnostics = [
            types.Diagnostic(range=r, message=describe(review, h, i, len(hunks)), severity=types.DiagnosticSeverity.Information,
                             source=SOURCE, data={"hunk": h.id})
            for i, (h, r) in enumerate(zip(hunks, ranges))
        ]
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))
        ls.protocol.notify(HUNKS, {
            "uri": uri, "version": version, "instruction": review.instruction if review else None,
            "hunks": [{"id": h.id, "range": msgspec.to_builtins(plain_range(r)), "original": h.original}
                      for h, r in zip(hunks, ranges)],
        })
        workspace = ls.client_capabilities.workspace
        if workspace and workspace.code_lens and workspace.code_lens.refresh_support:
            ls.workspace_code_lens_refresh(None)

    def code_actions(self, uri: str, selection: types.Range, only: list[str] | None) -> list[types.CodeAction]:
        """Keep/Reject for the hunks under the cursor or selection, then Keep all/Reject all."""
        review = self.get(uri)
        if review is None or not review.hunks or (only and not any(KIND == o or KIND.startswith(o + ".") or o == ""
                                                                     for o in only)):
            return []
        actions = []
        for h in review.at(selection.start.line, selection.end.line):
            args = [{"uri": uri, "hunk": h.id}]
            actions += [_action("Reject this AI change", REJECT_HUNK, args), _action("Keep this AI change", ACCEPT_HUNK, args)]
        everything = [{"uri": uri}]
        return actions + [_action("Keep all AI changes", ACCEPT_ALL, everything),
                          _action("Reject all AI changes", REJECT_ALL, everything)]

    def code_lenses(self, uri: str) -> list[types.CodeLens]:
        """"Keep | Reject" above each pending hunk."""
        review = self.get(uri)
        if review is None:
            return []
        lenses = []
        for h in review.hunks:
            here = types.Position(line=h.start, character=0)
            args = [{"uri": uri, "hunk": h.id}]
            lenses += [types.CodeLens(range=types.Range(start=here, end=here),
                                      command=types.Command(title=title, command=command, arguments=args))
                       for title, command in (("Keep", ACCEPT_HUNK), ("Reject", REJECT_HUNK))]
        return lenses


def _action(title: str, command: str, args: list[Any]) -> types.CodeAction:
    return types.CodeAction(title=title, kind=KIND, command=types.Command(title=title, command=command, arguments=args))


def plain_range(r: types.Range) -> dict[str, Any]:
    return {"start": {"line": r.start.line, "character": r.start.character},
            "end": {"line": r.end.line, "character": r.end.character}}


def hunk_range(text: str, hunk: Hunk, encoding: str | None) -> types.Range:
    """The hunk's whole lines; its end is the next line's start, or the text's end."""
    lines = split_lines(text)
    start = types.Position(line=hunk.start, character=0)
    if hunk.end < len(lines) or not lines or lines[-1].endswith(("\n", "\r")) or hunk.end == hunk.start:
        return types.Range(start=start, end=types.Position(line=hunk.end, character=0))
    codec = PositionCodec(encoding or types.PositionEncodingKind.Utf16)
    last = lines[-1]
    return types.Range(start=start, end=types.Position(line=len(lines) - 1, character=codec.client_num_units(last)))


def _count(n: int) -> str:
    return f"{n} line{'s' if n != 1 else ''}"


def _what(was: int, now: int) -> str:
    """A hunk that replaced ``was`` lines with ``now``: "replaced 3 lines", "added 2 lines"..."""
    if was == 0:
        return f"added {_count(now)}"
    return f"removed {_count(was)}" if now == 0 else f"replaced {_count(was)}"


def describe(review: Review, hunk: Hunk, index: int, total: int) -> str:
    """e.g. "AI change 2/5: replaced 3 lines"."""
    what = _what(len(split_lines(hunk.original)), hunk.end - hunk.start)
    edited = " (edited since: keep it, or undo your typing to reject it)" if review.touched(hunk) else ""
    return f"AI change {index + 1}/{total}: {what}{edited}"


def previews(caps: types.ClientCapabilities) -> bool:
    """Whether the client confirms annotated changes (LSP 3.16 changeAnnotationSupport)."""
    edit = caps.workspace.workspace_edit if caps.workspace else None
    return edit is not None and edit.change_annotation_support is not None


def annotated_edit(uri: str, version: int | None, current: str, merged: str, instruction: str,
                   encoding: str | None) -> types.WorkspaceEdit:
    """``current`` to ``merged`` as one versioned TextDocumentEdit (where annotated edits go)
    with one AnnotatedTextEdit per line hunk, over whole lines, each with its own change
    annotation ("AI change 2/3: replaced 1 line", the instruction) that needs confirmation."""
    old, new = split_lines(current), split_lines(merged)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    ops = [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]
    edits, annotations = [], {}
    for n, (i1, i2, j1, j2) in enumerate(ops, 1):
        key = f"blazedit.{n}"
        annotations[key] = types.ChangeAnnotation(label=f"AI change {n}/{len(ops)}: {_what(i2 - i1, j2 - j1)}",
                                                  needs_confirmation=True, description=instruction)
        edits.append(types.AnnotatedTextEdit(range=hunk_range(current, Hunk(n, i1, i2, "", None), encoding),
                                             new_text="".join(new[j1:j2]), annotation_id=key))
    document = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
    return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=document, edits=edits)],
                               change_annotations=annotations)
