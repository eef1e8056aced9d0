"""The attempts of one edit, for every backend: which prompts to send, how to read the
replies, and the Started/Progress/Done messages a job streams. No torch here.

A backend supplies only a stream of reply text for a prompt's messages (the local
engine decodes it, engine/local_engine.py; a remote server streams it,
engine/client/remote.py). ``EditAttempts`` decides what to ask: the edit's prompt,
then once more, plan first, when a whole file comes back unchanged
(``prompts.ask_again``), and an apply pass when a reply that is part of the file
cannot be merged into it (engine/client/merge.py). ``JobStream`` shapes what a
backend reads into the job's messages, the same on both sides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Generator, Literal, Protocol

from engine.client import merge, protocol
from engine.client.errors import JobError
from engine.client.prompts import EditPrompt, ask_again, build, region_problem
from engine.client.throttle import Throttle

log = logging.getLogger(__name__)

AttemptKind = Literal["first", "plan_first", "apply_pass"]


@dataclass(frozen=True)
class Attempt:
    prompt: EditPrompt
    number: int  # 1, 2, 3: a new attempt streams the file again from its start
    kind: AttemptKind


class Outcome(Protocol):
    """How an attempt ended: the local engine's Result, or a remote job's Reply."""

    text: str
    finish_reason: protocol.FinishReason
    stats: protocol.Stats
    attempt: int
    partial: protocol.Partial | None


@dataclass
class Reply:
    """An attempt's outcome where the backend has nothing more to say than this."""

    text: str
    finish_reason: protocol.FinishReason
    stats: protocol.Stats
    attempt: int = 1
    partial: protocol.Partial | None = None


class EditAttempts:
    """The attempts of one edit: ``first``, then ``next(outcome)`` after each (None: the
    backend could not run it, e.g. no room in its context) until it returns None;
    ``final`` is then the edit's outcome. Raises JobError for a region it cannot edit."""

    def __init__(self, text: str, instruction: str, path: str = "", language: str | None = None,
                 span: tuple[int, int] | None = None, retry_unchanged: bool = True):
        if span and (why := region_problem(text, *span)):
            raise JobError("bad_request", why)
        self._plan = _plan(text, instruction, path, language, span, retry_unchanged)
        self.first: Attempt = next(self._plan)
        self.final: Outcome | None = None

    @classmethod
    def of(cls, edit: protocol.Edit) -> "EditAttempts":
        span = (edit.region.start, edit.region.end) if edit.region else None
        return cls(edit.text, edit.instruction, edit.path, edit.language, span, edit.retry_unchanged)

    def next(self, outcome: Outcome | None) -> Attempt | None:
        try:
            return self._plan.send(outcome)
        except StopIteration as stop:
            self.final = stop.value
            return None


def _plan(text: str, instruction: str, path: str, language: str | None, span: tuple[int, int] | None,
          retry_unchanged: bool) -> Generator[Attempt, Outcome | None, Outcome]:
    """The retry policy, in order; sent each attempt's outcome. A reply that is part of
    the file is merged into it first: a merged copy of parts is a no-op too."""
    outcome = yield Attempt(build(text, instruction, path, language, span), 1, "first")
    sketch = _merged(outcome, text, instruction, span, language or path)
    if retry_unchanged and ask_again(text, instruction, span, outcome.finish_reason, outcome.text):
        log.info("the reply was the file unchanged: asking again, plan first")
        outcome = (yield Attempt(build(text, instruction, path, language, plan_first=True), 2, "plan_first")) \
            or outcome
        sketch = _merged(outcome, text, instruction, span, language or path)
    if sketch is not None and sketch.text is None and retry_unchanged:
        log.info("the reply was part of the file: asking for the whole file with it applied")
        applied = yield Attempt(build(text, instruction, path, language, sketch=outcome.text), outcome.attempt + 1,
                                "apply_pass")
        if applied is not None:
            outcome, applied.partial = applied, protocol.Partial(how="apply_pass")
    return outcome


def _merged(outcome: Outcome, text: str, instruction: str, span: tuple[int, int] | None,
            language: str | None) -> merge.Sketch | None:
    """Merge a reply that is part of the file into ``outcome``; the sketch, whose ``text``
    is None where only an apply pass can write the file."""
    sketch = merge.partial_edit(text, instruction, span, outcome.finish_reason, outcome.text, language)
    if sketch is not None and sketch.text is not None:
        outcome.text, outcome.partial = sketch.text, protocol.Partial(how="merged", items=sketch.items)
    return sketch


def tokens_per_second(stats: protocol.Stats) -> float:
    """The decoding rate: tokens over the time since the first one (prefill excluded)."""
    decoding = stats.seconds - stats.prefill_seconds
    return stats.tokens / decoding if decoding > 0 else 0.0


class JobStream:
    """A job's Started (once), then Progress at most once per ``interval``
    (engine/client/throttle.py) with the file text settled since the last; a new attempt
    says so at once with an empty Progress. ``rate_alone``: report the rate even while no
    file text settles, for a backend whose model opens the fence itself (a remote server:
    a sentence or a plan may come first), so the user sees tokens come."""

    def __init__(self, job_id: str, post: Callable[[protocol.Message], None], interval: float,
                 queue_position: int = 0, rate_alone: bool = False):
        self.job_id, self.post, self.throttle = job_id, post, Throttle(interval)
        self.queue_position, self.rate_alone = queue_position, rate_alone
        self.started = False
        self.pending: list[str] = []
        self.stats: protocol.Stats | None = None
        self.chars = 0  # file text streamed so far, by this attempt
        self.attempt = 1

    def step(self, text: str, chars: int, stats: protocol.Stats, attempt: int = 1) -> None:
        """``text``: the file text new since the last step; ``chars``: all of this attempt's so far."""
        if attempt != self.attempt:  # what was streamed is void: say so at once
            self.flush()
            self.attempt, self.stats, self.chars = attempt, stats, 0
            self.post(protocol.Progress(job_id=self.job_id, text="", chars=0, tokens_per_second=0.0,
                                        stats=stats, attempt=attempt))
        if not self.started:
            self.started = True
            self.post(protocol.Started(job_id=self.job_id, queue_position=self.queue_position,
                                       prompt_tokens=stats.prompt_tokens, cached_tokens=stats.cached_tokens))
        if text:
            self.pending.append(text)
        self.stats, self.chars = stats, chars
        if (self.pending or self.rate_alone) and self.throttle.ready():
            self._report()

    def flush(self) -> None:
        """Report the file text not reported yet, if any."""
        if self.pending and self.stats is not None:
            self._report()

    def _report(self) -> None:
        text = "".join(self.pending)
        self.pending.clear()
        self.post(protocol.Progress(job_id=self.job_id, text=text, chars=self.chars,
                                    tokens_per_second=tokens_per_second(self.stats), stats=self.stats,
                                    attempt=self.attempt))

    def done(self, outcome: Outcome) -> protocol.Done:
        """The job's Done, after what is pending."""
        self.flush()
        return protocol.Done(job_id=self.job_id, text=outcome.text, finish_reason=outcome.finish_reason,
                             stats=outcome.stats, attempt=outcome.attempt,
                             partial=outcome.partial)
