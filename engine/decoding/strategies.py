"""The four decoding methods, each a small object with one ``propose``.

A strategy proposes draft tokens continuing ``seq``; the loop (loop.py) has the
target verify them, so whatever a strategy proposes, the output is the target's
plain greedy output. Strategies differ only in how good and how cheap their
proposals are.
"""

from __future__ import annotations

from typing import Sequence

from engine.decoding.cached_model import CachedModel, verify
from engine.decoding.lookup import NgramIndex
from engine.protocol import DecodingOptions


class Regular:
    """Plain greedy decoding: nothing proposed, one token per target pass."""

    draft: CachedModel | None = None

    def propose(self, seq: Sequence[int], budget: int) -> list[int]:
        return []

    def observe(self, proposed: int, accepted: int) -> None:
        pass


class PromptLookup(Regular):
    """Prompt lookup decoding: copy what followed the suffix's n-gram earlier."""

    def __init__(self, options: DecodingOptions):
        self.index = NgramIndex(options.max_ngram)
        self.num_tokens = options.num_tokens

    def propose(self, seq: Sequence[int], budget: int) -> list[int]:
        self.index.extend(seq)
        return self.index.propose(seq, min(self.num_tokens, budget))


class Assisted(Regular):
    """The draft model decodes greedily; the draft length grows while the target
    accepts all of it and shrinks when it does not (transformers' heuristic)."""

    MAX_TOKENS = 32

    def __init__(self, draft: CachedModel, options: DecodingOptions, eos: set[int]):
        self.draft = draft
        self.length = options.assisted_start_tokens
        self.cap = min(self.MAX_TOKENS, options.max_draft_tokens)
        self.eos = eos

    def propose(self, seq: Sequence[int], budget: int) -> list[int]:
        drafts: list[int] = []
        while len(drafts) < min(self.length, budget):
            drafts += verify(self.draft, [*seq, *drafts], [])
            if drafts[-1] in self.eos:
                break
        return drafts

    def observe(self, proposed: int, accepted: int) -> None:
        if proposed:
            self.length = min(self.cap, self.length + 2) if accepted == proposed else max(1, self.length - 1)


class Blazedit(Regular):
    """Multi-layer speculation: prompt lookup proposes to the draft model, the draft
    model verifies (keeping the matching prefix plus its own next token), and the
    tokens gathered over up to ``max_num_run`` draft passes go to the target.
    Copy-heavy stretches yield long drafts at the draft model's cost; real edits
    yield short drafts of draft-model quality.

    While the target accepts all of a lookup, the next lookup goes to the target
    directly: the draft model would only confirm it, at the cost of its passes
    (and, the first time, of its prefill). After a rejection (an edit point) the
    draft layer is back in play. A job starts on pure lookup: an unchanged
    stretch at the top of the file needs no draft model."""

    def __init__(self, draft: CachedModel, options: DecodingOptions, eos: set[int]):
        self.draft = draft
        self.index = NgramIndex(options.max_ngram)
        self.micro_draft_tokens = options.micro_draft_tokens
        self.max_num_run = options.max_num_run
        self.max_draft_tokens = options.max_draft_tokens
        self.eos = eos
        self.lookup_on_track = True

    def propose(self, seq: Sequence[int], budget: int) -> list[int]:
        self.index.extend(seq)
        limit = min(self.max_draft_tokens, budget)
        if self.lookup_on_track and (copied := self.index.propose(seq, min(self.micro_draft_tokens, limit))):
            return copied
        drafts: list[int] = []
        for _ in range(self.max_num_run):
            if len(drafts) >= limit or (drafts and drafts[-1] in self.eos):
                break
            context = [*seq, *drafts]
            micro = self.index.propose(context, min(self.micro_draft_tokens, limit - len(drafts) - 1))
            drafts += verify(self.draft, context, micro)
        return drafts[:limit]

    def observe(self, proposed: int, accepted: int) -> None:
        if proposed:  # the prefill step proposes nothing and says nothing about the lookup
            self.lookup_on_track = accepted == proposed


def make(method: str, options: DecodingOptions, draft: CachedModel | None, eos: set[int]) -> Regular:
    if method == "regular":
        return Regular()
    if method == "pld":
        return PromptLookup(options)
    if draft is None:
        raise ValueError(f"method {method!r} needs a draft model")
    if method == "assisted":
        return Assisted(draft, options, eos)
    if method == "blazedit":
        return Blazedit(draft, options, eos)
    raise ValueError(f"unknown method {method!r}")
