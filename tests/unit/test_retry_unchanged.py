"""An edit whose reply is the file unchanged is asked for once more, the model first
saying what it will change (Engine.edit's ``retry_unchanged``), on a scripted model."""

from dataclasses import dataclass

import pytest

from engine import models

from engine.client import prompts
from engine.client.protocol import Region
from engine.decoding.cost import ForwardCost
from engine.local_engine import Engine, EditStep, Result

TOK = models.byte_tokenizer()
EOS = TOK.eos_token_id
ASSISTANT = "<|im_start|>assistant\n"

BEFORE = "def total(prices):\n    return sum(prices)\n\n\ndef mean(prices):\n    return total(prices) / len(prices)\n"
AFTER = BEFORE.replace("prices", "amounts")
PLAN = "I will rename prices to amounts in both functions.\n"


@dataclass
class Snapshot:
    tokens: list[int]

    @property
    def length(self) -> int:
        return len(self.tokens)

    nbytes = 0


class ChatScriptedRuntime:
    """A 'model' whose reply to a chat depends on its prompt: ``reply(prompt_text)`` is
    the assistant's whole message (EOS after it), whatever the prompt pre-opened."""

    name = "scripted"
    context_tokens = 1 << 20

    def __init__(self, reply):
        self.reply = reply
        self.tokens: list[int] = []
        self.prompts: list[str] = []  # every prompt it answered, in order

    @property
    def cached(self) -> int:
        return len(self.tokens)

    def forward(self, tokens, keep):
        self.tokens += tokens
        text = TOK.decode(self.tokens)
        if ASSISTANT not in text:  # a chunk of the prefill: its choices are not read
            return [EOS] * keep
        head = text[: text.index(ASSISTANT) + len(ASSISTANT)]  # the prompt has one: causal, whatever follows
        if head not in self.prompts:
            self.prompts.append(head)
        script = TOK(head + self.reply(head), add_special_tokens=False)["input_ids"] + [EOS]
        n = len(self.tokens)
        return [script[i + 1] if i + 1 < len(script) else EOS for i in range(n - keep, n)]

    def truncate(self, length):
        del self.tokens[length:]

    def snapshot(self, length):
        return Snapshot(self.tokens[:length])

    def restore(self, snapshot):
        self.tokens = list(snapshot.tokens)


def engine_answering(monkeypatch, first: str, second: str) -> tuple[Engine, ChatScriptedRuntime]:
    """An engine whose target (and draft) writes ``first`` to the usual prompt and ``second``
    to the plan-first one; the target's runtime is returned too."""
    runtimes = []

    def open_runtime(loaded):
        runtimes.append(ChatScriptedRuntime(lambda prompt: second if prompts.PLAN_FIRST in prompt else first))
        return runtimes[-1]

    monkeypatch.setattr("engine.local_engine.open_runtime", open_runtime)
    loaded = models.LoadedModel(spec="scripted", runtime="scripted", model=None, tokenizer=TOK, device="cpu",
                                dtype="none", context_tokens=ChatScriptedRuntime.context_tokens, eos={EOS})
    return Engine(loaded, loaded, costs=(ForwardCost.flat(), ForwardCost.flat(0.01))), runtimes[0]


def fenced(text: str) -> str:
    return f"```python\n{text}```"


def run(engine: Engine, **kwargs) -> tuple[list[EditStep], Result]:
    *steps, result = engine.edit(BEFORE, "rename prices to amounts", path="stats.py", **kwargs)
    return steps, result


@pytest.mark.parametrize("method", ["regular", "pld", "assisted", "blazedit"])
def test_an_unchanged_reply_is_asked_for_again_plan_first(monkeypatch, method):
    engine, runtime = engine_answering(monkeypatch, fenced(BEFORE), PLAN + fenced(AFTER) + "\nDone.")
    steps, result = run(engine, method=method)
    assert result.text == AFTER and result.finish_reason == "stop" and result.attempt == 2
    assert len(runtime.prompts) == 2 and prompts.PLAN_FIRST in runtime.prompts[1]
    first = [s for s in steps if s.attempt == 1]
    second = [s for s in steps if s.attempt == 2]
    assert first and BEFORE.startswith("".join(s.text for s in first))  # (the last pass's text is in the Result)
    assert steps[len(first)] == EditStep("", 0, steps[len(first)].stats, 2)  # the restart comes first
    streamed = "".join(s.text for s in second)
    assert AFTER.startswith(streamed) and PLAN.strip() not in streamed
    assert [s.chars for s in second] == [sum(len(x.text) for x in second[: i + 1]) for i in range(len(second))]
    assert result.tokens == TOK(PLAN + fenced(AFTER), add_special_tokens=False)["input_ids"]  # stops at the fence


def test_an_unchanged_second_reply_is_the_result(monkeypatch):
    engine, runtime = engine_answering(monkeypatch, fenced(BEFORE), PLAN + fenced(BEFORE))
    _, result = run(engine)
    assert result.text == BEFORE and result.attempt == 2 and len(runtime.prompts) == 2


@pytest.mark.parametrize("case", ["off", "changed", "region", "no instruction"])
def test_no_second_attempt(monkeypatch, case):
    first = fenced(AFTER if case == "changed" else BEFORE)
    if case == "region":
        first = fenced("def total(prices):\n")
    engine, runtime = engine_answering(monkeypatch, first, PLAN + fenced("x = 1\n"))
    kwargs = {"off": {"retry_unchanged": False}, "region": {"region": Region(start=0, end=BEFORE.index("\n") + 1)}}
    instruction = "" if case == "no instruction" else "rename prices to amounts"
    *steps, result = engine.edit(BEFORE, instruction, path="stats.py", **kwargs.get(case, {}))
    assert result.attempt == 1 and all(s.attempt == 1 for s in steps) and len(runtime.prompts) == 1
    assert prompts.PLAN_FIRST not in runtime.prompts[0]


def test_a_cancel_during_the_first_attempt_asks_nothing_more(monkeypatch):
    engine, runtime = engine_answering(monkeypatch, fenced(BEFORE), PLAN + fenced(AFTER))
    *_, result = engine.edit(BEFORE, "rename prices to amounts", should_stop=lambda: True)
    assert result.finish_reason == "cancelled" and result.attempt == 1 and len(runtime.prompts) <= 1
