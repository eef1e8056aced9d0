"""KV caches of recent prompts, so the next edit of the same file skips most of the prefill.

The prompt puts the file before the instruction, so two edits of one file share
the system message and the whole file: the longest common token prefix is reused.
An entry holds one snapshot per model (target, draft); entries are evicted least
recently used first, under a byte budget.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from engine.decoding.cached_model import CachedModel, common_prefix_length

MIN_REUSE_TOKENS = 16  # below this a restore costs more than it saves


class PrefixCache:
    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[int, ...], list] = OrderedDict()

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for snaps in self._entries.values() for s in snaps if s is not None)

    def __len__(self) -> int:
        return len(self._entries)

    def reuse(self, models: Sequence[CachedModel], prompt: Sequence[int]) -> None:
        """Give each model the saved cache sharing most with ``prompt``, where that beats its live cache."""
        as_key = tuple(prompt)  # keys are tuples, and a tuple slice never equals a list slice
        for i, model in enumerate(models):
            best_key, best = None, max(common_prefix_length(model.tokens, prompt), MIN_REUSE_TOKENS - 1)
            for key, snaps in self._entries.items():
                if snaps[i] is not None and (shared := common_prefix_length(key, as_key)) > best:
                    best_key, best = key, shared
            if best_key is not None:
                self._entries.move_to_end(best_key)
                model.adopt(best_key, self._entries[best_key][i])

    def held(self, model_index: int, model: CachedModel, prompt: Sequence[int]) -> int:
        """How many leading tokens of ``prompt`` the model holds live or the cache has saved for it."""
        as_key = tuple(prompt)
        saved = (min(common_prefix_length(key, as_key), snaps[model_index].length)
                 for key, snaps in self._entries.items() if snaps[model_index] is not None)
        return max(common_prefix_length(model.tokens, prompt), *saved, 0)

    def remember(self, models: Sequence[CachedModel], prompt: Sequence[int]) -> None:
        """Save what each model's cache still holds of ``prompt``."""
        if self.budget_bytes <= 0 or len(prompt) < MIN_REUSE_TOKENS:
            return
        key = tuple(prompt)
        old = self._entries.pop(key, [None] * len(models))
        snaps = []
        for model, previous in zip(models, old):
            held = common_prefix_length(model.tokens, prompt)
            snaps.append(model.runtime.snapshot(held) if held == len(prompt) else previous)
        self._entries[key] = snaps
        while self._entries and self.nbytes > self.budget_bytes:
            self._entries.popitem(last=False)
