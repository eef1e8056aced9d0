"""Where two methods' outputs part, and how close the target's call was there.

Every method emits what the target chooses greedily, but a target pass over several
tokens can round differently from a one-token step (other kernels, other reduction
orders), and at a near-tie that flips the choice. This module measures the gap between
the two contested tokens' scores at the first divergence, once after a one-token step
and once inside a pass of several tokens, so a test can tell a near-tie (rounding)
from a wide-margin divergence (a bug).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from engine.decoding.cached_model import common_prefix_length
from engine.runtimes.base import Runtime

BATCHED_PASS_TOKENS = 16
"""Tokens in the multi-token pass the gap is measured in (a typical verification)."""


@dataclass(frozen=True)
class Divergence:
    index: int  # position in the reply where the outputs first differ
    ours: int  # the reference's (regular's) token there
    theirs: int  # the other method's token there
    gap_single: float  # score(ours) - score(theirs) after a one-token step
    gap_batched: float  # the same inside a BATCHED_PASS_TOKENS-token pass

    @property
    def gap(self) -> float:
        """The wider of the two gaps, in absolute value: how near the tie was at worst."""
        return max(abs(self.gap_single), abs(self.gap_batched))


def first_divergence(reference: Sequence[int], other: Sequence[int]) -> int | None:
    """The first position where the two differ (one ending early counts), or None."""
    n = common_prefix_length(reference, other)
    return None if n == len(reference) == len(other) else n


def measure(runtime: Runtime, prompt: Sequence[int], reference: Sequence[int],
            other: Sequence[int], end: int) -> Divergence | None:
    """The first divergence of ``other`` from ``reference`` (reply tokens after ``prompt``,
    each ended by the token ``end``, EOS, where it is shorter), with the target's score
    gaps there; None if they agree. Leaves ``runtime`` empty."""
    at = first_divergence(reference, other)
    if at is None:
        return None
    ours, theirs = (tokens[at] if at < len(tokens) else end for tokens in (reference, other))
    context = [*prompt, *reference[:at]]  # the token at ``at`` is chosen after these

    def gap(pass_tokens: int) -> float:
        runtime.truncate(0)
        head, tail = context[:-pass_tokens], context[-pass_tokens:]
        if head:
            runtime.forward(head, keep=1)
        scores = runtime.logits(tail, keep=1)[-1]
        return float(scores[ours] - scores[theirs])

    try:
        return Divergence(at, ours, theirs, gap(1), gap(BATCHED_PASS_TOKENS))
    finally:
        runtime.truncate(0)
