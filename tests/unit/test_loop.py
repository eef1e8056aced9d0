"""Stop rules of the decoding loop, on a scripted model whose greedy reply is fixed."""

import pytest

from engine import models

from engine.client import prompts
from engine.client.protocol import DecodingOptions
from engine.decoding import strategies
from engine.decoding.cached_model import CachedModel
from engine.decoding.cost import ForwardCost
from engine.decoding.lookup import EncodedPrompt
from engine.decoding.loop import Detokenizer, StopRule, generate, stop_string_at

TOK = models.byte_tokenizer()
EOS = TOK.eos_token_id


class ScriptedRuntime:
    """A 'model' that writes ``reply`` after ``prompt`` (and EOS after that), whatever it is fed."""

    name = "scripted"
    context_tokens = 1 << 20

    def __init__(self, prompt: list[int], reply: list[int]):
        self.script = prompt + reply
        self.tokens: list[int] = []

    @property
    def cached(self):
        return len(self.tokens)

    def forward(self, tokens, keep):
        self.tokens += tokens
        n = len(self.tokens)
        return [self.script[i + 1] if i + 1 < len(self.script) else EOS for i in range(n - keep, n)]

    def truncate(self, length):
        del self.tokens[length:]


def ids(text: str) -> list[int]:
    return TOK(text, add_special_tokens=False)["input_ids"]


# llama.cpp's T(k) for the 1.5B on 2 cores (seconds): only likely proposals pay
CPU = ForwardCost({1: 0.046, 2: 0.077, 4: 0.118, 8: 0.254, 16: 0.403, 32: 0.694, 64: 1.176})
# PyTorch bf16, same model and cores: a pass costs ~0.2 s up to ~16 tokens, then ~7 ms a token
TORCH_CPU = ForwardCost({1: 0.2, 4: 0.194, 16: 0.258, 64: 0.526, 256: 1.765})


def decode(method: str, prompt_text: str, reply_text: str, draft_reply: str | None = None, max_new=1000,
           costs=(ForwardCost.flat(), ForwardCost.flat(0.01)), copy_end: int | None = None, prediction: str = "",
           fence: str = "```", stop: tuple[str, ...] = ()):
    """Passes cost by default the same whatever their length, and a draft step a hundredth of a target pass."""
    prompt, reply = ids(prompt_text), ids(reply_text)
    target = CachedModel(ScriptedRuntime(prompt, reply))
    draft = CachedModel(ScriptedRuntime(prompt, ids(draft_reply if draft_reply is not None else reply_text)))
    strategy = strategies.make(method, DecodingOptions(), draft, {EOS}, *costs,
                               EncodedPrompt(prompt, copy_end, prediction=ids(prediction)))
    detok = Detokenizer(TOK)
    steps = list(generate(target, strategy, prompt, detok, StopRule({EOS}, fence, max_new, stop)))
    steps[-1].stats.draft_forward_passes = draft.forward_passes  # the caller counts them, as Engine.edit does
    return detok, steps


@pytest.mark.parametrize("method", ["regular", "pld", "assisted", "blazedit"])
def test_stops_at_the_closing_fence(method):
    body = "def f():\n    return 1\n"
    detok, steps = decode(method, f"```python\n{body}```\nEdit it.\n```python\n", body + "```\nDone!\n" * 3)
    assert steps[-1].finish_reason == "stop"
    assert detok.text == body + "```"
    assert prompts.build(body, "x").file_from_reply(detok.text) == body


@pytest.mark.parametrize("method", ["regular", "pld", "assisted", "blazedit"])
def test_stops_at_eos_without_emitting_it(method):
    detok, steps = decode(method, "prompt ", "abc abc abc")
    assert detok.text == "abc abc abc"
    assert steps[-1].finish_reason == "stop"
    assert EOS not in [t for s in steps for t in s.tokens]


@pytest.mark.parametrize("method", ["regular", "pld", "assisted", "blazedit"])
def test_length_limit_cuts_at_the_same_token(method):
    detok, steps = decode(method, "copy: aaaa bbbb cccc\n", "aaaa bbbb cccc aaaa", max_new=9)
    assert (detok.text, steps[-1].finish_reason) == ("aaaa bbbb", "length")


def test_blazedit_copies_in_long_drafts_each_verified_in_one_pass():
    body = "".join(f"line_{i} = {i}\n" for i in range(30))
    detok, steps = decode("blazedit", f"```\n{body}```\nx\n```\n", body + "```")
    assert detok.text == body + "```"
    stats = steps[-1].stats
    assert stats.target_forward_passes <= 2 + len(body) // 256  # prefill, then lookups of up to 256 tokens
    assert stats.accepted >= len(body) - 4


@pytest.mark.parametrize("method", ["pld", "blazedit"])
def test_a_prediction_is_copied_as_the_prompt_would_be(method):
    body = "".join(f"line_{i} = {i}\n" for i in range(30))
    passes = {}
    for prediction in ("", body):
        detok, steps = decode(method, "Rewrite the file.\n", body, prediction=prediction, fence="")
        assert detok.text == body and steps[-1].finish_reason == "stop"
        passes[prediction] = steps[-1].stats.target_forward_passes
    assert passes[body] * 4 < passes[""]


@pytest.mark.parametrize("method", ["regular", "blazedit"])
def test_stop_strings_end_the_reply_at_the_token_that_completes_one(method):
    detok, steps = decode(method, "x\n", "alpha beta STOP gamma", fence="", stop=("STOP", "never"))
    assert detok.text == "alpha beta STOP" and steps[-1].finish_reason == "stop"
    assert stop_string_at(detok.text, ("never", "STOP", "beta")) == len("alpha ")


@pytest.mark.parametrize("method", ["pld", "blazedit"])
def test_copying_verifies_nothing_past_the_files_closing_fence(method):
    body = "".join(f"line_{i} = {i}\n" for i in range(30))
    prompt = f"```\n{body}```\nNow the instruction, which the reply does not copy.\n```\n"
    wasted = {}
    for copy_end in (None, len(ids(f"```\n{body}```"))):
        detok, steps = decode(method, prompt, body + "```", copy_end=copy_end)
        assert detok.text == body + "```"
        wasted[copy_end] = steps[-1].stats.drafted - steps[-1].stats.accepted
    assert wasted.pop(None) > 4  # the last lookup ran on into the instruction
    assert list(wasted.values()) == [0]


def test_lookups_within_a_stretch_after_a_miss_have_their_own_estimate():
    """Edits cluster, so how lookups fare soon after a miss is learnt apart from steady copying."""
    lookup = strategies.Lookup(DecodingOptions(), TORCH_CPU)
    assert lookup.estimate is lookup.copying  # a job starts by copying
    lookup.verified(proposed=40, accepted=10)  # a miss: an edit
    assert lookup.estimate is lookup.editing
    lookup.verified(proposed=5, accepted=5)
    assert lookup.estimate is lookup.resuming
    lookup.verified(proposed=60, accepted=60)  # 65 tokens copied since the miss
    assert lookup.estimate is lookup.copying


def test_blazedit_draft_disagreeing_with_the_target_still_gives_the_target_output():
    body = "alpha beta gamma delta\n"
    detok, _ = decode("blazedit", f"```\n{body}```\n```\n", "alpha BETA gamma delta\n```", draft_reply=body + "```")
    assert detok.text == "alpha BETA gamma delta\n```"


def test_detokenizer_never_splits_a_character():
    detok = Detokenizer(TOK)
    pieces = [detok.add(t) for t in ids("é😀x")]
    assert "".join(pieces) == "é😀x"
    assert all("\ufffd" not in p for p in pieces)


def test_blazedit_leaves_the_draft_model_alone_while_the_file_is_copied_unchanged():
    body = "".join(f"value_{i} = {i}\n" for i in range(20))
    detok, steps = decode("blazedit", f"```\n{body}```\nx\n```\n", body + "```")
    assert detok.text == body + "```"
    assert steps[-1].stats.draft_forward_passes == 0


def test_blazedit_engages_the_draft_model_after_a_rejected_lookup():
    body = "".join(f"value_{i} = {i}\n" for i in range(20))
    edited = body.replace("value_10 = 10", "value_10 = 'ten'")
    detok, steps = decode("blazedit", f"```\n{body}```\nx\n```\n", edited + "```")
    assert detok.text == edited + "```"
    assert steps[-1].stats.draft_forward_passes > 0


def test_blazedit_skips_the_draft_model_when_catching_it_up_costs_more_than_it_saves():
    """The draft has read nothing of the prompt yet: where feeding it costs half a target
    pass per token, reading ~300 tokens to help write one short edit does not pay."""
    body = "".join(f"value_{i} = {i}\n" for i in range(20))
    edited = body.replace("value_10 = 10", "value_10 = 'ten'")
    costly_catch_up = ForwardCost({1: 0.01, 2: 0.5})
    detok, steps = decode("blazedit", f"```\n{body}```\nx\n```\n", edited + "```",
                          costs=(ForwardCost.flat(), costly_catch_up))
    assert detok.text == edited + "```"
    assert steps[-1].stats.draft_forward_passes == 0


@pytest.mark.parametrize("method", ["pld", "blazedit"])
def test_lookup_resumes_copying_after_an_edit_where_passes_are_costly(method):
    """Under CPU costs a lookup after a miss rarely pays, so nothing is proposed in an edit;
    the unproposed lookups are still checked against what the target writes, and once
    they match again, copying resumes."""
    body = "".join(f"value_{i} = {i}\n" for i in range(40))
    edited = body.replace("value_10 = 10", "value_10 = 'a new value entirely'")
    detok, steps = decode(method, f"```\n{body}```\nx\n```\n", edited + "```", costs=(CPU, CPU))
    assert detok.text == edited + "```"
    stats = steps[-1].stats
    assert stats.accepted > len(body) * 0.8  # the untouched 30 lines after the edit are copied too
    assert stats.target_forward_passes < 60


@pytest.mark.parametrize("method", ["regular", "pld", "blazedit"])
def test_a_reply_that_opens_its_own_fence_stops_at_the_fence_after_it(method):
    body = "def f():\n    return 2\n"
    reply = "I will return 2, not 1.\n```python\n" + body + "```\nDone!\n"
    prompt, target_reply = ids("```python\ndef f():\n    return 1\n```\nEdit it.\n"), ids(reply)
    target = CachedModel(ScriptedRuntime(prompt, target_reply))
    strategy = strategies.make(method, DecodingOptions(), CachedModel(ScriptedRuntime(prompt, target_reply)), {EOS},
                               ForwardCost.flat(), ForwardCost.flat(0.01))
    detok = Detokenizer(TOK)
    steps = list(generate(target, strategy, prompt, detok, StopRule({EOS}, "```", 1000, opens_fence=True)))
    assert steps[-1].finish_reason == "stop" and detok.text == reply[: reply.index(body) + len(body) + 3]
    assert prompts.file_start(detok.text, "```") == reply.index(body)
