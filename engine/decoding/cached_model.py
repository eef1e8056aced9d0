"""A runtime plus the tokens its KV cache holds, how a prompt is fed into it, and the
one verify step.

``verify`` is the whole of speculative decoding's acceptance rule, used at both
layers of Blazedit: the target verifies the draft model's proposal, and the draft
model verifies prompt lookup's proposal.

Prompts are fed on a grid (``Grid``, ``keep_settled``, ``feed_settled``): on kernels that are not
batch-invariant (bf16 torch, llama.cpp's own) a token's cached keys and values depend
on the shape of the pass that fed it: the next token's scores moved by up to 0.5 on the
default 1.5B model between a one-pass and a chunked prefill (docs/performance.md). Feeding
every prompt in the same pieces, and reusing a cache only up to where the pieces agree,
makes the cache hold the same values whether the prompt was prefilled now, warmed earlier
or shared with another prompt: the output does not depend on what happened to be cached.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Sequence

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


class Grid(NamedTuple):
    """Where a prompt's prefill passes end: at every multiple of ``chunk``, and at
    ``shared``, the end of the part every edit of a file shares (system message and file;
    0: none), so that a warm can stop there and an edit go on from there."""

    chunk: int
    shared: int = 0

    def floor(self, n: int) -> int:
        """The last point at or before ``n``."""
        aligned = n - n % self.chunk
        return self.shared if aligned < self.shared <= n else aligned

    def next(self, n: int) -> int:
        """The first point after ``n``."""
        after = n - n % self.chunk + self.chunk
        return self.shared if n < self.shared < after else after


class CachedModel:
    def __init__(self, runtime: Runtime, learns: ForwardCost | None = None):
        """``learns``: a cost model that the timings of this model's passes refine (only
        where a pass's timing cannot change the output: batch-invariant kernels)."""
        self.runtime = runtime
        self.learns = learns
        self.tokens: list[int] = []  # what the KV cache holds, position by position
        self.settled = 0  # positions [0, settled) were fed piece by piece on a grid (feed_settled)
        self.settled_shared = 0  # that grid's shared point
        self.forward_passes = 0

    def sync(self, seq: Sequence[int]) -> None:
        """Crop the cache to what it shares with ``seq``, leaving at least seq's last token to feed."""
        self.crop(min(common_prefix_length(self.tokens, seq), len(seq) - 1))

    def crop(self, keep: int) -> None:
        """Drop cached positions from ``keep`` on."""
        if keep < len(self.tokens):
            self.runtime.truncate(keep)
            del self.tokens[keep:]
        self.settled = min(self.settled, keep)

    def reset(self) -> None:
        """Empty the KV cache."""
        self.runtime.truncate(0)
        self.tokens.clear()
        self.settled = 0

    def keep_settled(self, seq: Sequence[int], grid: Grid) -> None:
        """Crop the cache to the part of ``seq`` it holds as a prefill on ``grid`` would
        compute it: settled, up to a point of ``grid`` that the grid it was fed on has
        too, with the same piece before it (every multiple of the chunk up to both grids'
        shared points; every point, where those are the same). One chunk size an engine."""
        keep = min(common_prefix_length(self.tokens, seq), self.settled)
        if self.settled_shared != grid.shared:
            keep = min(keep, *(shared for shared in (self.settled_shared, grid.shared) if shared))
            keep -= keep % grid.chunk
        self.crop(grid.floor(keep))
        self.settled_shared = grid.shared

    def feed_settled(self, seq: Sequence[int], grid: Grid) -> None:
        """Feed ``seq`` from the cache's end to the next point of ``grid`` in one pass
        whose choices are not needed (a prefill); after ``keep_settled`` on that grid."""
        start, end = len(self.tokens), grid.next(len(self.tokens))
        assert start == self.settled and grid.shared == self.settled_shared and end <= len(seq), (start, end)
        self.runtime.forward(seq[start:end], keep=1)
        self.tokens.extend(seq[start:end])
        self.settled = end
        self.forward_passes += 1

    def prefill(self, seq: Sequence[int], grid: Grid, should_stop: Callable[[], bool]) -> int:
        """Keep what the cache holds of ``seq`` on ``grid``, then feed the rest piece by
        piece up to the grid's last point before ``seq``'s final token (a verification
        feeds the rest), polling ``should_stop`` before each piece. Returns how many
        tokens were kept."""
        self.keep_settled(seq, grid)
        kept = len(self.tokens)
        while grid.next(len(self.tokens)) < len(seq) and not should_stop():
            self.feed_settled(seq, grid)
        return kept

    def adopt(self, tokens: Sequence[int], snapshot) -> None:
        """Take over a cache saved earlier for ``tokens`` (prefix reuse). The prefix cache
        files settled caches no further than their grid's shared point, so the snapshot's
        end is a point of its grid, and the only piece that is not a whole chunk ends there."""
        self.runtime.restore(snapshot)
        self.tokens = list(tokens[: snapshot.length])
        self.settled = self.settled_shared = snapshot.length


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
