"""Moving an edit to a second target midway, when its passes so far say that target is faster.

Which runtime is fastest depends on the edit as well as the machine (calibration.py): on
a CPU with AVX-512 BF16 a bf16 torch pass over 128 tokens costs ~6x one token, so torch
wins copy-heavy edits (long lookup passes), while llama.cpp's Q4 passes cost ~5x less for
one token and win edits that write more than they copy (short passes). Nothing before
the prefill tells the two apart; the passes do, after a few dozen tokens.

So an edit starts on the target ``auto`` chose, and every pass adds to an excess what it
cost there less what its tokens would have cost on the second target: the same pass, or,
where that is less, one-token steps for the tokens it gave (llama.cpp's passes cost about
as many steps, so a long lookup that runs into an edit would not have been worth making
there). Both from the calibration, never live timings: the move comes at the same token run
after run. The passes ahead are forecast to run up excess at the same rate per token, for
twice as many tokens as so far (at most to the expected end); once that forecast reaches
what the move costs (the second target's read of the prompt and the reply so far), the edit
moves, once. A copy-heavy edit, whose long passes are cheaper here, never does, so the
second target is loaded at the first move (its load, a few seconds, is not in the rule). Both
targets are the same weights, so the output is the first target's greedy output up to
near-ties (docs/performance.md, "The second target").
"""

from __future__ import annotations

from typing import Callable, Sequence

from engine.decoding.cached_model import CachedModel, Grid, common_prefix_length
from engine.decoding.cost import ForwardCost

LOOKAHEAD = 2
"""The passes ahead are forecast for this many times the tokens written so far. Replayed on
the traces of the benchmark's 14 edits (docs/performance.md, "The second target"): with 2, no
copy-heavy edit's forecast came above a quarter of its move's cost, and the writing-heavy
ones moved after 32 and 121 tokens; with 1, after 32 and 191."""
MIN_TOKENS = 32  # the least evidence for a move: a few passes say little about the rest


class SecondTarget:
    """The target's weights on the second setting, loaded when an edit first moves there:
    most edits never do, so neither the start-up nor the memory goes to it before."""

    def __init__(self, load: Callable[[], CachedModel | None], cost: ForwardCost, prefill_per_token: float):
        """``load``: the second target's model with a cache of its own, or None where it
        cannot be loaded (too little memory; it says why), after which no edit moves;
        ``cost`` its passes, ``prefill_per_token`` its prompt reading (both calibrated)."""
        self._load, self.cost, self.prefill_per_token = load, cost, prefill_per_token
        self.model: CachedModel | None = None
        self.unavailable = False

    def held(self, seq: Sequence[int]) -> int:
        """How many leading tokens of ``seq`` its cache holds, settled (0 before it is loaded)."""
        return common_prefix_length(self.model.tokens[:self.model.settled], seq) if self.model else 0

    def open(self) -> CachedModel | None:
        """The loaded model, loading it the first time it is asked for; None if it cannot be."""
        if self.model is None and not self.unavailable:
            self.model = self._load()
            self.unavailable = self.model is None
        return self.model


class Handover:
    def __init__(self, second: SecondTarget, here: ForwardCost, expected_tokens: int | None = None):
        """``here``: the passes of the target the edit starts on; ``expected_tokens``:
        about how long the reply will be (an edit's file), if known."""
        self.second, self.here, self.expected_tokens = second, here, expected_tokens
        self.excess = 0.0  # seconds the passes so far took beyond what their tokens would have taken there

    def observe(self, proposed: int, accepted: int) -> None:
        """A verification pass of ``proposed`` tokens, of which ``accepted`` were taken,
        ran on the target the edit is on."""
        there = min(self.second.cost(1 + proposed), (accepted + 1) * self.second.cost(1))
        self.excess += self.here(1 + proposed) - there

    def due(self, seq: Sequence[int], written: int) -> bool:
        """Whether, after ``written`` tokens of the reply, the move pays."""
        return (written >= MIN_TOKENS and self.excess > 0 and not self.second.unavailable
                and self.pressure(seq, written) >= 1)

    def pressure(self, seq: Sequence[int], written: int) -> float:
        """The excess forecast for the passes ahead, after ``written`` tokens of the reply,
        over what the second target's read of ``seq`` costs."""
        ahead = LOOKAHEAD * written
        if self.expected_tokens is not None:
            ahead = min(ahead, max(self.expected_tokens - written, 0))
        unread = (len(seq) - self.second.held(seq)) * self.second.prefill_per_token
        return self.excess / max(written, 1) * ahead / max(unread, 1e-9)

    def take(self, prompt: Sequence[int], grid: Grid, should_stop: Callable[[], bool]) -> CachedModel | None:
        """The second target (loaded now, the first time) with ``prompt`` fed on ``grid``,
        as a cold prefill feeds it (the next verification feeds the reply so far): the edit
        goes on there. None where it cannot be loaded: the edit stays."""
        model = self.second.open()
        if model is not None:
            model.prefill(prompt, grid, should_stop)
        return model
