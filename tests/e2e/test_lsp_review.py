"""Reviewing an AI edit over the real server (stdio) against the scripted engine: the hunks
an edit leaves, shown as diagnostics, lenses and `blazedit/hunks`; keep and reject, one or
all; typing in between. The property tests hold the server (and review.Review alone) to
review_model: the buffer is the original with exactly the kept hunks applied plus the typing.
"""

from __future__ import annotations

import itertools

import pytest
import pytest_lsp
from hypothesis import HealthCheck, given, settings
from lsp_editor import Editor
from lsprotocol import types
from pytest_lsp import LanguageClient
from review_model import TYPING, Case, Model, cases
from test_lsp_jobs import LONG, RENAME, config, session, swap, swap_words

from blazedit_lsp.review import Review, Touched

URI = "file:///work/review.py"


@pytest_lsp.fixture(config=config)
async def client(lsp_client: LanguageClient):
    """VS Code's capabilities (code lens refresh, showDocument)."""
    async for _ in session(lsp_client, "visual_studio_code"):
        yield


@pytest_lsp.fixture(config=config)
async def unreviewed(lsp_client: LanguageClient):
    async for _ in session(lsp_client, "neovim", review="off"):
        yield


def editor_of(client: LanguageClient) -> Editor:
    return client.editor  # type: ignore[attr-defined]


def diagnostics(client: LanguageClient, uri: str = URI) -> list[types.Diagnostic]:
    return list(client.diagnostics.get(uri, []))


async def edited(client: LanguageClient) -> Editor:
    """LONG after the scripted rename: 3 hunks (fetch's def and sleep, main's call)."""
    editor = editor_of(client)
    editor.fake.respond = swap_words  # type: ignore[attr-defined]
    editor.open(URI, LONG)
    assert (await editor.edit(URI, RENAME))["state"] == "applied"
    await editor.barrier()
    return editor


def lines_of(editor: Editor, uri: str = URI) -> list[tuple[int, int, str]]:
    return [(h["range"]["start"]["line"], h["range"]["end"]["line"], h["original"]) for h in editor.hunks[uri]["hunks"]]


async def test_an_edit_leaves_hunks_shown_three_ways(client: LanguageClient):
    editor = await edited(client)
    assert lines_of(editor) == [(3, 5, "def fetch(url):\n    time.sleep(1)\n"),
                                (19, 20, "    store(parse(fetch('x')))\n")]
    assert editor.hunks[URI]["instruction"] == RENAME and editor.hunks[URI]["version"] == editor.version(URI)
    found = diagnostics(client)
    assert [d.message for d in found] == ["AI change 1/2: replaced 2 lines", "AI change 2/2: replaced 1 line"]
    assert {(d.source, d.severity) for d in found} == {("blazedit", types.DiagnosticSeverity.Information)}
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(
        text_document=types.TextDocumentIdentifier(uri=URI)))
    assert [(lens.range.start.line, lens.command.title) for lens in lenses] == [
        (3, "Keep"), (3, "Reject"), (19, "Keep"), (19, "Reject")]
    assert editor.lens_refreshes > 0
    titles = [a.title for a in await editor.code_actions(URI, 4)]
    assert titles[:4] == ["Reject this AI change", "Keep this AI change", "Keep all AI changes", "Reject all AI changes"]
    titles = [a.title for a in await editor.code_actions(URI, 10)]  # not on a hunk: only the "all" ones
    assert titles[:2] == ["Keep all AI changes", "Reject all AI changes"] and "Reject this AI change" not in titles


async def test_reject_one_keep_one_through_code_actions(client: LanguageClient):
    editor = await edited(client)
    typed = "# typed\n" + editor.text(URI)  # typing elsewhere moves the hunks
    editor.type(URI, typed)
    await editor.barrier()
    assert [h[0] for h in lines_of(editor)] == [4, 20]
    reject = (await editor.code_actions(URI, 4))[0]
    assert reject.title == "Reject this AI change"
    result = await editor.command(reject.command.command, *reject.command.arguments)
    assert result == {"state": "reverted", "edits": 2, "pending": 1}
    assert editor.text(URI) == "# typed\n" + LONG.replace("fetch('x')", "get('x')")
    await editor.barrier()
    assert [d.message for d in diagnostics(client)] == ["AI change 1/1: replaced 1 line"]
    keep = (await editor.code_actions(URI, 20))[1]
    assert keep.title == "Keep this AI change"
    assert (await editor.command(keep.command.command, *keep.command.arguments))["state"] == "kept"
    await editor.barrier()
    assert diagnostics(client) == [] and editor.hunks[URI]["hunks"] == []
    assert editor.text(URI) == "# typed\n" + LONG.replace("fetch('x')", "get('x')")


async def test_reject_refuses_where_typing_overlaps_and_changes_nothing(client: LanguageClient):
    editor = await edited(client)
    typed = editor.text(URI).replace("await asyncio.sleep(1)", "await asyncio.sleep(5)")
    editor.type(URI, typed)
    await editor.barrier()
    first = editor.hunks[URI]["hunks"][0]["id"]
    result = await editor.command("blazedit.rejectHunk", {"uri": URI, "hunk": first})
    assert result["state"] == "refused" and "you typed in it" in result["message"]
    assert (await editor.command("blazedit.rejectAll", {"uri": URI}))["state"] == "refused"
    assert editor.text(URI) == typed
    assert "edited since" in diagnostics(client)[0].message
    second = editor.hunks[URI]["hunks"][1]["id"]
    assert (await editor.command("blazedit.rejectHunk", {"uri": URI, "line": 19}))["state"] == "reverted"
    assert editor.text(URI) == typed.replace("get('x')", "fetch('x')")
    assert [h["id"] for h in editor.hunks[URI]["hunks"]] == [first] and second != first


async def test_next_hunk_wraps_and_a_new_edit_keeps_the_pending_ones(client: LanguageClient):
    editor = await edited(client)
    assert (await editor.command("blazedit.nextHunk", {"uri": URI, "line": 5}))["range"]["start"]["line"] == 19
    assert (await editor.command("blazedit.nextHunk", {"uri": URI, "line": 19}))["index"] == 1
    assert (await editor.command("blazedit.nextHunk", {"uri": URI, "line": 3, "backward": True}))["index"] == 2
    editor.fake.respond = lambda e: (e.text.replace("def main", "def run"), "stop")  # type: ignore[attr-defined]
    assert (await editor.edit(URI, "rename main to run"))["state"] == "applied"
    assert any("kept the 2 pending AI change(s)" in m for m in editor.messages(types.MessageType.Info))
    await editor.barrier()
    assert lines_of(editor) == [(18, 19, "def main():\n")]


async def test_review_off_tracks_nothing_and_undo_reverts_the_edit(unreviewed: LanguageClient):
    editor = await edited(unreviewed)
    assert URI not in editor.hunks and diagnostics(unreviewed) == []
    assert (await editor.command("blazedit.undo", {"uri": URI}))["state"] == "undone"
    assert editor.text(URI) == LONG


async def test_a_line_break_the_editor_puts_after_an_edit_that_dropped_it_is_no_typing(client: LanguageClient):
    """The model's file ends without a line break; Neovim's buffer keeps one ('eol') and says
    so in its next didChange. The last hunk is not "edited since", and rejecting everything
    gives the original back exactly."""
    editor = editor_of(client)
    editor.fake.respond = lambda edit: (swap(edit.text).removesuffix("\n"), "stop")  # type: ignore[attr-defined]
    editor.open(URI, LONG)
    assert (await editor.edit(URI, RENAME))["state"] == "applied"
    assert editor.text(URI) == swap(LONG).removesuffix("\n")
    editor.type(URI, editor.text(URI) + "\n")
    await editor.barrier()
    assert [d.message for d in diagnostics(client)] == ["AI change 1/2: replaced 2 lines", "AI change 2/2: replaced 1 line"]
    assert (await editor.command("blazedit.rejectAll", {"uri": URI}))["state"] == "reverted"
    assert editor.text(URI) == LONG
    await editor.barrier()
    assert diagnostics(client) == []


@pytest_lsp.fixture(config=config)
async def previewing(lsp_client: LanguageClient):
    """VS Code's capabilities (changeAnnotationSupport), review "preview"."""
    async for _ in session(lsp_client, "visual_studio_code", review="preview"):
        yield


@pytest_lsp.fixture(config=config)
async def cannot_preview(lsp_client: LanguageClient):
    """Emacs' capabilities (documentChanges, no changeAnnotationSupport), review "preview"."""
    async for _ in session(lsp_client, "emacs", review="preview"):
        yield


def annotated(params: types.ApplyWorkspaceEditParams) -> list[tuple[int, int, str, str, bool, str | None]]:
    """Each edit of an annotated WorkspaceEdit: its lines, text and its annotation's label,
    needsConfirmation and description."""
    (change,) = params.edit.document_changes
    notes = params.edit.change_annotations
    return [(e.range.start.line, e.range.end.line, e.new_text, notes[e.annotation_id].label,
             notes[e.annotation_id].needs_confirmation, notes[e.annotation_id].description) for e in change.edits]


async def test_preview_sends_one_edit_with_an_annotation_per_hunk_to_confirm(previewing: LanguageClient):
    """Nothing applied while streaming; one versioned edit, each hunk's whole lines annotated
    (needsConfirmation); applied in full by this client, it leaves nothing to review."""
    editor = editor_of(previewing)
    editor.fake.respond = swap_words  # type: ignore[attr-defined]
    editor.open(URI, LONG)
    result = await editor.edit(URI, RENAME)
    assert result["state"] == "applied", result
    (params,) = editor.applied
    assert params.edit.document_changes[0].text_document.version == 1
    assert annotated(params) == [
        (3, 5, "def get(url):\n    await asyncio.sleep(1)\n", "AI change 1/2: replaced 2 lines", True, RENAME),
        (19, 20, "    store(parse(get('x')))\n", "AI change 2/2: replaced 1 line", True, RENAME)]
    assert len(params.edit.change_annotations) == 2
    assert editor.text(URI) == swap(LONG)
    await editor.barrier()
    assert not editor.hunks.get(URI, {}).get("hunks") and diagnostics(previewing) == []
    assert "Reject this AI change" not in [a.title for a in await editor.code_actions(URI, 4)]
    assert "offered in the editor's preview" in editor.ends()[-1], editor.ends()


async def test_preview_applies_only_the_hunks_the_user_picked(previewing: LanguageClient):
    """The user unticks the first hunk in the preview: only the second lands, and nothing is
    tracked or shown afterwards (the preview was the review)."""
    editor = editor_of(previewing)
    editor.fake.respond = swap_words  # type: ignore[attr-defined]
    picked = editor._apply

    def untick_first(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        (change,) = params.edit.document_changes
        change.edits = [e for e in change.edits if e.annotation_id != "blazedit.1"]
        return picked(params)

    editor._apply = untick_first  # type: ignore[method-assign]
    editor.open(URI, LONG)
    assert (await editor.edit(URI, RENAME))["state"] == "applied"
    assert editor.text(URI) == LONG.replace("fetch('x')", "get('x')")
    await editor.barrier()
    assert not editor.hunks.get(URI, {}).get("hunks") and diagnostics(previewing) == []


async def test_preview_discarded_applies_nothing_and_says_so(previewing: LanguageClient):
    editor = editor_of(previewing)
    editor.fake.respond = swap_words  # type: ignore[attr-defined]
    editor._apply = lambda params: (editor.applied.append(params),  # type: ignore[method-assign]
                                    types.ApplyWorkspaceEditResult(applied=False))[1]
    editor.open(URI, LONG)
    result = await editor.edit(URI, RENAME)
    assert result["state"] == "refused" and "discarded in the editor's preview" in result["summary"], result
    assert len(editor.applied) == 1 and editor.text(URI) == LONG
    assert "Blazedit: nothing applied (discarded in the editor's preview)" in editor.messages()


async def test_preview_without_change_annotations_reviews_after_applying_and_says_so_once(
        cannot_preview: LanguageClient):
    editor = editor_of(cannot_preview)
    editor.fake.respond = swap_words  # type: ignore[attr-defined]
    editor.open(URI, LONG)
    assert (await editor.edit(URI, RENAME))["state"] == "applied"
    assert all(not params.edit.change_annotations for params in editor.applied)
    await editor.barrier()
    assert lines_of(editor) == [(3, 5, "def fetch(url):\n    time.sleep(1)\n"),
                                (19, 20, "    store(parse(fetch('x')))\n")]
    assert (await editor.command("blazedit.rejectAll", {"uri": URI}))["state"] == "reverted"
    assert editor.text(URI) == LONG
    assert (await editor.edit(URI, RENAME))["state"] == "applied"
    told = [m for m in editor.messages() if '"preview"' in m]
    assert len(told) == 1 and "changeAnnotationSupport" in told[0] and '"afterApply"' in told[0], editor.messages()


# ------------------------------------------------------------------ nothing lost


def _steps(model: Model, review: Review | None, op: tuple[str, int, int]) -> str | None:
    """Apply a typing step to the model; the kind of review step it is otherwise."""
    kind, x, y = op
    if kind == "insert":
        model.insert(x)
    elif kind == "edit_plain":
        model.edit_plain(x)
    elif kind == "delete_plain":
        model.delete_plain(x)
    elif kind == "edit_hunk":
        model.edit_hunk(x, y)
    elif kind == "delete_hunk_line":
        model.delete_hunk_line(x, y)
    else:
        return kind
    return None


def _check(model: Model, hunks: list[tuple[int, int, str]]) -> None:
    assert hunks == [(s, e, o) for s, e, o, _ in model.hunks()]


@settings(max_examples=500, deadline=None)
@given(case=cases(max_ops=14))
def test_review_alone_loses_nothing(case: Case):
    """review.Review against the model, without a server (fast: many more cases)."""
    model, review = Model(case.segs), Review(case.original, "x")
    review.landed(case.ai)
    for op in case.ops:
        kind = _steps(model, review, op)
        pending = model.pending()
        if kind is None:
            review.typed(model.text())
        elif kind == "keep" and pending:
            i = op[1] % len(pending)
            review.keep([review.hunks[i]])
            model.keep(pending[i])
        elif kind in ("keep_all",):
            review.keep(list(review.hunks))
            for s in pending:
                model.keep(s)
        elif kind in ("reject", "reject_all", "undo") and pending:
            chosen = [review.hunks[op[1] % len(pending)]] if kind == "reject" else list(review.hunks)
            try:
                text, rest = review.without(chosen)
                review.reverted(text, rest)
                rejected = True
            except Touched:
                rejected = False
            expected = model.reject(pending[op[1] % len(pending)]) if kind == "reject" else model.reject_all()
            assert rejected == expected
        assert review.text == model.text()
        _check(model, [(h.start, h.end, h.original) for h in review.hunks])


_uris = itertools.count()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=cases(max_ops=10))
async def test_review_over_the_server_loses_nothing(client: LanguageClient, case: Case):
    """Random hunks, typing, keeps, rejects and undo over the LSP, one server for all cases:
    after every step the buffer and the server's hunks are the model's."""
    editor = editor_of(client)
    uri = f"file:///work/r{next(_uris)}.py"
    editor.fake.respond = lambda e: (case.ai, "stop")  # type: ignore[attr-defined]
    editor.open(uri, case.original)
    assert (await editor.edit(uri, "change it"))["state"] == "applied"
    model = Model(case.segs)
    await editor.barrier()
    assert editor.text(uri) == case.ai
    _check(model, lines_of(editor, uri))
    for op in case.ops:
        kind = _steps(model, None, op)
        pending, ids = model.pending(), [h["id"] for h in editor.hunks[uri]["hunks"]]
        if kind is None:
            editor.type(uri, model.text())
        elif kind == "keep" and pending:
            i = op[1] % len(pending)
            assert (await editor.command("blazedit.acceptHunk", {"uri": uri, "hunk": ids[i]}))["state"] == "kept"
            model.keep(pending[i])
        elif kind == "keep_all":
            assert (await editor.command("blazedit.acceptAll", {"uri": uri}))["state"] == "kept"
            for s in pending:
                model.keep(s)
        elif kind == "reject" and pending:
            i = op[1] % len(pending)
            result = await editor.command("blazedit.rejectHunk", {"uri": uri, "hunk": ids[i]})
            assert result["state"] == ("reverted" if model.reject(pending[i]) else "refused"), result
        elif kind == "reject_all":
            result = await editor.command("blazedit.rejectAll", {"uri": uri})
            assert result["state"] == ("reverted" if model.reject_all() else "refused"), result
        elif kind == "undo":
            result = await editor.command("blazedit.undo", {"uri": uri})
            assert result["state"] == ("undone" if model.reject_all() else "rejected"), result
        await editor.barrier()
        assert editor.text(uri) == model.text(), op
        _check(model, lines_of(editor, uri))
        assert len(diagnostics(client, uri)) == len(model.pending())
    editor.close(uri)


def test_a_later_streamed_hunk_merges_with_the_one_it_meets():
    review = Review("a\nb\nc\n", "x")
    review.landed("a\nB\nc\n")
    (first,) = review.hunks
    review.landed("a\nB2\nB3\nc\n")  # the next batch rewrites the same line again
    assert [(h.id, h.start, h.end, h.original, h.ai) for h in review.hunks] == [(first.id, 1, 3, "b\n", "B2\nB3\n")]
    review.landed("a\nb\nc\n")  # and back: nothing changed, nothing to review
    assert review.hunks == []
