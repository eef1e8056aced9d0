"""The engine as a Python object: loaded models, edits (of a whole file or of a region)
streamed as events, and prompt warming ahead of them.

The daemon and the embedded CLI both drive an ``Engine``; see docs/contracts.md.
Not thread-safe: one edit at a time (the daemon's queue serialises).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Generator, Iterator, Sequence

import msgspec
import torch

from engine import calibration, models

from engine.catalogue import DEFAULT_DRAFT, DEFAULT_TARGET
from engine.client import prompts
from engine.client.attempts import Attempt, EditAttempts
from engine.client.errors import JobError
from engine.client.protocol import DecodingOptions, FinishReason, ModelInfo, Partial, Region, Stats
from engine.completion import Completion, PredictionUsage, prediction_usage, render, safe_length
from engine.decoding import strategies
from engine.decoding.cached_model import CachedModel, Grid, common_prefix_length
from engine.decoding.cost import ForwardCost
from engine.decoding.handover import Handover, SecondTarget
from engine.decoding.lookup import EncodedPrompt
from engine.decoding.loop import PREFILL_CHUNK_TOKENS, DecodeStep, Detokenizer, StopRule, generate, stop_string_at
from engine.prefix_cache import MIN_REUSE_TOKENS, PrefixCache
from engine.runtimes.base import open_runtime

log = logging.getLogger(__name__)

DEFAULT_PREFIX_CACHE_BYTES = 1 << 30
WARM_MARGIN_TOKENS = 4  # warming stops this short of the file's end: tokens at the boundary may merge differently
PLAN_TOKENS = 256  # room for the sentence a second attempt writes before the file


@dataclass
class EditStep:
    text: str  # file (or region) text that is new since the last step
    chars: int  # file (or region) text streamed so far, this step's included
    stats: Stats  # of this attempt
    attempt: int = 1  # a new attempt streams the file again from its start


@dataclass
class Result:
    text: str  # the whole regenerated file (or region), in the input's line endings
    finish_reason: FinishReason
    stats: Stats
    tokens: list[int]  # the generated reply tokens (for identity checks)
    attempt: int = 1  # 2: the first reply was the file unchanged, and this is the second (or an apply pass)
    partial: Partial | None = None  # the reply was part of the file, and ``text`` the whole file made from it


@dataclass
class CompletionStep:
    text: str  # reply text that is new since the last step
    stats: Stats


@dataclass
class CompletionResult:
    text: str  # the whole reply, cut before a stop string
    finish_reason: FinishReason
    stats: Stats
    tokens: list[int]  # the generated tokens
    prediction: PredictionUsage


def default_draft(model: str) -> str | None:
    """The draft that goes with a target when none is named."""
    if model == DEFAULT_TARGET:
        return DEFAULT_DRAFT
    if models.is_tiny(model):
        return model
    return None


def max_new_tokens_for(file_tokens: int) -> int:
    """Room for the whole file to double, plus 256 tokens: "add docstrings" can more than
    double a small file. A limit costs nothing until it is reached (the reply ends at its
    fence); near the context's end, edits get what is left (at least the file plus 256)."""
    return 2 * file_tokens + 256


class Engine:
    def __init__(self, target: models.LoadedModel, draft: models.LoadedModel | None = None,
                 prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
                 costs: tuple[ForwardCost, ForwardCost | None] | None = None,
                 choice: calibration.Choice | None = None,
                 second: tuple[Callable[[], models.LoadedModel | None], ForwardCost, float] | None = None):
        """``costs``: what a target and a draft forward pass cost (Engine.load reads them from
        the machine's calibration; default: measured now, as tests of tiny models do).
        ``choice``: the calibration's choice of runtimes that made this engine, if any.
        ``second``: how to load the target's weights on another runtime (None where they
        cannot be), its pass costs and prefill per token: an edit moves there midway when its
        passes say it pays, loading it the first time (handover.py)."""
        if draft is not None and draft.tokenizer.get_vocab() != target.tokenizer.get_vocab():
            raise JobError("model_error", f"draft {draft.spec} does not share the tokenizer of target {target.spec}")
        self.loaded_target, self.loaded_draft = target, draft
        self.tokenizer = target.tokenizer
        target_runtime, draft_runtime = open_runtime(target), open_runtime(draft) if draft else None
        if costs is None:
            costs = (ForwardCost.measure(target_runtime), ForwardCost.measure(draft_runtime) if draft_runtime else None)
        self.target_cost, self.draft_cost = copy.deepcopy(costs)  # learning below must not change the caller's
        # A target on exact kernels that never moves: the schedule of passes cannot change the
        # output, so the passes' timings refine both costs; elsewhere they stay as calibrated, and
        # so does the output (where a move falls follows the passes, and a move changes the text).
        learns = target.exact and second is None
        self.target_model = CachedModel(target_runtime, self.target_cost if learns else None)
        self.draft_model = CachedModel(draft_runtime, self.draft_cost if learns else None) if draft else None
        self.choice = choice
        self.loaded_second: models.LoadedModel | None = None
        self.second = SecondTarget(lambda: self._open_second(second[0]), *second[1:]) if second is not None else None
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self.eos = target.eos
        self.prefill_chunk_tokens = PREFILL_CHUNK_TOKENS  # the grid prompts are fed on (cached_model.py)

    @classmethod
    def load(cls, model: str = DEFAULT_TARGET, draft: str | None = "default", *,
             runtime: str | None = None, draft_runtime: str | None = None,
             device: str | None = None, dtype: str | None = None, threads: int | None = None,
             exact: bool = False, prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
             notify: Callable[[str], None] = log.info) -> "Engine":
        """Load target and draft (``draft="default"``: the usual partner, None: no draft).

        Runtimes default to ``auto``: the pair of settings the machine's calibration
        predicts fastest (engine/calibration.py; measured on the first load, with
        ``notify`` told); the draft's default to the target's choices. ``exact``: a target
        whose passes the calibration found batch-invariant (every method's output bit for bit
        plain greedy's), and no move to a second target."""
        threads = threads or int(os.environ.get("BLAZEDIT_THREADS", "0")) or None
        if threads:
            torch.set_num_threads(threads)
        if draft == "default":
            draft = default_draft(model)
        try:
            targets = calibration.candidates(model, runtime, device, dtype)
            # The draft only proposes: under ``exact`` its kernels need not be exact too.
            drafts = calibration.candidates(draft, draft_runtime or runtime, device, dtype) if draft else None
            measuring_threads = threads or torch.get_num_threads()
            measured = calibration.ensure(model, draft, targets, drafts or [], device=device,
                                          threads=measuring_threads, notify=notify)
            choice = calibration.choose_for(model, targets, drafts, measured, exact=exact, device=device,
                                            threads=measuring_threads, notify=notify)
            for line in choice.describe():
                log.info("%s", line)
            target = calibration.load_on(model, choice.target, device, threads)
            if (probed := measured.target[str(choice.target)].exact) is not None:
                target.exact = probed  # measured on this machine, whatever its kernels promise
            if choice.draft is None:
                loaded_draft = None
            elif draft == model and choice.draft == choice.target:
                loaded_draft = target  # same weights, its own KV cache
            else:
                loaded_draft = calibration.load_on(draft, choice.draft, device, threads)
        except models.ModelError as exc:
            raise JobError("model_error", str(exc)) from exc
        costs = (measured.target[str(choice.target)].forward_cost(),
                 measured.draft[str(choice.draft)].forward_cost() if choice.draft else None)
        second = None
        if choice.second:
            measured_second = measured.target[str(choice.second)]
            second = (functools.partial(_load_second, model, choice.second, target, device, threads),
                      measured_second.forward_cost(), measured_second.prefill_per_token)
        return cls(target, loaded_draft, prefix_cache_bytes, costs, choice, second)

    def forget(self) -> None:
        """Empty both KV caches and the saved prefixes: the next edit starts cold (the
        benchmark measures every run so, or later runs would skip their prefill)."""
        for model in (self.target_model, self.draft_model, self.second and self.second.model):
            if model:
                model.reset()
        self.prefix_cache = PrefixCache(self.prefix_cache.budget_bytes)

    @property
    def target(self) -> ModelInfo:
        return _info(self.loaded_target)

    @property
    def draft(self) -> ModelInfo | None:
        return _info(self.loaded_draft) if self.loaded_draft else None

    @property
    def second_target(self) -> ModelInfo | None:
        """The second target, once an edit has moved there and loaded it."""
        return _info(self.loaded_second) if self.loaded_second else None

    def open_second_target(self) -> None:
        """Load the second target now, not at the first move (the benchmark times decoding,
        so it loads every model before its first timed run)."""
        if self.second:
            self.second.open()

    def _open_second(self, load: Callable[[], models.LoadedModel | None]) -> CachedModel | None:
        """The second target with a cache of its own, loaded now (the first move), or None."""
        started = time.perf_counter()
        loaded = load()
        if loaded is None:
            return None
        if loaded.tokenizer.get_vocab() != self.tokenizer.get_vocab():
            log.warning("not moving edits to %s on %s: it does not share the target's tokenizer",
                        loaded.spec, loaded.runtime)
            return None
        self.loaded_second = loaded
        log.info("loaded the second target (%s on %s) in %.1f s", loaded.spec, loaded.runtime,
                 time.perf_counter() - started)
        return CachedModel(open_runtime(loaded))

    @property
    def methods(self) -> list[str]:
        return [m for m in strategies.METHODS if not self.method_unavailable(m)]

    def method_unavailable(self, method: str) -> str | None:
        """Why ``method`` cannot run on the loaded models, or None when it can."""
        return strategies.unavailable(method, self.draft_model is not None)

    @property
    def _models(self) -> list[CachedModel]:
        return [self.target_model] + ([self.draft_model] if self.draft_model else [])

    def edit(self, text: str, instruction: str, *, path: str = "", language: str | None = None,
             method: str = "blazedit", options: DecodingOptions | None = None, region: Region | None = None,
             retry_unchanged: bool = True,
             should_stop: Callable[[], bool] = lambda: False) -> Iterator[EditStep | Result]:
        """Regenerate ``text``, or only its ``region`` (the events then carry the region's
        new text); yields EditSteps while decoding, then one Result.

        ``retry_unchanged``: a whole file that comes back unchanged is asked for once
        more, with the model saying first what it will change (prompts.PLAN_FIRST); the
        second attempt's EditSteps have ``attempt`` 2 and stream the file from its start.
        A reply that is part of the file (engine/client/merge.py) is merged into it by item; where
        that is ambiguous and ``retry_unchanged`` holds, an apply pass (one more attempt)
        writes the whole file from it.

        Raises JobError before the first event for input it cannot handle."""
        options = options or DecodingOptions()
        if why := self.method_unavailable(method):
            raise JobError("unknown_method", f"method {method!r} is not available: {why}")
        span = (region.start, region.end) if region is not None else None
        attempts = EditAttempts(text, instruction, path, language, span, retry_unchanged)
        encoded = self.encode(attempts.first.prompt)
        shared = self.warm_prefix(text, path, language)  # every attempt's prompt starts so: the grid's shared point
        rewritten = text[span[0]:span[1]] if span else text
        file_tokens = len(self.tokenizer(rewritten, add_special_tokens=False)["input_ids"])
        context = self.loaded_target.context_tokens
        needed = options.max_new_tokens or file_tokens + 256  # the least room for the reply we accept
        if len(encoded.ids) + needed > context:
            what = "the region" if span else "the file"
            raise JobError(
                "context_overflow",
                f"{what} is {file_tokens} tokens; the prompt ({len(encoded.ids)}) plus room for the reply ({needed}) "
                f"exceeds the model's context of {context} tokens",
            )
        max_new = options.max_new_tokens or min(max_new_tokens_for(file_tokens), context - len(encoded.ids))
        log.info("editing %s: %d prompt tokens, %s", path or "a file", len(encoded.ids), method)
        attempt: Attempt | None = attempts.first
        while attempt is not None:
            if attempt.kind != "first":
                encoded = self.encode(attempt.prompt)
            room = context - len(encoded.ids)
            if attempt.kind == "plan_first":
                max_new = min(max_new + PLAN_TOKENS, room)
            elif attempt.kind == "apply_pass":
                max_new = options.max_new_tokens or min(max_new_tokens_for(file_tokens), room)
            # a second attempt needs the least room an edit accepts; an apply pass, all of its own
            fits = max_new >= needed if attempt.kind == "plan_first" else max_new <= room
            outcome = (yield from self._attempt(attempt, encoded, shared, max_new, method, options, should_stop,
                                                file_tokens)) \
                if fits else None
            attempt = attempts.next(outcome)
        yield attempts.final

    def _attempt(self, attempt: Attempt, encoded: EncodedPrompt, shared: list[int], max_new: int, method: str,
                 options: DecodingOptions, should_stop: Callable[[], bool],
                 file_tokens: int) -> Generator[EditStep, None, Result]:
        """One decoding of an edit prompt (of a file, or region, of ``file_tokens``):
        yields its EditSteps, returns its Result."""
        prompt = attempt.prompt
        detok = Detokenizer(self.tokenizer)
        stop = StopRule(self.eos, prompt.fence, max_new, opens_fence=prompt.opens_fence)
        reader = prompts.reply_reader(prompt)
        streamed = 0  # of the reply
        tokens: list[int] = []
        if attempt.number > 1:  # tells a consumer to start the file again
            yield EditStep("", 0, Stats(), attempt.number)
        with contextlib.closing(self._decode(encoded, detok, stop, method, options, should_stop, shared,
                                             file_tokens)) as steps:
            for step in steps:
                tokens += step.tokens
                new = reader.feed(detok.text[streamed:])
                streamed = len(detok.text)
                if step.finish_reason is None:
                    yield EditStep(new, reader.chars, _copy(step.stats), attempt.number)
                    continue
                final = reader.result(complete=step.finish_reason == "stop")
                return Result(final, step.finish_reason, _copy(step.stats), tokens, attempt.number)
        raise JobError("internal", "the decoding loop ended without a finish reason")

    def complete(self, completion: Completion,
                 should_stop: Callable[[], bool] = lambda: False) -> Iterator[CompletionStep | CompletionResult]:
        """Continue a chat or a raw prompt (engine/completion.py); yields CompletionSteps
        while decoding, then one CompletionResult. The same decoding as ``edit``, with
        the prediction as a lookup source besides the prompt.

        Raises JobError before the first event for input it cannot handle."""
        if why := self.method_unavailable(completion.method):
            raise JobError("unknown_method", f"method {completion.method!r} is not available: {why}")
        text = render(self.tokenizer, completion)
        ids = self.tokenizer(text, add_special_tokens=completion.messages is None)["input_ids"]
        prediction = self.tokenizer(completion.prediction, add_special_tokens=False)["input_ids"]
        room = self.loaded_target.context_tokens - len(ids)
        if room < (completion.max_tokens or 1):
            raise JobError("context_overflow", f"the prompt ({len(ids)} tokens) plus the reply "
                              f"({completion.max_tokens or 1}) exceeds the model's context of "
                              f"{self.loaded_target.context_tokens} tokens")
        detok = Detokenizer(self.tokenizer)
        stop = StopRule(self.eos, "", completion.max_tokens or room, tuple(completion.stop))
        streamed = 0
        tokens: list[int] = []
        with contextlib.closing(self._decode(EncodedPrompt(ids, prediction=prediction), detok, stop,
                                             completion.method, completion.options, should_stop,
                                             expected_tokens=len(prediction) or None)) as steps:
            for step in steps:
                tokens += step.tokens
                if step.finish_reason is None:
                    safe = max(safe_length(detok.text, completion.stop), streamed)
                    yield CompletionStep(detok.text[streamed:safe], _copy(step.stats))
                    streamed = safe
                    continue
                cut = stop_string_at(detok.text, completion.stop)
                usage = prediction_usage(prediction, tokens)
                yield CompletionResult(detok.text[:cut], step.finish_reason, _copy(step.stats), tokens, usage)

    def _decode(self, prompt: EncodedPrompt, detok: Detokenizer, stop: StopRule, method: str,
                options: DecodingOptions, should_stop: Callable[[], bool],
                shared: Sequence[int] = (), expected_tokens: int | None = None) -> Iterator[DecodeStep]:
        """The decoding loop on the loaded models, reusing and then filing the prompt's KV
        cache; its prefill is fed on the grid with the end of ``shared`` (the warm prefix
        of the file being edited) as its shared point, and only the grid's part is filed:
        that is what a cold prefill computes the same. ``expected_tokens``: about how long
        the reply will be, if known (a second target weighs it). Steps count the draft
        model's passes too."""
        ids = prompt.ids
        grid = self._grid(ids, shared)
        models_in_use = self._models
        self.prefix_cache.reuse(models_in_use, ids)
        strategy = strategies.make(method, options, self.draft_model, self.eos, self.target_cost, self.draft_cost,
                                    prompt)
        draft_passes = self.draft_model.forward_passes if self.draft_model else 0
        # plain greedy stays on the chosen target: it is the reference the other methods match
        handover = Handover(self.second, here=self.target_cost, expected_tokens=expected_tokens) \
            if self.second and method != "regular" else None
        try:
            for step in generate(self.target_model, strategy, ids, detok, stop, should_stop, grid, handover):
                if self.draft_model:
                    step.stats.draft_forward_passes = self.draft_model.forward_passes - draft_passes
                if step.finish_reason and step.stats.handover_tokens:
                    log.info("moved to the second target after %d of %d tokens: its passes cost less there",
                             step.stats.handover_tokens, step.stats.tokens)
                yield step
        except torch.OutOfMemoryError as exc:
            raise JobError("model_error", f"out of memory while decoding: {exc}") from exc
        finally:
            settled = self.target_model.settled
            self.prefix_cache.remember(models_in_use, ids[:min(settled, grid.shared or settled)])

    def _grid(self, ids: Sequence[int], shared: Sequence[int]) -> Grid:
        """The prefill grid of a prompt that begins with ``shared`` (a warm prefix), if it does."""
        starts = len(shared) < len(ids) and common_prefix_length(ids, shared) == len(shared)
        return Grid(self.prefill_chunk_tokens, len(shared) if starts else 0)

    def warm(self, text: str, *, path: str = "", language: str | None = None,
             should_stop: Callable[[], bool] = lambda: False) -> int:
        """Prefill the prompt prefix every edit of ``text`` shares (system message and
        file) into the target's and the draft's caches, on the grid the file's edits
        prefill it on (``prefill_chunk_tokens`` a forward pass, the last piece ending at
        the prefix's end), polling ``should_stop`` before each pass; file what was
        prefilled in the prefix cache. Returns how many prefix tokens both caches now
        hold (0: nothing to warm)."""
        prefix = self.warm_prefix(text, path, language)
        if len(prefix) < MIN_REUSE_TOKENS:
            return 0
        if len(prefix) + 256 > self.loaded_target.context_tokens:
            log.info("not warming a file of %d prompt tokens: too large for the context", len(prefix))
            return 0
        grid = Grid(self.prefill_chunk_tokens, len(prefix))  # as the file's edits will prefill it
        models_in_use = self._models
        if all(self.prefix_cache.held(i, m, prefix) >= len(prefix) for i, m in enumerate(models_in_use)):
            return len(prefix)  # already cached: nothing to do
        self.prefix_cache.reuse(models_in_use, prefix)
        for model in models_in_use:
            model.keep_settled(prefix, grid)
        try:
            while not should_stop():  # one piece at a time, to whichever model is furthest behind
                model = min(models_in_use, key=lambda m: len(m.tokens))
                if len(model.tokens) >= len(prefix):
                    break
                model.feed_settled(prefix, grid)
        except torch.OutOfMemoryError as exc:
            raise JobError("model_error", f"out of memory while warming: {exc}") from exc
        finally:
            held = min(min(len(m.tokens), len(prefix)) for m in models_in_use)
            self.prefix_cache.remember(models_in_use, prefix[:held])
        return held

    def warm_prefix(self, text: str, path: str = "", language: str | None = None) -> list[int]:
        """The prompt tokens that every edit of ``text`` begins with, whole-file or region:
        system message and file, less the last few tokens before the instruction part."""
        prompt = prompts.build(text, "", path, language)
        chat = self.tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
        encoded = self.tokenizer(chat, add_special_tokens=False, return_offsets_mapping=True)
        end = prompt.context_end(chat)
        inside = sum(1 for _, stop in encoded["offset_mapping"] if stop <= end)
        return encoded["input_ids"][:max(inside - WARM_MARGIN_TOKENS, 0)]

    def encode(self, prompt: prompts.EditPrompt) -> EncodedPrompt:
        """The prompt's tokens, how many of them run through the fence that closes the file
        (prompt lookup copies no further: the reply ends there), and the first token lookups
        may copy (the region's fence, for a region edit)."""
        chat = self.tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
        chat += prompt.reply_prefix
        encoded = self.tokenizer(chat, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        file_end, source_start = prompt.file_end(chat), prompt.copy_start(chat)
        copy_end = sum(1 for start, _ in offsets if start < file_end)
        copy_start = sum(1 for _, stop in offsets if stop <= source_start) if source_start else 0
        return EncodedPrompt(encoded["input_ids"], copy_end, copy_start)


def _load_second(spec: str, setting: calibration.Setting, target: models.LoadedModel, device: str | None,
                 threads: int | None) -> models.LoadedModel | None:
    """The target's weights on ``setting`` as well, if the memory left holds twice the
    target's weights (a second setting is at most twice as large: fp32 beside bf16)."""
    weights, available = models.weights_bytes(target), models.memory_available()
    if available is not None and available < 2 * weights:
        log.warning("not loading the target on %s as well: %.1f GiB of memory free, %.1f GiB wanted; "
                    "every edit stays on %s", setting, available / 2**30, 2 * weights / 2**30, target.runtime)
        return None
    try:
        return calibration.load_on(spec, setting, device, threads)
    except models.ModelError as exc:
        log.warning("not moving edits to %s on %s: %s", spec, setting, exc)
        return None


def _info(loaded: models.LoadedModel) -> ModelInfo:
    return ModelInfo(spec=loaded.spec, runtime=loaded.runtime, device=loaded.device,
                     dtype=loaded.dtype, context_tokens=loaded.context_tokens)


def _copy(stats: Stats) -> Stats:
    return msgspec.structs.replace(stats)
