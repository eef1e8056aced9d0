"""The workspace/executeCommand commands: blazedit.editFile, .cancel, .status.

Arguments are one JSON object each (docs/contracts.md), validated with msgspec
so a wrong field name is reported, not ignored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from . import actions, editing
from .engine_link import UNREACHABLE
from .host import Host
from .jobs import LspJob

log = logging.getLogger(__name__)


class EditFileArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    uri: str
    version: int | None = None
    """The version the action was offered for; a changed document is refused."""
    instruction: str | None = None


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
    a = _parse(ls, actions.EDIT_FILE, args, EditFileArgs, "{uri, version?, instruction?}")
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
    job = LspJob(uri=doc.uri, base=doc.source, sent=resolved.text, instruction=resolved.instruction)
    ls.jobs.add(job)
    log.info("job %s: %s %r (instruction from %s)", job.id, doc.uri, job.instruction, resolved.source)
    job.task = asyncio.create_task(editing.run(ls, job))
    await _wait(job, ls.config.command_timeout_ms / 1000)
    return {"jobId": job.id, "state": job.state, "summary": job.summary}


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


async def status(ls: Host, args: tuple[Any, ...]) -> dict[str, Any]:
    """Engine and job status, shown to the user and returned."""
    result: dict[str, Any] = {"engine": ls.config.engine, "jobs": [_job_info(j) for j in ls.jobs.running()]}
    try:
        client = await ls.engine.client(ls.config)
        reply = await client.status()
        result["daemon"] = msgspec.to_builtins(reply)
        engine = _engine_line(reply)
    except UNREACHABLE as e:
        await ls.engine.drop()
        result["error"] = str(e)
        engine = f"engine not reachable: {e}"
    jobs = "; ".join(f"{j['uri']} ({j['tokens']} tokens)" for j in result["jobs"]) or "none"
    ls.tell(types.MessageType.Info, f"Blazedit: {engine}. Running edits: {jobs}.")
    return result


def _job_info(job: LspJob) -> dict[str, Any]:
    return {"jobId": job.id, "uri": job.uri, "instruction": job.instruction, "tokens": job.stats.tokens if job.stats else 0}


def _engine_line(reply: Any) -> str:
    if reply.target.runtime == "openai":  # engine/remote.py: a server blazedit does not run
        return f"OpenAI-compatible server {reply.address}, model {reply.target.spec}; {len(reply.jobs)} job(s)"
    target = f"{reply.target.spec} ({reply.target.runtime}, {reply.target.device}, {reply.target.dtype})"
    draft = f", draft {reply.draft.spec}" if reply.draft else ""
    return (
        f"engine {reply.version} (pid {reply.pid}, up {reply.uptime_seconds:.0f} s): {target}{draft}; "
        f"{len(reply.jobs)} job(s) in the engine, {reply.clients} client(s), "
        f"prefix cache {reply.cache_entries} entries, {reply.cache_bytes >> 20} of {reply.cache_budget_bytes >> 20} MiB"
    )
