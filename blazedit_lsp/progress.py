"""An edit's progress in the editor: $/progress (work-done progress) reports,
throttled to the ``progressIntervalMs`` setting, or window/logMessage lines for
clients without work-done progress."""

from __future__ import annotations

import logging
from lsprotocol import types

from engine.client import protocol
from engine.client.throttle import Throttle

from .host import Host
from .jobs import LspJob

log = logging.getLogger(__name__)


def progress_message(stats: protocol.Stats, tokens_per_second: float) -> str:
    """e.g. "120 tokens, 35.2 tok/s, 87% accepted"."""
    parts = [f"{stats.tokens} tokens", f"{tokens_per_second:.1f} tok/s"]
    if stats.drafted:
        parts.append(f"{stats.accepted / stats.drafted:.0%} accepted")
    return ", ".join(parts)


def percentage(chars_out: int, chars_in: int) -> int:
    """Output length against input length; whole-file edits are about as long
    as their input. Capped at 99: 100 only comes with the end."""
    return min(99, chars_out * 100 // max(1, chars_in))


class LspProgress:
    """$/progress for one job, throttled; window/logMessage when the client
    has no work-done progress."""

    def __init__(self, ls: Host, job: LspJob, interval_ms: int):
        self._ls, self._job = ls, job
        self._throttle = Throttle(interval_ms / 1000)
        self._percent = 0
        self._lsp = False

    async def begin(self, title: str) -> None:
        if getattr(self._ls.client_capabilities.window, "work_done_progress", False):
            try:
                await self._ls.work_done_progress.create_async(self._job.token)
                self._lsp = True
            except Exception:  # boundary: a client may refuse; fall back to log messages
                log.warning("client refused progress token %s", self._job.token, exc_info=True)
        if self._lsp:
            begin = types.WorkDoneProgressBegin(title=title, cancellable=True, message="starting", percentage=0)
            self._ls.work_done_progress.begin(self._job.token, begin)
        else:
            self._log(f"{title}: started")

    def report(self, stats: protocol.Stats, chars: int, tokens_per_second: float) -> bool:
        """Send a report unless one went out less than the interval ago."""
        if not self._throttle.ready():
            return False
        self._percent = max(self._percent, percentage(chars, len(self._job.sent)))
        message = progress_message(stats, tokens_per_second)
        if self._lsp:
            report = types.WorkDoneProgressReport(message=message, percentage=self._percent, cancellable=True)
            self._ls.work_done_progress.report(self._job.token, report)
        else:
            self._log(f"{message} ({self._percent}%)")
        return True

    def message(self, text: str) -> None:
        """A report with a message only (queue position, prefill)."""
        if self._lsp:
            self._ls.work_done_progress.report(self._job.token, types.WorkDoneProgressReport(message=text))
        else:
            self._log(text)

    def end(self, summary: str) -> None:
        if self._lsp:
            self._ls.work_done_progress.end(self._job.token, types.WorkDoneProgressEnd(message=summary))
        else:
            self._log(summary)

    def _log(self, text: str) -> None:
        self._ls.window_log_message(types.LogMessageParams(type=types.MessageType.Info, message=f"Blazedit: {text}"))
