"""Scores a runtime reports, batch invariance on llama.cpp, and where two outputs part."""

import importlib.util

import numpy as np
import pytest

from engine import models
from engine.decoding import divergence

RUNTIMES = ["torch", pytest.param("llama.cpp", marks=pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"))]
TOKENS = [int(t) for t in np.random.default_rng(0).integers(3, 250, 80)]


def _runtime(name):
    from engine.local_engine import open_runtime

    return open_runtime(models.load("tiny-random", runtime=name, threads=1))


@pytest.mark.parametrize("name", RUNTIMES)
def test_logits_agree_with_the_greedy_choices(name):
    runtime = _runtime(name)
    choices = runtime.forward(TOKENS[:20], keep=5)
    runtime.truncate(0)
    scores = runtime.logits(TOKENS[:20], keep=5)
    assert scores.shape[0] == 5 and scores.dtype == np.float32
    assert scores.argmax(axis=1).tolist() == choices
    assert runtime.cached == 20


def test_llama_cpp_passes_score_exactly_as_one_token_steps(tmp_path):
    """Batch invariance (llama_runtime's docstring): with the float16 cache real models use,
    a pass over k tokens gives bit-identical scores to k one-token steps. Fails on a
    llama.cpp built with llamafile's sgemm (the README's install turns it off)."""
    pytest.importorskip("llama_cpp")
    from engine.runtimes.llama_runtime import REBUILD, LlamaRuntime, LlamaWeights, batch_invariant
    from engine.tiny_gguf import write_tiny_gguf

    assert batch_invariant(), f"llama-cpp-python was built with llamafile's sgemm; rebuild it: {REBUILD}"

    model, tok = models._tiny_random(0)
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(model, tok, path)
    runtime = LlamaRuntime(LlamaWeights(str(path), threads=2))  # float16 cache, as for real models
    prompt, rest = TOKENS[:48], TOKENS[48:]
    runtime.forward(prompt, keep=1)
    single = np.concatenate([runtime.logits([t], keep=1) for t in rest])
    for k in (2, 5, 8, 32):
        runtime.truncate(len(prompt))
        batched = np.concatenate([runtime.logits(rest[i:i + k], keep=len(rest[i:i + k])) for i in range(0, len(rest), k)])
        assert np.array_equal(batched, single), f"a {k}-token pass scores differently from one-token steps"


def test_first_divergence():
    assert divergence.first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert divergence.first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert divergence.first_divergence([1, 2, 3], [1, 2]) == 2


@pytest.mark.parametrize("name", RUNTIMES)
def test_measure_reports_the_contested_tokens_and_their_gaps(name):
    runtime = _runtime(name)
    prompt, reference = TOKENS[:30], TOKENS[30:60]
    assert divergence.measure(runtime, prompt, reference, list(reference), end=0) is None
    other = [*reference[:20], 7, *reference[21:]]
    found = divergence.measure(runtime, prompt, reference, other, end=0)
    assert (found.index, found.ours, found.theirs) == (20, reference[20], 7)
    assert runtime.cached == 0
    scores = runtime.logits([*prompt, *reference[:20]], keep=1)[-1]  # the position choosing token 20
    assert found.gap_batched == pytest.approx(float(scores[reference[20]] - scores[7]), abs=1e-3)
    assert found.gap == max(abs(found.gap_single), abs(found.gap_batched))
    shorter = divergence.measure(runtime, prompt, reference, reference[:25], end=0)
    assert (shorter.index, shorter.theirs) == (25, 0)  # the shorter one ended there
