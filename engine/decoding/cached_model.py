"""A runtime plus the tokens its KV cache holds, and the one verify step.

``verify`` is the whole of speculative decoding's acceptance rule, used at both
layers of Blazedit: the target verifies the draft model's proposal, and the draft
model verifies prompt lookup's proposal.
"""

from __future__ import annotations

import time
from typing import Sequence

from engine.decoding.cost import ForwardCost
from engine.runtimes.base import Runtime


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix, by binary search over C-speed slice compares."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi - 1:  # invariant: a[:lo] == b[:lo], a[:hi] != b[:hi]
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class CachedModel:
    def __init__(self, runtime: Runtime, learns: ForwardCost | None = None):
        """``learns``: a cost model that the timings of this model's passes refine (only
        where a pass's timing cannot change the output: batch-invariant kernels)."""
        self.runtime = runtime
        self.learns = learns
        self.tokens: list[int] = []  # what the KV cache holds, position by position
        self.forward_passes = 0

    def sync(self, seq: Sequence[int]) -> None:
        """Crop the cache to what it shares with ``seq``, leaving at least seq's last token to feed."""
        self.crop(min(common_prefix_length(self.tokens, seq), len(seq) - 1))

    def crop(self, keep: int) -> None:
        """Drop cached positions from ``keep`` on."""
        if keep < len(self.tokens):
            self.runtime.truncate(keep)
            del self.tokens[keep:]

    def reset(self) -> None:
        """Empty the KV cache."""
        self.runtime.truncate(0)
        self.tokens.clear()

    def feed(self, tokens: Sequence[int]) -> None:
        """Append ``tokens`` to the cache in one forward pass whose choices are not needed
        (a chunk of a prefill ahead of any edit: prompt warming)."""
        self.runtime.forward(tokens, keep=1)
        self.tokens.extend(tokens)
        self.forward_passes += 1

    def adopt(self, tokens: Sequence[int], snapshot) -> None:
        """Take over a cache saved earlier for ``tokens`` (prefix reuse)."""
        self.runtime.restore(snapshot)
        self.tokens = list(tokens[: snapshot.length])


def verify(model: CachedModel, seq: Sequence[int], proposal: Sequence[int]) -> list[int]:
    """Feed what the cache lacks of ``seq`` plus ``proposal`` in one forward pass.

    Acceptance rule (greedy): proposal[i] is kept while it equals the model's own
    choice after seq + proposal[:i]; the model's choice at the first mismatch (or
    after the whole proposal) is appended as the bonus token. So the result is
    exactly what the model would have produced one token at a time, and is never empty.
    """
    model.sync(seq)
    fed = list(seq[len(model.tokens):]) + list(proposal)
    start = time.perf_counter()
    choices = model.runtime.forward(fed, keep=len(proposal) + 1)
    if model.learns is not None:
        model.learns.observe(len(fed), time.perf_counter() - start)
    model.tokens.extend(fed)
    model.forward_passes += 1
    n = 0
    while n < len(proposal) and proposal[n] == choices[n]:
        n += 1
    return [*proposal[:n], choices[n]]
