"""How long a forward pass over k tokens takes, and the proposal length that pays best.

On a CPU a forward pass over k tokens costs far more than one over a single token
once k passes ~8-32 (llama.cpp: 8 tokens cost ~5x one), so a long proposal pays only
when it is likely to be accepted. Each proposal source keeps an acceptance estimate,
and the length maximises expected tokens per second under the measured costs.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from typing import Callable, Sequence

from engine.runtimes.base import Runtime

MEASURED_LENGTHS = (1, 2, 4, 8, 16, 32, 64, 128)  # longer passes: extrapolated (cost is ~linear there)


class ForwardCost:
    """T(k): seconds for one forward pass over k new tokens, interpolated between measured k."""

    def __init__(self, seconds: dict[int, float]):
        self.lengths = sorted(seconds)
        # A shorter pass never costs more than a longer one: timing noise only ever adds
        # time, so a slow outlier gives way to the cheaper longer pass above it.
        running = float("inf")
        self.seconds_at = [running := min(running, seconds[k]) for k in reversed(self.lengths)][::-1]

    @classmethod
    def measure(cls, runtime: Runtime, context: int = 64, repeats: int = 3) -> "ForwardCost":
        """Time each length after a warm-up, behind ``context`` cached tokens: the best of
        ``repeats`` for the short passes, whose costs decide between decoding and drafting
        and are easily upset by a stray millisecond, once for the long ones (~5 s for
        the default pair on a 2-core CPU)."""
        ids = [(i * 7919) % 200 + 32 for i in range(context + max(MEASURED_LENGTHS))]  # ordinary tokens, any vocab
        _, seconds = time_passes(runtime, ids, context, MEASURED_LENGTHS, lambda k: repeats if k <= 16 else 1,
                                 warm_up=True)
        return cls(seconds)

    def observe(self, k: int, seconds: float, weight: float = 0.1) -> None:
        """Move T at the measured length nearest ``k`` (on a log scale) toward what a pass
        over k tokens just took, scaled to that length: the cost model learns the machine
        as it runs (kept monotone, as at construction). Only for passes within the
        measured lengths: beyond them, T is extrapolated."""
        if not self.lengths[0] <= k <= self.lengths[-1] or seconds <= 0:
            return
        i = min(range(len(self.lengths)), key=lambda j: abs(math.log(self.lengths[j] / k)))
        predicted = self(k)
        if predicted > 0:
            self.seconds_at[i] *= (seconds / predicted) ** weight
        for j in range(i + 1, len(self.seconds_at)):
            self.seconds_at[j] = max(self.seconds_at[j], self.seconds_at[i])
        for j in range(i - 1, -1, -1):
            self.seconds_at[j] = min(self.seconds_at[j], self.seconds_at[j + 1])

    def __call__(self, k: int) -> float:
        i = bisect_left(self.lengths, k)
        if i < len(self.lengths) and self.lengths[i] == k:
            return self.seconds_at[i]
        i = min(max(i, 1), len(self.lengths) - 1)  # interpolate, or extrapolate from the last two
        k0, k1 = self.lengths[i - 1], self.lengths[i]
        t0, t1 = self.seconds_at[i - 1], self.seconds_at[i]
        return max(t0 + (t1 - t0) * (k - k0) / (k1 - k0), self.seconds_at[0])

    @classmethod
    def flat(cls, seconds: float = 1.0) -> "ForwardCost":
        """Every pass costs the same (as on a GPU far from saturation): the longest proposal pays."""
        return cls({1: seconds, 2: seconds})

    def best_length(self, p: float, limit: int, fed: int = 1, per_token: float = 0.0) -> int:
        """The proposal length in 0..limit with the most expected tokens per second of
        a pass that also feeds ``fed`` tokens, when each proposed token is accepted with
        probability ``p`` given all before it were, and costs ``per_token`` seconds to
        make (a draft model's step); 0: propose nothing."""
        best_k, best_rate = 0, 1.0 / self(fed)
        expected, reach = 1.0, 1.0  # tokens out of the pass: accepted ones plus the bonus
        for k in range(1, limit + 1):
            reach *= p
            expected += reach
            if (rate := expected / (self(fed + k) + k * per_token)) > best_rate:
                best_k, best_rate = k, rate
            elif reach < 0.01:
                break
        return best_k


def time_passes(runtime: Runtime, ids: Sequence[int], context: int, lengths: Sequence[int],
                repeats: Callable[[int], int], warm_up: bool = False) -> tuple[float, dict[int, float]]:
    """Feed ``ids[:context]`` (its time is returned: the prefill), then time one pass over
    k more tokens behind it for each k in ``lengths``, the best of ``repeats(k)`` tries
    (after a one-token ``warm_up`` pass). ForwardCost.measure and the benchmark's
    record of the target's costs (engine/bench.py) both time passes so. Leaves the
    cache empty."""
    runtime.truncate(0)
    start = time.perf_counter()
    runtime.forward(ids[:context], keep=1)
    prefill = time.perf_counter() - start
    if warm_up:
        runtime.forward(ids[context:context + 1], keep=1)
    seconds: dict[int, float] = {}
    for k in lengths:
        for _ in range(repeats(k)):
            runtime.truncate(context)
            start = time.perf_counter()
            runtime.forward(ids[context:context + k], keep=k)
            seconds[k] = min(seconds.get(k, float("inf")), time.perf_counter() - start)
    runtime.truncate(0)
    return prefill, seconds


class Acceptance:
    """Per-token acceptance probability of one proposal source, weighted to recent passes.

    ``p`` is the share of proposed tokens accepted before the first miss, over a
    decaying window of verifications (``decay`` 1: all of them), starting from ``prior``."""

    def __init__(self, prior: float, weight: float = 4.0, decay: float = 0.7):
        self.prior, self.weight, self.decay = prior, weight, decay
        self.accepted, self.seen = prior * weight, weight

    @property
    def p(self) -> float:
        return self.accepted / self.seen

    def observe(self, proposed: int, accepted: int) -> None:
        if proposed:
            # tokens checked: the accepted ones, plus the one that missed (if any)
            checked = accepted + (accepted < proposed)
            self.accepted = self.accepted * self.decay + accepted
            self.seen = self.seen * self.decay + checked

    def relax(self) -> None:
        """A step with nothing proposed: drift back toward the prior, so that a source
        given up on is tried again once the prior would pay."""
        self.accepted = self.accepted * self.decay + self.prior * self.weight * (1 - self.decay)
        self.seen = self.seen * self.decay + self.weight * (1 - self.decay)
