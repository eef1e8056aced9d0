"""The four decoding methods, each a small object with one ``propose``, and
``METHODS``, the one table of them (name → factory, whether it needs the draft model).

A strategy proposes draft tokens continuing ``seq``; the loop (loop.py) has the
target verify them, so whatever a strategy proposes, the output is the target's
plain greedy output. Strategies differ only in how good and how cheap their
proposals are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol, Sequence, get_args

from engine.client import protocol
from engine.client.protocol import DecodingOptions
from engine.decoding.cached_model import CachedModel, common_prefix_length, verify
from engine.decoding.cost import Acceptance, ForwardCost
from engine.decoding.lookup import EncodedPrompt, NgramIndex


class Strategy(Protocol):
    """What the loop asks of a decoding method."""

    def propose(self, seq: Sequence[int], budget: int) -> list[int]:
        """Tokens for the target to verify after ``seq`` (at most ``budget``; [] for none)."""

    def observe(self, proposed: int, accepted: int) -> None:
        """The target accepted the first ``accepted`` of the ``proposed`` tokens."""

    def retarget(self, cost: ForwardCost) -> None:
        """The edit moved to a target whose passes cost ``cost`` (handover.py)."""


class Regular:
    """Plain greedy decoding: nothing proposed, one token per target pass."""

    def propose(self, seq: Sequence[int], budget: int) -> list[int]:
        return []

    def observe(self, proposed: int, accepted: int) -> None:
        pass

    def retarget(self, cost: ForwardCost) -> None:
        pass


class Lookup:
    """Prompt lookup with its length chosen by cost. Acceptance is bimodal (a copied
    stretch is taken whole; at an edit point nothing is), so there are three estimates:
    one for lookups right after a miss (editing), one for lookups once the last
    proposal was accepted whole but fewer than RESUMING_TOKENS have been since the
    miss (resuming: edits cluster, a rename runs on over several lines), one for
    steady copying.

    A lookup that does not pay is still checked against the tokens the target then
    writes (for free): that is how decoding notices that copying has resumed."""

    RESUMING_TOKENS = 64

    def __init__(self, options: DecodingOptions, cost: ForwardCost, prompt: EncodedPrompt = EncodedPrompt()):
        self.index = NgramIndex(options.max_ngram, prompt.copy_end, prompt.copy_start, prompt.prediction)
        self.cost = cost
        # Edits come at a roughly steady rate per copied token, one per hundreds: only
        # the whole job's count estimates it (a window of a few passes sees no miss and
        # would keep proposing the longest copies, wasting their tail at each edit).
        self.copying, self.editing = Acceptance(prior=0.98, decay=1.0), Acceptance(prior=0.5)
        self.resuming = Acceptance(prior=0.9)
        self.on_track = True  # the last verification was accepted whole (a job starts by copying)
        self.since_miss = self.RESUMING_TOKENS  # tokens accepted since the last miss
        self._unused: tuple[int, list[int]] | None = None  # (position, lookup) not proposed

    @property
    def estimate(self) -> Acceptance:
        if not self.on_track:
            return self.editing
        return self.resuming if self.since_miss < self.RESUMING_TOKENS else self.copying

    def propose(self, seq: Sequence[int], limit: int) -> list[int]:
        self.index.extend(seq)
        if self._unused:
            at, lookup = self._unused
            written = seq[at:at + len(lookup)]
            matched = common_prefix_length(lookup, written)
            self.verified(len(written), matched)
            self._unused = None
        lookup = self.index.propose(seq, limit)
        length = self.cost.best_length(self.estimate.p, len(lookup))
        if lookup and not length:
            self._unused = (len(seq), lookup)
        return lookup[:length]

    def continuation(self, seq: Sequence[int], limit: int) -> list[int]:
        """The index's continuation of ``seq``, without the choice by cost (the draft
        layer's micro-drafts choose their own length)."""
        return self.index.propose(seq, limit)

    def verified(self, proposed: int, accepted: int, own: bool = True) -> None:
        """The target accepted ``accepted`` of ``proposed`` tokens: the lookup's own
        (which also teach its acceptance estimate), or the draft layer's (``own``
        False: they only say whether decoding is on track)."""
        if not proposed:  # the prefill step proposes nothing and says nothing about the lookup
            return
        if own:
            self.estimate.observe(proposed, accepted)
        self.on_track = accepted == proposed
        self.since_miss = self.since_miss + accepted if self.on_track else 0


class PromptLookup:
    """Prompt lookup decoding: copy what followed the suffix's n-gram earlier, as many
    tokens as pay under the target's costs (at most ``num_tokens``)."""

    def __init__(self, options: DecodingOptions, cost: ForwardCost, prompt: EncodedPrompt = EncodedPrompt()):
        self.lookup = Lookup(options, cost, prompt)
        self.num_tokens = options.num_tokens

    def propose(self, seq: Sequence[int], budget: int) -> list[int]:
        return self.lookup.propose(seq, min(self.num_tokens, budget))

    def observe(self, proposed: int, accepted: int) -> None:
        self.lookup.verified(proposed, accepted)

    def retarget(self, cost: ForwardCost) -> None:
        self.lookup.cost = cost


class Assisted:
    """The draft model decodes greedily; the draft length grows while the target
    accepts all of it and shrinks when it does not (transformers' heuristic), and is
    cut to what pays under the measured costs, counting a draft step per token."""

    MAX_TOKENS = 32

    def __init__(self, draft: CachedModel, options: DecodingOptions, eos: set[int],
                 target_cost: ForwardCost, draft_cost: ForwardCost):
        self.draft = draft
        self.cap = min(self.MAX_TOKENS, options.max_draft_tokens)
        self.length = min(options.assisted_start_tokens, self.cap)
        self.eos = eos
        self.accepting = Acceptance(prior=0.7)
        self.target_cost, self.draft_cost = target_cost, draft_cost

    def propose(self, seq: Sequence[int], budget: int) -> list[int]:
        wanted = self.target_cost.best_length(self.accepting.p, min(self.length, budget),
                                              per_token=self.draft_cost(1))
        if not wanted:
            self.accepting.relax()
        drafts: list[int] = []
        while len(drafts) < wanted:
            drafts += verify(self.draft, [*seq, *drafts], [])
            if drafts[-1] in self.eos:
                break
        return drafts

    def observe(self, proposed: int, accepted: int) -> None:
        if proposed:
            self.accepting.observe(proposed, accepted)
            self.length = min(self.cap, self.length + 2) if accepted == proposed else max(1, self.length - 1)

    def retarget(self, cost: ForwardCost) -> None:
        self.target_cost = cost


class Blazedit:
    """Multi-layer speculation: prompt lookup proposes to the draft model, the draft
    model verifies (keeping the matching prefix plus its own next token), and the
    tokens gathered over up to ``max_num_run`` draft passes go to the target.
    Copy-heavy stretches yield long drafts at the draft model's cost; real edits
    yield short drafts of draft-model quality.

    While the target accepts all of a lookup, the next lookup (up to
    ``max_draft_tokens``) goes to the target directly: the draft model would only
    confirm it, at the cost of its passes. After a rejection (an edit point) the
    draft layer is back in play, if it pays for reading what it has not seen yet
    (the whole prompt, the first time). Every length is chosen by cost (cost.py):
    the lookups', the micro-drafts' and how many tokens the target verifies; where
    no draft pays, the target decodes one token."""

    def __init__(self, draft: CachedModel, options: DecodingOptions, eos: set[int],
                 target_cost: ForwardCost, draft_cost: ForwardCost, prompt: EncodedPrompt = EncodedPrompt()):
        self.draft = draft
        self.lookup = Lookup(options, target_cost, prompt)
        self.micro = Acceptance(prior=0.5)  # the draft model accepting lookups
        self.drafted = Acceptance(prior=0.7)  # the target accepting the draft layer's tokens
        self.target_cost, self.draft_cost = target_cost, draft_cost
        self.micro_draft_tokens = options.micro_draft_tokens
        self.max_num_run = options.max_num_run
        self.max_draft_tokens = options.max_draft_tokens
        self.eos = eos
        self.from_draft = False  # whether the pending proposal came from the draft layer
        self.edited = 0  # tokens written so far in edits, not copies

    def propose(self, seq: Sequence[int], budget: int) -> list[int]:
        limit = min(self.max_draft_tokens, budget)
        self.from_draft = False
        copied = self.lookup.propose(seq, limit)
        if copied and self.lookup.on_track:
            return copied
        # How many draft-layer tokens the target should verify, counting one draft step per token.
        wanted = self.target_cost.best_length(self.drafted.p, limit, per_token=self.draft_cost(1))
        if not wanted:
            self.drafted.relax()
            return copied  # no draft pays: the lookup's own choice, perhaps nothing
        if not self._catch_up_pays(seq, wanted):
            return copied
        drafts: list[int] = []
        for _ in range(self.max_num_run):
            if len(drafts) >= wanted or (drafts and drafts[-1] in self.eos):
                break
            context = [*seq, *drafts]
            room = min(self.micro_draft_tokens, wanted - len(drafts) - 1)
            micro = self.lookup.continuation(context, self.draft_cost.best_length(self.micro.p, room))
            verified = verify(self.draft, context, micro)
            self.micro.observe(len(micro), len(verified) - 1)
            drafts += verified
        self.from_draft = bool(drafts)
        return drafts[:wanted]

    def _catch_up_pays(self, seq: Sequence[int], wanted: int) -> bool:
        """Whether the draft model's pass over the tokens it has not read yet costs no
        more than drafting ``wanted`` tokens per target pass would have saved over the
        tokens edited so far. As in ski rental, the catch-up is bought once doing without
        it has cost as much: a job that copies, or edits a few tokens, never pays for it
        (on a CPU the draft's first read of the prompt takes seconds)."""
        lag = len(seq) - common_prefix_length(self.draft.tokens, seq)
        p = self.drafted.p
        tokens_per_pass = sum(p ** i for i in range(wanted + 1))
        pass_seconds = self.target_cost(1 + wanted) + wanted * self.draft_cost(1)
        saved_per_token = self.target_cost(1) - pass_seconds / tokens_per_pass
        return self.draft_cost(lag) <= saved_per_token * self.edited

    def observe(self, proposed: int, accepted: int) -> None:
        off_track = not self.lookup.on_track
        if self.from_draft:
            self.drafted.observe(proposed, accepted)
        self.lookup.verified(proposed, accepted, own=not self.from_draft)
        # A pass that started off track wrote edit tokens; one that missed, a copy and then
        # the edit's first token.
        self.edited += accepted + 1 if off_track else int(accepted < proposed)

    def retarget(self, cost: ForwardCost) -> None:
        self.target_cost = self.lookup.cost = cost


class _Inputs(NamedTuple):
    """What the factories choose from."""

    options: DecodingOptions
    draft: CachedModel | None
    eos: set[int]
    target_cost: ForwardCost
    draft_cost: ForwardCost | None
    prompt: EncodedPrompt


@dataclass(frozen=True)
class DecodingMethod:
    """How to make a method's strategy, and whether it needs the draft model."""

    make: Callable[[_Inputs], Strategy]
    needs_draft: bool


METHODS: dict[str, DecodingMethod] = {
    "regular": DecodingMethod(lambda i: Regular(), needs_draft=False),
    "pld": DecodingMethod(lambda i: PromptLookup(i.options, i.target_cost, i.prompt),
                          needs_draft=False),
    "assisted": DecodingMethod(lambda i: Assisted(i.draft, i.options, i.eos, i.target_cost, i.draft_cost),
                               needs_draft=True),
    "blazedit": DecodingMethod(lambda i: Blazedit(i.draft, i.options, i.eos, i.target_cost, i.draft_cost,
                                                  i.prompt), needs_draft=True),
}
assert tuple(METHODS) == get_args(protocol.Method), "the wire's method names (protocol.Method) must match METHODS"


def unavailable(method: str, has_draft: bool) -> str | None:
    """Why ``method`` cannot run with the models loaded, or None when it can."""
    if method not in METHODS:
        return f"use one of {', '.join(METHODS)}"
    if METHODS[method].needs_draft and not has_draft:
        return "needs a draft model (--draft)"
    return None


def make(method: str, options: DecodingOptions, draft: CachedModel | None, eos: set[int],
         target_cost: ForwardCost, draft_cost: ForwardCost | None = None,
         prompt: EncodedPrompt = EncodedPrompt()) -> Strategy:
    """The strategy of ``method`` (check it with ``unavailable`` first), its lookups
    copying from ``prompt`` as it says."""
    if why := unavailable(method, draft is not None):
        raise ValueError(f"method {method!r}: {why}")
    return METHODS[method].make(_Inputs(options, draft, eos, target_cost, draft_cost, prompt))
