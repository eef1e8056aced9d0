"""One AI edit: stream it from the engine, check it, rebase it on what the user
typed meanwhile, and apply it as one versioned workspace/applyEdit. The LSP I/O;
what to make of a result is blazedit_lsp/edit_policy.py's.

The server never writes files; it only asks the editor to apply edits.
"""

from __future__ import annotations

import asyncio
import logging

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from engine.client import protocol
from engine.client.backend import EngineBackend
from engine.client.errors import JobError
from engine.client.guard import UNCHANGED, Removal, keep_removed, language_of, removed_definitions
from engine.client.merge import describe

from .edit_policy import (APPLY, CANCEL, DISCARD, describe_engine_error, keep_title, needs_confirmation,
                          new_attempt_message, rebased)
from .edits import RebaseConflict, rebase, settled, text_edits
from .engine_link import UNREACHABLE
from .host import Host
from .jobs import LspJob
from .progress import LspProgress

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 30.0
"""After asking the engine to cancel, how long to wait for the job's end
before dropping the stream (the engine answers within one forward pass)."""
APPLY_ATTEMPTS = 3
"""Rebase-and-apply tries when the user keeps typing while the edit lands."""


async def run(ls: Host, job: LspJob) -> None:
    """The whole job, ending its progress whatever happens (a task boundary)."""
    progress = LspProgress(ls, job, ls.config.progress_interval_ms)
    state, summary = "failed", "failed"
    try:
        title = job.instruction if len(job.instruction) <= 60 else job.instruction[:59] + "…"
        await progress.begin(f"Blazedit: {title}")
        done = await _generate(ls, job, progress)
        if done is None:
            state, summary = "cancelled", f"cancelled ({job.cancel_reason or 'by the engine'})"
        else:
            state, summary = await _deliver(ls, job, done)
        if state != "applied" and job.hunks_applied:
            summary += f"; the {job.hunks_applied} hunk(s) applied while streaming stay (blazedit.undo reverts them)"
            ls.tell(types.MessageType.Warning, f"Blazedit: {summary}")
    except UNREACHABLE as e:
        await ls.engine.drop()
        summary = f"engine not reachable: {e}"
        ls.tell(types.MessageType.Error, summary)
    except JobError as e:
        summary = describe_engine_error(e.code, e.message)
        ls.tell(types.MessageType.Error, summary)
    except asyncio.CancelledError:
        state, summary = "cancelled", "cancelled (server shutting down)"
        raise
    except Exception as e:  # boundary: a bug must end this job, not the server
        log.exception("job %s failed", job.id)
        summary = f"internal error: {e!r} (see the server log)"
        ls.tell(types.MessageType.Error, summary)
    finally:
        ls.jobs.remove(job)
        job.finish(state, summary)  # the command's answer goes out after the end below
        log.info("job %s %s: %s", job.id, state, summary)
        progress.end(summary)


async def _generate(ls: Host, job: LspJob, progress: LspProgress) -> protocol.Done | None:
    """The engine's Done, or None when the job was cancelled. Settled hunks are
    applied meanwhile (applyWhileStreaming)."""
    if not ls.engine.connected:
        progress.message("connecting to the engine (the first edit may start it and load the model)")
    client = await ls.engine.client(ls.config)
    if job.cancelled.is_set():
        return None
    doc = ls.open_document(job.uri)
    request = protocol.Edit(
        job_id=job.id,
        text=job.sent,
        instruction=job.instruction,
        path=(doc.path if doc else "") or "",
        language=doc.language_id if doc else None,
        document=job.uri,
        method=ls.config.method,
        options=ls.config.decoding_options(),
        region=job.region,
        retry_unchanged=ls.config.retry_unchanged,
    )
    live = LiveApply(ls, job, progress) if ls.config.apply_while_streaming and ls.review.mode() != "preview" else None
    stream = asyncio.ensure_future(_consume(client, request, job, progress, live))
    cancelled = asyncio.ensure_future(job.cancelled.wait())
    try:
        await asyncio.wait({stream, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        if not stream.done():
            await _cancel_engine_job(client, job, stream)
            return None
        done = stream.result()
        return None if job.cancelled.is_set() or done.finish_reason == "cancelled" else done
    finally:
        cancelled.cancel()
        if not stream.done():
            stream.cancel()
        if live is not None:
            await live.close()


class LiveApply:
    """Applies the hunks the output has settled (edits.settled) while the engine
    streams, one workspace/applyEdit at a time. It stops for good at a hunk that
    removes a definition or collides with the user's typing: the end of the job
    then asks or refuses as for a whole edit."""

    def __init__(self, ls: Host, job: LspJob, progress: LspProgress):
        self.ls, self.job, self.progress = ls, job, progress
        self.changed = asyncio.Event()
        self.stopped: str | None = None
        self.task = asyncio.ensure_future(self._run())

    def feed(self, text: str) -> None:
        self.job.streamed += text
        if "\n" in text:
            self.changed.set()

    async def close(self) -> None:
        """Stop after the apply in flight, if any (its outcome is recorded)."""
        self.stopped = self.stopped or "the stream ended"
        self.changed.set()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        while self.stopped is None:
            await self.changed.wait()
            self.changed.clear()
            if self.stopped is None:
                try:
                    await self._apply_settled()
                except EditorSilent as e:
                    self.stopped = str(e)
                    log.warning("job %s: streaming apply stops: %s", self.job.id, e)
                except Exception:  # boundary: a failed early apply leaves the end to apply it all
                    log.exception("job %s: applying settled hunks failed", self.job.id)
                    self.stopped = "an error (see the log)"

    async def _apply_settled(self) -> None:
        job = self.job
        text, hunks = settled(job.sent, job.partial())
        if not hunks or text == job.ours:
            return
        doc = self.ls.open_document(job.uri)
        if doc is None or job.cancelled.is_set():
            return
        language = language_of(doc.language_id, doc.path)
        if removed_definitions(job.sent, text, job.instruction, language):
            self.stopped = "a hunk removes a definition"
            log.info("job %s: streaming apply stops: %s", job.id, self.stopped)
            return
        async with self.ls.review.applying(job.uri):
            current, version = doc.source, doc.version
            try:
                merged = rebase(job.ours, text, current)
            except RebaseConflict:
                self.stopped = "the user edited the same lines"
                log.info("job %s: streaming apply stops: %s", job.id, self.stopped)
                return
            edits = text_edits(current, merged, self.ls.workspace.position_encoding)
            if edits and not (await send_edits(self.ls, job.uri, version, edits, f"Blazedit: {job.instruction}")).applied:
                return  # the user typed meanwhile: the next output tries again
            if edits:
                self.ls.review.landed(job.uri, job.id, job.instruction, current, merged, version)
        job.ours, job.hunks_applied = text, hunks
        self.ls.jobs.record_applied(job)
        self.progress.message(f"{hunks} hunk{'s' if hunks != 1 else ''} applied")


async def _cancel_engine_job(client: EngineBackend, job: LspJob, stream: asyncio.Future) -> None:
    """Ask the engine to stop the job and wait (bounded) for its end."""
    try:
        await client.cancel(job.id)
    except Exception:  # boundary: a dead engine has stopped the job anyway
        log.warning("could not cancel engine job %s", job.id, exc_info=True)
    try:
        await asyncio.wait_for(asyncio.shield(stream), CANCEL_GRACE_S)
    except asyncio.TimeoutError:
        log.warning("engine job %s did not end within %s s of its cancel", job.id, CANCEL_GRACE_S)
    except Exception:  # boundary: the stream's own error no longer matters
        log.debug("engine job %s ended with an error after its cancel", job.id, exc_info=True)


async def _consume(client: EngineBackend, request: protocol.Edit, job: LspJob, progress: LspProgress,
                   live: LiveApply | None) -> protocol.Done:
    streamed = ""  # this attempt's text: a prefix of the file while the model copies it unchanged
    async for msg in client.edit(request):
        if isinstance(msg, protocol.Queued):
            progress.message(f"queued ({msg.position} ahead)")
        elif isinstance(msg, protocol.Started):
            cached = f", {msg.cached_tokens} cached" if msg.cached_tokens else ""
            # (a remote server tells the prompt's size only at the end, if at all)
            progress.message(f"generating ({msg.prompt_tokens} prompt tokens{cached})" if msg.prompt_tokens
                             else "generating")
        elif isinstance(msg, protocol.Progress):
            job.stats = msg.stats
            if msg.attempt != job.attempt:  # the engine asks again: the file streams anew
                job.attempt, job.streamed = msg.attempt, ""
                progress.message(new_attempt_message(job.sent, streamed))
                streamed = ""
                continue
            streamed += msg.text
            if live is not None:
                live.feed(msg.text)
            progress.report(msg.stats, msg.chars, msg.tokens_per_second)
        elif isinstance(msg, protocol.Done):
            job.stats = msg.stats
            return msg
        elif isinstance(msg, protocol.Error):
            raise JobError(msg.code, msg.message)
    raise JobError("internal", "the engine ended the job without a result")


async def _deliver(ls: Host, job: LspJob, done: protocol.Done) -> tuple[str, str]:
    result = job.output(done.text)  # in the file's line endings: the engine restores them (engine/client/prompts.py)
    if result == job.sent and not job.hunks_applied:
        ls.tell(types.MessageType.Info, f"Blazedit: {UNCHANGED}")
        return "unchanged", "no changes"
    if done.partial is not None:
        ls.tell(types.MessageType.Info, f"Blazedit: {describe(done.partial)}")
    if (reason := needs_confirmation(job.sent, result, done.finish_reason, job.instruction)) is not None:
        if not await _confirm(ls, job, reason):
            return ("cancelled", "cancelled") if job.cancelled.is_set() else ("refused", f"not applied: {reason}")
    doc = ls.open_document(job.uri)
    language = language_of(doc.language_id, doc.path) if doc else None
    removals = removed_definitions(job.sent, result, job.instruction, language)
    if removals and (result := await _settle_removals(ls, job, result, removals)) is None:
        what = ", ".join(map(str, removals))
        return ("cancelled", "cancelled") if job.cancelled.is_set() else ("refused", f"not applied: it removes {what}")
    return await _apply(ls, job, result)


async def _settle_removals(ls: Host, job: LspJob, result: str, removals: list[Removal]) -> str | None:
    """The guardRemovals policy: the text to apply (the result as it is, or
    with the removed definitions kept), or None to apply nothing."""
    policy = ls.config.guard_removals
    if policy == "allow":
        return result
    what = ", ".join(map(str, removals))
    kept = keep_removed(job.sent, result, removals)
    if policy == "keep":
        ls.tell(types.MessageType.Info, f"Blazedit: kept {what}, which the edit removed")
        return kept
    keep = keep_title(removals)
    window = ls.client_capabilities.window
    if window is None or window.show_message is None:
        ls.tell(types.MessageType.Warning, f"Blazedit: the edit removes {what}; kept (this editor cannot ask: "
                                           "set guardRemovals to \"allow\" to apply such edits as they are)")
        return kept
    try:
        choice = await _ask(ls, job, f"Blazedit: the edit removes {what}.", [APPLY, keep, CANCEL])
    except Exception:  # boundary: a failed question gets the safe answer
        log.warning("removal question failed", exc_info=True)
        ls.tell(types.MessageType.Warning, f"Blazedit: the edit removes {what}; kept (the editor did not answer)")
        return kept
    return {APPLY: result, keep: kept}.get(choice)


async def _confirm(ls: Host, job: LspJob, reason: str) -> bool:
    """Whether the user says Apply to a result a guard stopped."""
    try:
        return await _ask(ls, job, f"Blazedit: {reason}. Apply the edit anyway?", [APPLY, DISCARD]) == APPLY
    except Exception:  # boundary: a client without showMessageRequest means no
        log.warning("confirmation request failed", exc_info=True)
        return False


async def _ask(ls: Host, job: LspJob, message: str, titles: list[str]) -> str | None:
    """The action the user picks (window/showMessageRequest); None when the
    question is dismissed or the job cancelled meanwhile. Raises when the
    request fails."""
    params = types.ShowMessageRequestParams(
        type=types.MessageType.Warning, message=message, actions=[types.MessageActionItem(title=t) for t in titles])
    ask = asyncio.ensure_future(ls.window_show_message_request_async(params))
    cancelled = asyncio.ensure_future(job.cancelled.wait())
    try:
        await asyncio.wait({ask, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        if not ask.done() or job.cancelled.is_set():
            return None
        item = ask.result()
    finally:
        cancelled.cancel()
        ask.cancel()
    return item.title if item is not None else None


async def _apply(ls: Host, job: LspJob, result: str) -> tuple[str, str]:
    """Rebase on the current text (from what the AI last applied, ``job.ours``),
    send one versioned edit, retry if the user typed while the client was applying it."""
    for _ in range(APPLY_ATTEMPTS):
        async with ls.review.applying(job.uri):
            outcome = await _apply_once(ls, job, result)
        if outcome is not None:
            return outcome
        log.info("job %s: document changed while applying, rebasing again", job.id)
    return "refused", "not applied: the document kept changing"


async def _apply_once(ls: Host, job: LspJob, result: str) -> tuple[str, str] | None:
    """One try of ``_apply``, holding the document's review lock; None: the user typed
    while the editor was applying it, so try again."""
    doc = ls.open_document(job.uri)
    if job.cancelled.is_set() or doc is None:
        return "cancelled", f"cancelled ({job.cancel_reason or 'the document was closed'})"
    current, version = doc.source, doc.version
    try:
        merged = rebased(job.ours, result, current)
    except RebaseConflict as e:
        message = f"not applied: you changed the lines it edits meanwhile ({e}); run it again"
        ls.tell(types.MessageType.Warning, f"Blazedit: {message}")
        return "refused", message
    edits = text_edits(current, merged, ls.workspace.position_encoding)
    if not edits:
        return ("applied", f"{job.hunks_applied} hunk(s) applied while streaming") if job.hunks_applied \
            else ("unchanged", "no changes")
    try:
        preview = ls.review.preview_edit(job.uri, version, current, merged, job.instruction)
        response = await send_edits(ls, job.uri, version, edits, f"Blazedit: {job.instruction}", preview)
    except (JsonRpcException, EditorSilent) as e:  # boundary: the client answered with an error, or not at all
        ls.tell(types.MessageType.Error, f"Blazedit: the editor did not apply the edit: {e}")
        return "failed", f"the editor did not apply the edit: {e}"
    if response.applied:
        job.ours = result
        ls.jobs.record_applied(job)
        ls.review.landed(job.uri, job.id, job.instruction, current, merged, version)
        early = f", after {job.hunks_applied} hunk(s) while streaming" if job.hunks_applied else ""
        if preview is not None:  # what the user picked in the preview is not reported back
            return "applied", f"{len(preview.change_annotations or {})} AI change(s) offered in the editor's preview"
        return "applied", f"{len(edits)} edit{'s' if len(edits) != 1 else ''} applied{early}"
    after = ls.open_document(job.uri)
    if after is None or after.version == version:
        if preview is not None and not response.failure_reason:
            ls.tell(types.MessageType.Info, "Blazedit: nothing applied (discarded in the editor's preview)")
            return "refused", "not applied: discarded in the editor's preview"
        reason = response.failure_reason or "no reason given"
        ls.tell(types.MessageType.Error, f"Blazedit: the editor did not apply the edit: {reason}")
        return "failed", f"the editor did not apply the edit: {reason}"
    return None


class EditorSilent(Exception):
    """The editor did not answer a workspace/applyEdit in time (applyTimeoutMs)."""


async def send_edits(ls: Host, uri: str, version: int | None, edits: list[types.TextEdit], label: str,
                     edit: types.WorkspaceEdit | None = None):
    """One workspace/applyEdit of ``edits`` to the document at ``version`` (or of ``edit``, the
    same change made otherwise: reviewing.annotated_edit); the client's answer."""
    params = types.ApplyWorkspaceEditParams(edit=edit or _workspace_edit(ls, uri, version, edits), label=label)
    timeout = ls.config.apply_timeout_ms / 1000
    try:
        return await asyncio.wait_for(ls.workspace_apply_edit_async(params), timeout)
    except asyncio.TimeoutError:
        raise EditorSilent(f"the editor did not answer workspace/applyEdit within {timeout:g} s "
                           "(setting applyTimeoutMs); check the buffer: the edit may still land") from None


def _workspace_edit(ls: Host, uri: str, version: int | None, edits: list[types.TextEdit]) -> types.WorkspaceEdit:
    """A versioned TextDocumentEdit, or plain `changes` for clients without
    documentChanges (checked against the version just before sending)."""
    caps = ls.client_capabilities.workspace
    if caps and caps.workspace_edit and caps.workspace_edit.document_changes:
        document = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=document, edits=edits)])
    return types.WorkspaceEdit(changes={uri: edits})
