"""A general completion job: chat messages or a raw prompt, continued by the engine.

Whole-file edits (prompts.py) are one use of the engine; the OpenAI-compatible API
(openai_api.py) asks for any continuation: a chat rendered with the model's template
(a last assistant message is continued, as the edit prompt pre-opens its fence), or a
raw prompt, with stop strings, a token limit and a prediction (OpenAI's Predicted
Outputs) that prompt lookup copies from besides the prompt. Torch-free: the HTTP side
builds these and reads the results.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Sequence

from engine.client.protocol import DecodingOptions, Method


@dataclass(frozen=True)
class Completion:
    """What to continue (``messages`` or ``prompt``) and when to stop."""

    job_id: str
    messages: list[dict] | None = None  # {"role", "content": str}; a last assistant message is continued
    prompt: str | None = None  # raw text, when there are no messages
    prediction: str = ""  # text the reply is expected to copy; "" for none
    max_tokens: int | None = None  # None: up to the end of the model's context
    stop: tuple[str, ...] = ()  # the reply ends before the first of these (not included)
    method: Method = "blazedit"
    options: DecodingOptions = field(default_factory=DecodingOptions)
    document: str | None = None  # a name for status listings (the client's address)

    @property
    def size(self) -> int:
        """Characters of input, for logs."""
        return len(self.prompt or "") + sum(len(m["content"]) for m in self.messages or ()) + len(self.prediction)


def render(tokenizer, completion: Completion) -> str:
    """The prompt text: the chat through the model's chat template (a last assistant
    message becomes the start of the reply), or the raw prompt."""
    if completion.messages is None:
        return completion.prompt or ""
    messages, prefix = completion.messages, ""
    if messages and messages[-1]["role"] == "assistant":
        messages, prefix = messages[:-1], messages[-1]["content"]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefix


def safe_length(reply: str, stop: Sequence[str]) -> int:
    """How much of a partial reply can be streamed: hold back a tail that could still
    become the start of a stop string."""
    held = max((n for s in stop for n in range(min(len(s) - 1, len(reply)), 0, -1)
                if reply.endswith(s[:n])), default=0)
    return len(reply) - held


@dataclass(frozen=True)
class PredictionUsage:
    """OpenAI's accounting of a prediction: its tokens that appear in the completion
    (in order: the longest matching blocks, as difflib finds them) and those that do not."""

    accepted: int = 0
    rejected: int = 0


def prediction_usage(prediction: Sequence[int], completion: Sequence[int]) -> PredictionUsage:
    if not prediction:
        return PredictionUsage()
    matcher = difflib.SequenceMatcher(None, list(prediction), list(completion), autojunk=False)
    accepted = sum(block.size for block in matcher.get_matching_blocks())
    return PredictionUsage(accepted, len(prediction) - accepted)
