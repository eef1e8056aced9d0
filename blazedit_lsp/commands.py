"""The workspace/executeCommand commands: blazedit.editFile, .cancel, .undo, .status, and the
review's .acceptHunk, .rejectHunk, .acceptAll, .rejectAll, .nextHunk.

Arguments are one JSON object each (docs/contracts.md), validated with msgspec
so a wrong field name is reported, not ignored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import msgspec
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from engine.client import protocol

from . import actions, editing, reviewing
from .edits import RebaseConflict, line_starts, rebase, split_lines, text_edits
from .engine_link import UNREACHABLE
from .host import Host
from .jobs import LspJob
from .review import Hunk, Touched

log = logging.getLogger(__name__)


class LspPosition(msgspec.Struct, forbid_unknown_fields=True):
    line: Annotated[int, msgspec.Meta(ge=0)]
    character: Annotated[int, msgspec.Meta(ge=0)]


class LspRange(msgspec.Struct, forbid_unknown_fields=True):
    start: LspPosition
    end: LspPosition


class EditFileArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    uri: str
    version: int | None = None
    """The version the action was offered for; a changed document is refused."""
    instruction: str | None = None
    range: LspRange | None = None
    """A selection: edit only the whole lines it covers (the file stays the context)."""


class UriArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    uri: str


class HunkArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    uri: str
    hunk: int | None = None
    """The hunk's id (code actions, lenses, blazedit/hunks); None: the hunk at ``line``."""
    line: Annotated[int, msgspec.Meta(ge=0)] | None = None


class NextHunkArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    uri: str
    line: Annotated[int, msgspec.Meta(ge=0)] = 0
    """From this line (the cursor's); the first hunk after it, wrapping around."""
    backward: bool = False


class CancelArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    uri: str | None = None
    """None: cancel every running edit."""


def _parse(ls: Host, command: str, args: tuple[Any, ...], kind: type, shape: str) -> Any:
    """The one argument object, or JsonRpcInvalidParams after telling the user."""
    try:
        if len(args) > 1:
            raise msgspec.ValidationError(f"expected one argument object, got {len(args)} arguments")
        return msgspec.convert(args[0] if args and args[0] is not None else {}, kind)
    except msgspec.ValidationError as e:
        message = f"invalid arguments to {command}: {e}; expected {shape}"
        ls.tell(types.MessageType.Error, f"Blazedit: {message}")
        raise JsonRpcInvalidParams(message=message) from None


def _reject(ls: Host, message: str) -> dict[str, Any]:
    ls.tell(types.MessageType.Warning, f"Blazedit: {message}")
    return {"state": "rejected", "message": message}


async def edit_file(ls: Host, args: tuple[Any, ...]) -> dict[str, Any]:
    """Start an edit job; answer when it ends or after commandTimeoutMs,
    whichever comes first (the edit is applied through workspace/applyEdit
    either way)."""
    a = _parse(ls, actions.EDIT_FILE, args, EditFileArgs, "{uri, version?, instruction?, range?}")
    if not getattr(ls.client_capabilities.workspace, "apply_edit", False):
        return _reject(ls, "this editor does not support workspace/applyEdit, so edits cannot be applied")
    doc = ls.open_document(a.uri)
    if doc is None:
        return _reject(ls, f"{a.uri} is not open in the editor; open it and try again")
    if a.version is not None and a.version != doc.version:
        return _reject(ls, f"the document changed since the action was offered (version {a.version}, now {doc.version}); run it again")
    size = len(doc.source.encode("utf-8", "surrogatepass"))
    if size > ls.config.max_file_bytes:
        return _reject(ls, f"the document has {size} bytes, more than maxFileBytes ({ls.config.max_file_bytes})")
    resolved = actions.resolve(doc.source, a.instruction, ls.config)
    if resolved is None:
        return _reject(ls, actions.HOW_TO_INSTRUCT.format(marker=ls.config.instruction_marker))
    region = None
    if a.range is not None:
        selection = types.Range(start=types.Position(a.range.start.line, a.range.start.character),
                                end=types.Position(a.range.end.line, a.range.end.character))
        if (lines := actions.selected_lines(selection)) is None:
            return _reject(ls, "the selection is empty; select the lines to edit, or edit the whole file")
        region = _region(resolved, *lines)
        if region is None:
            return _reject(ls, f"the selection (lines {lines[0] + 1}-{lines[1] + 1}) is not within the document")
    if kept := ls.review.keep_all(doc.uri):
        ls.tell(types.MessageType.Info, f"Blazedit: kept the {kept} pending AI change(s) of the last edit (a new edit starts)")
    job = LspJob(uri=doc.uri, base=doc.source, sent=resolved.text, instruction=resolved.instruction, region=region)
    ls.jobs.add(job)
    log.info("job %s: %s %r (instruction from %s)", job.id, doc.uri, job.instruction, resolved.source)
    job.task = asyncio.create_task(editing.run(ls, job))
    await _wait(job, ls.config.command_timeout_ms / 1000)
    return {"jobId": job.id, "state": job.state, "summary": job.summary}


def _region(resolved: actions.Resolved, first: int, last: int) -> protocol.Region | None:
    """Document lines [first, last] as a Region of the text sent (without the
    instruction comment); None when the document has no such lines."""
    lines = split_lines(resolved.text)
    first, end = resolved.sent_line(first), resolved.sent_line(last + 1)
    if first > len(lines) or end > len(lines) + 1:
        return None
    starts = line_starts(lines)
    return protocol.Region(start=starts[first], end=starts[min(end, len(lines))])


async def _wait(job: LspJob, timeout: float) -> None:
    try:
        await asyncio.wait_for(job.finished.wait(), timeout)
    except asyncio.TimeoutError:
        log.info("job %s still running; answering its command now", job.id)


async def cancel(ls: Host, args: tuple[Any, ...]) -> dict[str, Any]:
    """Cancel the edit of a document (or all) and wait for it to stop."""
    a = _parse(ls, actions.CANCEL, args, CancelArgs, "{uri?}")
    jobs = ls.jobs.cancel(a.uri, "cancelled by blazedit.cancel")
    if not jobs:
        ls.tell(types.MessageType.Info, "Blazedit: no AI edit is running" + (f" for {a.uri}" if a.uri else ""))
    await asyncio.gather(*(_wait(job, editing.CANCEL_GRACE_S + 1) for job in jobs))
    return {"cancelled": [job.id for job in jobs]}


async def undo(ls: Host, args: tuple[Any, ...]) -> dict[str, Any]:
    """Revert the last AI edit of a document (all of it, hunks applied while streaming
    included), rebased over what the user typed since; refused where the typing
    touches the lines the edit changed. Under review, that is rejecting every pending hunk."""
    a = _parse(ls, actions.UNDO, args, UriArgs, "{uri}")
    doc = ls.open_document(a.uri)
    if (job := ls.jobs.get(a.uri)) is not None:
        job.cancel("blazedit.undo")
        await _wait(job, editing.CANCEL_GRACE_S + 1)
    if ls.review.mode() == "afterApply":
        outcome = await _reject_hunks(ls, a.uri, None)
        if outcome.get("state") != "reverted":
            return {"state": "rejected", "message": outcome["message"]}
        ls.tell(types.MessageType.Info, "Blazedit: the AI edit was undone")
        return {"state": "undone", "edits": outcome["edits"]}
    last = ls.jobs.last_applied(a.uri)
    if doc is None or last is None:
        return _reject(ls, "no AI edit of this document to undo")
    try:
        reverted = rebase(last.after, last.before, doc.source)
    except RebaseConflict as e:
        return _reject(ls, f"cannot undo: you changed the lines the AI edit changed ({e}); use the editor's undo")
    edits = text_edits(doc.source, reverted, ls.workspace.position_encoding)
    if edits:
        response = await editing.send_edits(ls, doc.uri, doc.version, edits, "Blazedit: undo the AI edit")
        if not response.applied:
            return _reject(ls, f"the editor did not apply the undo: {response.failure_reason or 'no reason given'}")
    ls.jobs.forget_applied(a.uri)
    ls.tell(types.MessageType.Info, "Blazedit: the AI edit was undone")
    return {"state": "undone", "edits": len(edits)}


def _refuse(ls: Host, message: str) -> dict[str, Any]:
    ls.tell(types.MessageType.Warning, f"Blazedit: {message}")
    return {"state": "refused", "message": message}


def _pick(ls: Host, a: HunkArgs) -> tuple[Any, Hunk] | str:
    """The review and the hunk the arguments name, or why there is none."""
    review = ls.review.get(a.uri)
    if review is None or not review.hunks:
        return "no AI changes of this document are pending review"
    if a.hunk is not None:
        hunk = review.get(a.hunk)
    else:
        line = a.line or 0
        hunk = next(iter(review.at(line, line)), None)
    return (review, hunk) if hunk is not None else "that AI change is no longer pending (kept, rejected or deleted)"


async def accept_hunk(ls: Host, args: tuple[Any, ...]) -> dict[str, Any]:
    """Keep one AI change: it stops being tracked; the text stays as it is."""
    a = _parse(ls, reviewing.ACCEPT_HUNK, args, HunkArgs, "{uri, hunk?, line?}")
    picked = _pick(ls, a)
    if isinstance(picked, str):
        return _refuse(ls, picked)
    review, hunk = picked
    ls.review.keep(a.uri, review, [hunk])
    return {"state": "kept", "pending": len(review.hunks)}


async def accept_all(ls: Host, args: tuple[Any, ...]) -> dict[str, Any]:
    a = _parse(ls, reviewing.ACCEPT_ALL, args, UriArgs, "{uri}")
    return {"state": "kept", "kept": ls.review.keep_all(a.uri), "pending": 0}


async def reject_hunk(ls: Host, args: tuple[Any, ...]) -> dict[str, Any]:
    """Put one AI change's original text back, keeping the typing around it."""
    a = _parse(ls, reviewing.REJECT_HUNK, args, HunkArgs, "{uri, hunk?, line?}")
    if isinstance(picked := _pick(ls, a), str):
        return _refuse(ls, picked)
    return await _reject_hunks(ls, a.uri, [picked[1].id])


async def reject_all(ls: Host, args: tuple[Any, ...]) -> dict[str, Any]:
    """Put every pending AI change back; nothing at all when one has typing in it."""
    a = _parse(ls, reviewing.REJECT_ALL, args, UriArgs, "{uri}")
    return await _reject_hunks(ls, a.uri, None)


async def _reject_hunks(ls: Host, uri: str, ids: list[int] | None) -> dict[str, Any]:
    """Revert hunks ``ids`` (None: all) in one versioned edit, or refuse and change nothing."""
    async with ls.review.applying(uri):
        review, doc = ls.review.synced(uri), ls.open_document(uri)
        if review is None or doc is None or not review.hunks:
            return _refuse(ls, "no AI changes of this document are pending review")
        hunks = [h for h in review.hunks if ids is None or h.id in ids]
        if not hunks:
            return _refuse(ls, "that AI change is no longer pending (kept, rejected or deleted)")
        if review.text != doc.source:
            return _refuse(ls, "the editor has not reported the last edit yet; try again")
        try:
            text, remaining = review.without(hunks)
        except Touched as e:
            number = review.hunks.index(e.hunk) + 1
            return _refuse(ls, f"cannot reject AI change {number}/{len(review.hunks)}: you typed in it since "
                               "(keep it, or undo your typing first)")
        edits = text_edits(doc.source, text, ls.workspace.position_encoding)
        response = await editing.send_edits(ls, uri, doc.version, edits, "Blazedit: reject AI changes")
        if not response.applied:
            return _refuse(ls, f"the editor did not apply the reject: {response.failure_reason or 'no reason given'}")
        ls.review.reverted(uri, review, text, remaining, doc.version)
    return {"state": "reverted", "edits": len(edits), "pending": len(remaining)}


async def next_hunk(ls: Host, args: tuple[Any, ...]) -> dict[str, Any]:
    """The next pending hunk after ``line`` (wrapping), shown with window/showDocument where
    the editor supports it."""
    a = _parse(ls, reviewing.NEXT_HUNK, args, NextHunkArgs, "{uri, line?, backward?}")
    review = ls.review.get(a.uri)
    if review is None or not review.hunks:
        return _refuse(ls, "no AI changes of this document are pending review")
    order = review.hunks[::-1] if a.backward else review.hunks
    after = [h for h in order if (h.start < a.line if a.backward else h.start > a.line)]
    hunk = (after or order)[0]
    where = reviewing.hunk_range(review.text, hunk, ls.workspace.position_encoding)
    window = ls.client_capabilities.window
    if window and window.show_document and window.show_document.support:
        start = types.Range(start=where.start, end=where.start)
        await ls.window_show_document_async(types.ShowDocumentParams(uri=a.uri, selection=start, take_focus=True))
    return {"hunk": hunk.id, "index": review.hunks.index(hunk) + 1, "range": msgspec.to_builtins(reviewing.plain_range(where))}


async def status(ls: Host, args: tuple[Any, ...]) -> dict[str, Any]:
    """Engine and job status, shown to the user and returned."""
    result: dict[str, Any] = {"engine": ls.config.engine, "jobs": [_job_info(j) for j in ls.jobs.running()]}
    try:
        client = await ls.engine.client(ls.config)
        reply = await client.status()
        result["daemon"] = msgspec.to_builtins(reply)
        engine = _engine_line(reply, client.manages)
    except UNREACHABLE as e:
        await ls.engine.drop()
        result["error"] = str(e)
        engine = f"engine not reachable: {e}"
    jobs = "; ".join(f"{j['uri']} ({j['tokens']} tokens)" for j in result["jobs"]) or "none"
    ls.tell(types.MessageType.Info, f"Blazedit: {engine}. Running edits: {jobs}.")
    return result


def _job_info(job: LspJob) -> dict[str, Any]:
    return {"jobId": job.id, "uri": job.uri, "instruction": job.instruction, "tokens": job.stats.tokens if job.stats else 0}


def _engine_line(reply: Any, manages: bool) -> str:
    if not manages:  # a server blazedit does not run: no pid, caches or clients to show
        return f"OpenAI-compatible server {reply.address}, model {reply.target.spec}; {len(reply.jobs)} job(s)"
    target = f"{reply.target.spec} ({reply.target.runtime}, {reply.target.device}, {reply.target.dtype})"
    draft = f", draft {reply.draft.spec}" if reply.draft else ""
    return (
        f"engine {reply.version} (pid {reply.pid}, up {reply.uptime_seconds:.0f} s): {target}{draft}; "
        f"{len(reply.jobs)} job(s) in the engine, {reply.clients} client(s), "
        f"prefix cache {reply.cache_entries} entries, {reply.cache_bytes >> 20} of {reply.cache_budget_bytes >> 20} MiB"
    )
