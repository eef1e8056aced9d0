"""Every decoding method emits exactly the tokens of plain greedy decoding (float32, tiny models),
on both runtimes and under both a flat and a CPU-like cost of forward passes."""

import copy
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import models

from engine.client import prompts
from engine.client.protocol import METHODS, DecodingOptions
from engine.completion import Completion
from engine.decoding.cached_model import Grid, common_prefix_length
from engine.decoding.cost import ForwardCost
from engine.decoding.loop import PREFILL_CHUNK_TOKENS
from engine.local_engine import Engine, Result

# Free: target passes cost the same whatever their length and draft steps nothing, so every
# proposal is as long as its method allows. Flat: draft steps cost 0.3 of a target pass.
# CPU: llama.cpp's T(k) for the 1.5B on 2 cores (seconds), with a draft at half that: short
# proposals pay, drafts rarely.
CPU = {1: 0.046, 2: 0.077, 4: 0.118, 8: 0.254, 16: 0.403, 32: 0.694, 64: 1.176}
COSTS = {"free": (ForwardCost.flat(), ForwardCost.flat(1e-9)),
         "flat": (ForwardCost.flat(), ForwardCost.flat(0.3)),
         "cpu": (ForwardCost(CPU), ForwardCost({k: t / 2 for k, t in CPU.items()}))}
RUNTIMES = ["torch", pytest.param("llama.cpp", marks=pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"))]

LINES = ["def f(x):", "    return x + 1", "import os", "class A:", "    pass", "# note", "x = f(2)", "print(x)", ""]


def run(engine: Engine, text: str, method: str, options: DecodingOptions, instruction="refactor") -> Result:
    *_, result = engine.edit(text, instruction, path="t.py", method=method, options=options)
    assert isinstance(result, Result)
    return result


def cold(engine: Engine, costs: str = "free") -> Engine:
    """Forget cached prefixes so each method starts from the same state."""
    engine.target_cost, engine.draft_cost = COSTS[costs]
    engine.prefix_cache = type(engine.prefix_cache)(0)
    for model in (engine.target_model, engine.draft_model):
        model.reset()
    return engine


def noisy_copy(model: torch.nn.Module) -> torch.nn.Module:
    noisy = copy.deepcopy(model)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for p in noisy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return noisy


@pytest.fixture(scope="module", params=RUNTIMES)
def engines(request, tmp_path_factory):
    """A draft that is the target itself (accepts everything) and a noisy copy (accepts some)."""
    target = models.load("tiny-random", runtime=request.param)
    if request.param == "torch":
        noisy = dataclasses.replace(target, model=noisy_copy(target.model))
    else:
        from engine.runtimes.llama_runtime import LlamaWeights
        from engine.tiny_gguf import write_tiny_gguf

        path = tmp_path_factory.mktemp("gguf") / "noisy.gguf"
        write_tiny_gguf(noisy_copy(models._tiny_random(0)[0]), target.tokenizer, path)
        noisy = dataclasses.replace(target, model=LlamaWeights(str(path), 1, float32_cache=True))
    return {draft: Engine(target, model, costs=COSTS["free"]) for draft, model in (("same", target), ("noisy", noisy))}


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(st.sampled_from(LINES), min_size=1, max_size=12),
    draft=st.sampled_from(["same", "noisy"]),
    max_ngram=st.integers(1, 10),
    num_tokens=st.integers(1, 40),
    micro=st.integers(1, 80),
    runs=st.integers(1, 4),
    cap=st.integers(1, 64),
    max_new=st.integers(1, 96),
    costs=st.sampled_from(sorted(COSTS)),
)
def test_all_methods_emit_the_greedy_tokens(engines, lines, draft, max_ngram, num_tokens, micro, runs, cap, max_new,
                                             costs):
    engine = engines[draft]
    text = "\n".join(lines) + "\n"
    options = DecodingOptions(max_new_tokens=max_new, max_ngram=max_ngram, num_tokens=num_tokens,
                              micro_draft_tokens=micro, max_num_run=runs, max_draft_tokens=cap)
    reference = run(cold(engine, costs), text, "regular", options)
    for method in METHODS[1:]:
        result = run(cold(engine, costs), text, method, options)
        assert result.tokens == reference.tokens, method
        assert (result.text, result.finish_reason) == (reference.text, reference.finish_reason), method
        assert result.stats.target_forward_passes <= reference.stats.target_forward_passes, method


@pytest.mark.parametrize("method", ["pld", "assisted", "blazedit"])
@pytest.mark.parametrize("draft", ["same", "noisy"])
def test_speculation_really_accepts_tokens(engines, method, draft):
    if method == "pld" and draft == "noisy":
        pytest.skip("pld uses no draft")
    engine = cold(engines[draft])
    text = "\n".join(LINES * 4)
    options = DecodingOptions(max_new_tokens=200)
    reference = run(engine, text, "regular", options)
    result = run(cold(engine), text, method, options)
    assert result.tokens == reference.tokens
    assert result.stats.accepted > 0
    assert result.stats.target_forward_passes < reference.stats.target_forward_passes
    if method != "pld":
        assert result.stats.draft_forward_passes > 0


def test_noisy_draft_is_partly_rejected(engines):
    """The noisy draft must disagree sometimes, or the property test would not exercise rejection."""
    engine = cold(engines["noisy"])
    result = run(engine, "\n".join(LINES * 4), "assisted", DecodingOptions(max_new_tokens=200))
    assert 0 < result.stats.accepted < result.stats.drafted


@pytest.mark.parametrize("chunk", [128, 1024], ids=["prefill-in-chunks", "prefill-in-one-pass"])
def test_cancel_stops_between_forward_passes(engines, chunk):
    """Polled before every pass, the prefill's chunks included: a cancel waits for one pass at most."""
    engine = cold(engines["same"])
    engine.prefill_chunk_tokens = chunk
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 5

    before = engine.target_model.forward_passes
    text = "x = 1\n" * 20
    events = list(engine.edit(text, "go", method="regular",
                              options=DecodingOptions(max_new_tokens=500), should_stop=should_stop))
    grid = Grid(chunk, len(engine.warm_prefix(text)))  # pieces end at multiples of chunk and where the file ends
    engine.prefill_chunk_tokens = PREFILL_CHUNK_TOKENS
    result = events[-1]
    chunks = sum(1 for n in range(1, result.stats.prompt_tokens) if grid.floor(n) == n)
    assert chunks == (4 if chunk == 128 else 1)
    assert result.finish_reason == "cancelled"
    assert engine.target_model.forward_passes - before == 5  # a pass for each poll answered "go on"
    assert result.stats.target_forward_passes == 5 - chunks  # the prefill counts as one
    assert result.stats.tokens == 5 - chunks


def test_length_limit(engines):
    result = run(cold(engines["same"]), "x = 1\n", "blazedit", DecodingOptions(max_new_tokens=7))
    assert result.finish_reason == "length"
    assert result.stats.tokens == 7


def test_prefix_reuse_gives_the_same_text(engines):
    engine = cold(engines["same"])
    engine.prefix_cache = type(engine.prefix_cache)(1 << 30)
    text = "\n".join(LINES * 3)
    options = DecodingOptions(max_new_tokens=50)
    first = run(engine, text, "blazedit", options, "add types")
    run(engine, "other = 2\n" * 10, "pld", options, "something else")  # the live cache now holds another file
    again = run(engine, text, "blazedit", options, "add docs")
    shared = common_prefix_length(*(engine.encode(prompts.build(text, i, "t.py")).ids for i in ("add types", "add docs")))
    assert shared > len(text)  # system message and the whole file (byte tokenizer: a token per byte)
    # restored from the prefix cache, not just the live cache, as far as the file's warm prefix: the
    # prefill grid's shared point, where every edit of the file is fed the same
    assert again.stats.cached_tokens == len(engine.warm_prefix(text, "t.py"))
    assert again.tokens == run(cold(engine), text, "blazedit", options, "add docs").tokens
    assert first.stats.cached_tokens == 0


def next_scores(engine: Engine, prompt: list[int]) -> np.ndarray:
    """The target's scores after ``prompt``, read from the cache an edit left (its last token fed anew)."""
    model = engine.target_model
    assert common_prefix_length(model.tokens, prompt) >= len(prompt) - 1
    model.crop(len(prompt) - 1)
    return model.runtime.logits(prompt[-1:], keep=1)[0]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_a_cache_holds_the_same_values_however_its_prompt_was_fed(dtype):
    """Warmed, reused from another edit's prompt, or prefilled cold: the prompt's cache is bit for
    bit the same, so is every score after it (a pass's shape changes its rounding: without the
    prefill grid, the warmed and reused caches differ from the cold one on these very models)."""
    target = models.load("tiny-random", runtime="torch", dtype=dtype)
    engine = Engine(target, costs=COSTS["free"])
    engine.prefill_chunk_tokens = 64
    text = "\n".join(LINES * 3) + "\n"
    options = DecodingOptions(max_new_tokens=8)
    prompt = engine.encode(prompts.build(text, "add docs", "t.py")).ids

    def edit() -> np.ndarray:
        run(engine, text, "pld", options, "add docs")
        return next_scores(engine, prompt)

    engine.prefix_cache = type(engine.prefix_cache)(1 << 30)
    cold_scores = edit()
    engine.forget()
    assert engine.warm(text, path="t.py") > 64
    warmed_scores = edit()
    engine.forget()
    run(engine, text, "pld", options, "add types")  # another prompt of the same file, filed in the prefix cache
    engine.target_model.reset()
    reused_scores = edit()
    engine.forget()
    assert engine.warm(text + "y = 3\n", path="t.py") > 64  # the file with a line since deleted: another shared point
    after_a_change_scores = edit()
    np.testing.assert_array_equal(warmed_scores, cold_scores)
    np.testing.assert_array_equal(reused_scores, cold_scores)
    np.testing.assert_array_equal(after_a_change_scores, cold_scores)


def test_lookups_copy_no_further_than_the_files_closing_fence(engines):
    prompt = prompts.build("x = 1\n", "add types", "t.py")
    encoded = engines["same"].encode(prompt)
    assert engines["same"].tokenizer.decode(encoded.ids[:encoded.copy_end]).endswith("```python\nx = 1\n```")


@pytest.mark.parametrize("draft", ["same", "noisy"])
def test_a_prediction_changes_no_token(engines, draft):
    """Completions with a prediction (OpenAI's Predicted Outputs) emit plain greedy decoding's tokens too."""
    engine = engines[draft]
    messages = [{"role": "user", "content": "\n".join(LINES * 3)}]

    def complete(method: str, prediction: str):
        *_, result = cold(engine).complete(Completion("j", messages=messages, prediction=prediction, max_tokens=120,
                                                      method=method))
        return result

    reference = complete("regular", "")
    for method in METHODS[1:]:
        for prediction in (messages[0]["content"], reference.text, "unrelated"):
            result = complete(method, prediction)
            assert (result.tokens, result.text) == (reference.tokens, reference.text), (method, prediction)
