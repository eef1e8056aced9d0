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
moves, once. A copy-heavy edit, whose long passes are cheaper here, never does. Both
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


class Handover:
    def __init__(self, model: CachedModel, cost: ForwardCost, prefill_per_token: float, here: ForwardCost,
                 expected_tokens: int | None = None):
        """``model``: the second target, ``cost`` its passes, ``prefill_per_token`` its
        prompt reading; ``here``: the passes of the target the edit starts on;
        ``expected_tokens``: about how long the reply will be (an edit's file), if known."""
        self.model, self.cost, self.prefill_per_token, self.here = model, cost, prefill_per_token, here
        self.expected_tokens = expected_tokens
        self.excess = 0.0  # seconds the passes so far took beyond what their tokens would have taken there

    def observe(self, proposed: int, accepted: int) -> None:
        """A verification pass of ``proposed`` tokens, of which ``accepted`` were taken,
        ran on the target the edit is on."""
        there = min(self.cost(1 + proposed), (accepted + 1) * self.cost(1))
        self.excess += self.here(1 + proposed) - there

    def due(self, seq: Sequence[int], written: int) -> bool:
        """Whether, after ``written`` tokens of the reply, the move pays."""
        return written >= MIN_TOKENS and self.excess > 0 and self.pressure(seq, written) >= 1

    def pressure(self, seq: Sequence[int], written: int) -> float:
        """The excess forecast for the passes ahead, after ``written`` tokens of the reply,
        over what the second target's read of ``seq`` costs."""
        ahead = LOOKAHEAD * written
        if self.expected_tokens is not None:
            ahead = min(ahead, max(self.expected_tokens - written, 0))
        held = common_prefix_length(self.model.tokens[:self.model.settled], seq)
        return self.excess / max(written, 1) * ahead / max((len(seq) - held) * self.prefill_per_token, 1e-9)

    def take(self, prompt: Sequence[int], grid: Grid, should_stop: Callable[[], bool]) -> CachedModel:
        """The second target with ``prompt`` fed on ``grid``, as a cold prefill feeds it
        (the next verification feeds the reply so far): the edit goes on there."""
        self.model.prefill(prompt, grid, should_stop)
        return self.model
