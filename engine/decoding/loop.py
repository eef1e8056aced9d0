"""The decoding loop all methods share: propose → verify → accept → stream → stop.

State: ``seq`` (prompt + accepted tokens) and the target's KV cache, which always
covers ``seq`` but its last token (see cached_model.verify). Stop conditions are
checked token by token in order, so every method stops at the same token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from engine.client.prompts import file_start
from engine.client.protocol import FinishReason, Stats
from engine.decoding.cached_model import CachedModel, Grid, verify
from engine.decoding.handover import Handover
from engine.decoding.strategies import Strategy

PREFILL_CHUNK_TOKENS = 512
"""The prefill grid's chunk. The default 1.5B bf16 target on a 2-core CPU prefills 1,536
tokens in 512-token chunks as fast as in one pass (256: up to 3% slower, 128: 4-9%;
docs/performance.md, "The prefill grid"); an edit that comes while another file is being
warmed waits for one chunk at most (~4 s there)."""


class Detokenizer:
    """Incremental detokenization that never emits half a UTF-8 character
    (the prefix/read offset scheme of vLLM and TGI)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.text = ""
        self._prefix = 0
        self._read = 0

    def add(self, token: int) -> str:
        self.tokens.append(token)
        decode = self.tokenizer.decode
        before = decode(self.tokens[self._prefix:self._read])
        after = decode(self.tokens[self._prefix:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        delta = after[len(before):]
        self._prefix, self._read = self._read, len(self.tokens)
        self.text += delta
        return delta

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        rest = self.tokenizer.decode(self.tokens[self._prefix:])[len(self.tokenizer.decode(self.tokens[self._prefix:self._read])):]
        self.text += rest
        return rest


@dataclass
class StopRule:
    eos: set[int]
    fence: str  # a line starting with it closes the code block: the file is complete ("": no fence)
    max_new_tokens: int
    strings: tuple[str, ...] = ()  # the reply ends where one of these appears (OpenAI's ``stop``)
    opens_fence: bool = False  # the reply opens the code block itself: the fence line after that one closes it


class Stopper:
    """Applies a StopRule token by token, so every method stops at the same token."""

    def __init__(self, rule: StopRule, detok: Detokenizer):
        self.rule, self.detok = rule, detok
        self.tokens: list[int] = []  # generated tokens taken so far (EOS is never taken)
        self.file_start = None if rule.opens_fence else 0  # where the code block's text begins in the reply

    def push(self, token: int) -> FinishReason | None:
        """Take one generated token; return why to stop after it, if it ends the output."""
        if token in self.rule.eos:
            return "stop"
        self.tokens.append(token)
        checked = len(self.detok.text)
        self.detok.add(token)
        if self.rule.fence and self._closes_file(checked):
            return "stop"
        if stop_string_at(self.detok.text, self.rule.strings, checked) is not None:
            return "stop"
        if len(self.tokens) >= self.rule.max_new_tokens:
            return "length"
        return None

    def _closes_file(self, checked: int) -> bool:
        if self.file_start is None:
            self.file_start = file_start(self.detok.text, self.rule.fence, checked)
            if self.file_start is None:
                return False
        return closes_file(self.detok.text, self.rule.fence, max(checked, self.file_start), self.file_start)


@dataclass
class DecodeStep:
    """Emitted after each target forward pass. Its stats count target passes; the
    caller, which owns the draft model, counts the draft's."""

    tokens: list[int]
    text: str  # reply text decoded from ``tokens``
    finish_reason: FinishReason | None = None  # set on the last step
    stats: Stats = field(default_factory=Stats)


def generate(
    target: CachedModel,
    strategy: Strategy,
    prompt: Sequence[int],
    detok: Detokenizer,
    stop: StopRule,
    should_stop: Callable[[], bool] = lambda: False,
    grid: Grid = Grid(PREFILL_CHUNK_TOKENS),
    handover: Handover | None = None,
) -> Iterator[DecodeStep]:
    """Decode after ``prompt``, prefilling it piece by piece on ``grid``
    (cached_model.py) up to the grid's last point before its final token; the first
    verification feeds the rest. ``handover``: a second target the decoding moves to
    once its passes say that pays (handover.py)."""
    stats = Stats(prompt_tokens=len(prompt))
    seq = list(prompt)
    stopper = Stopper(stop, detok)
    start = time.perf_counter()
    stats.cached_tokens = target.prefill(prompt, grid, should_stop)
    target_passes = target.forward_passes  # the prefill counts as one pass, its last
    while True:
        if should_stop():
            yield DecodeStep([], detok.flush(), "cancelled", _finish(stats, start))
            return
        budget = stop.max_new_tokens - stats.tokens - 1
        proposal = strategy.propose(seq, budget) if stats.target_forward_passes else []
        new = verify(target, seq, proposal)
        if not stats.target_forward_passes:
            stats.prefill_seconds = stats.first_token_seconds = time.perf_counter() - start
        stats.target_forward_passes = target.forward_passes - target_passes
        stats.drafted += len(proposal)
        stats.accepted += len(new) - 1
        strategy.observe(len(proposal), len(new) - 1)
        if handover:
            handover.observe(len(proposal), len(new) - 1)

        taken, shown = len(stopper.tokens), len(detok.text)
        reason = next((r for r in map(stopper.push, new) if r), None)
        emitted = stopper.tokens[taken:]
        seq += emitted
        stats.tokens = len(stopper.tokens)
        if reason:
            detok.flush()
            yield DecodeStep(emitted, detok.text[shown:], reason, _finish(stats, start))
            return
        if handover and handover.due(seq, stats.tokens):
            if second := handover.take(prompt, grid, should_stop):
                target = second
                target_passes = target.forward_passes - stats.target_forward_passes
                strategy.retarget(handover.second.cost)
                stats.handover_tokens = stats.tokens
            handover = None
        stats.seconds = time.perf_counter() - start
        yield DecodeStep(emitted, detok.text[shown:], None, stats)


def closes_file(reply: str, fence: str, checked: int = 0, start: int = 0) -> bool:
    """Whether the reply has reached a line that starts with the closing fence,
    looking only at what is new since ``checked`` and after the file's ``start``: the
    one stop rule on the fence, which the benchmark also gives transformers' generate()."""
    return reply.startswith(fence, start) or reply.find("\n" + fence, max(checked - len(fence), start)) >= 0


def stop_string_at(reply: str, strings: Sequence[str], checked: int = 0) -> int | None:
    """Where the first of ``strings`` starts in ``reply``, looking only at what is new
    since ``checked``; None when none appears."""
    found = [i for s in strings if (i := reply.find(s, max(checked - len(s) + 1, 0))) >= 0]
    return min(found, default=None)


def _finish(stats: Stats, start: float) -> Stats:
    stats.seconds = time.perf_counter() - start
    return stats
