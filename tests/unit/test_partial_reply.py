"""A reply that is part of the file (engine/client/merge.py), in Engine.edit: merged by item,
or written into the whole file by an apply pass; on a scripted model, and the apply pass
on the tiny random model, lossless as every edit."""

import pytest

from engine import models

from engine.client import merge, prompts
from engine.client.protocol import METHODS, DecodingOptions, Partial
from engine.decoding.cost import ForwardCost
from engine.local_engine import Engine, Result
from tests.unit.test_retry_unchanged import EOS, PLAN, TOK, ChatScriptedRuntime, fenced

BEFORE = ("import math\n\nSCALE = 2\n\n\ndef total(prices):\n    return sum(prices)\n\n\n"
          "def mean(prices):\n    return total(prices) / len(prices)\n")
MEAN = "def mean(prices):\n    return math.fsum(prices) / len(prices)\n"
MERGED = BEFORE.replace("total(prices) / len", "math.fsum(prices) / len")


def engine_answering(monkeypatch, first: str, second: str = "", applied: str = "") -> tuple[Engine, list]:
    """An engine whose model writes ``first`` to the usual prompt, ``second`` to the
    plan-first one and ``applied`` to an apply pass; the prompts it answered are returned."""
    runtimes = []

    def reply(prompt: str) -> str:
        return applied if "An earlier reply gave only" in prompt else second if prompts.PLAN_FIRST in prompt else first

    def open_runtime(loaded):
        runtimes.append(ChatScriptedRuntime(reply))
        return runtimes[-1]

    monkeypatch.setattr("engine.local_engine.open_runtime", open_runtime)
    loaded = models.LoadedModel(spec="scripted", runtime="scripted", model=None, tokenizer=TOK, device="cpu",
                                dtype="none", context_tokens=ChatScriptedRuntime.context_tokens, eos={EOS})
    return Engine(loaded, loaded, costs=(ForwardCost.flat(), ForwardCost.flat(0.01))), runtimes[0].prompts


def test_a_partial_reply_is_merged_into_the_file(monkeypatch):
    engine, asked = engine_answering(monkeypatch, fenced(MEAN))
    *_, result = engine.edit(BEFORE, "use fsum in mean", path="stats.py")
    assert result.text == MERGED and result.attempt == 1 and len(asked) == 1
    assert result.partial == Partial(how="merged", items=["mean()"])


def test_a_partial_second_attempt_is_merged_too(monkeypatch):
    engine, asked = engine_answering(monkeypatch, fenced(BEFORE), PLAN + fenced(MEAN))
    *_, result = engine.edit(BEFORE, "use fsum in mean", path="stats.py")
    assert result.text == MERGED and result.attempt == 2 and result.partial.how == "merged" and len(asked) == 2


def test_a_partial_reply_that_changes_nothing_is_asked_for_again(monkeypatch):
    """Merged, a copy of part of the file is the file unchanged: the second attempt follows."""
    unchanged_part = "def mean(prices):\n    return total(prices) / len(prices)\n"
    engine, asked = engine_answering(monkeypatch, fenced(unchanged_part), PLAN + fenced(MEAN))
    *_, result = engine.edit(BEFORE, "use fsum in mean", path="stats.py")
    assert result.text == MERGED and result.attempt == 2 and result.partial.how == "merged" and len(asked) == 2


def test_an_ambiguous_partial_reply_gets_an_apply_pass(monkeypatch):
    sketch = "def mean(prices):\n    return math.fsum(prices) / len(prices\n"  # does not parse
    engine, asked = engine_answering(monkeypatch, fenced(sketch), applied=fenced(MERGED))
    *steps, result = engine.edit(BEFORE, "use fsum in mean", path="stats.py")
    assert result.text == MERGED and result.attempt == 2 and result.partial == Partial(how="apply_pass")
    assert len(asked) == 2 and sketch.rstrip() in asked[1] and asked[1].index("SCALE") < asked[1].index(sketch)
    assert any(s.attempt == 2 for s in steps) and isinstance(result, Result)


def test_no_apply_pass_without_retries(monkeypatch):
    sketch = "def mean(prices):\n    return math.fsum(prices) / len(prices\n"
    engine, asked = engine_answering(monkeypatch, fenced(sketch), applied=fenced(MERGED))
    *_, result = engine.edit(BEFORE, "use fsum in mean", path="stats.py", retry_unchanged=False)
    assert result.text == sketch and result.partial is None and len(asked) == 1  # the guard tells the user


@pytest.fixture(scope="module")
def tiny():
    target = models.load("tiny-random", runtime="torch")
    return Engine(target, target, costs=(ForwardCost.flat(), ForwardCost.flat(1e-9)))


def test_the_apply_pass_on_the_tiny_model_gives_every_method_the_greedy_tokens(tiny, monkeypatch):
    """The tiny model never writes a partial reply: every first reply is taken for one."""
    monkeypatch.setattr(merge, "partial_edit", lambda text, *args: merge.Sketch(None, []) if args[-2] != text else None)
    text = "import os\n\n\ndef f(x):\n    return x + 1\n"
    results = {}
    for method in METHODS:
        tiny.forget()
        *_, results[method] = tiny.edit(text, "refactor", path="t.py", method=method,
                                        options=DecodingOptions(max_new_tokens=48))
    reference = results["regular"]
    assert reference.attempt == 2 and reference.partial == Partial(how="apply_pass")
    for method, result in results.items():
        assert (result.tokens, result.text, result.attempt) == (reference.tokens, reference.text, 2), method
