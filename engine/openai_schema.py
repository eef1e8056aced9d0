"""The OpenAI-compatible API's requests and responses, as msgspec Structs.

Requests refuse unknown fields (as OpenAI does: a parameter this server would
silently ignore could change the answer). Parameters that popular clients send by
default and that cannot change a greedy answer are accepted and ignored
(``temperature``, ``top_p``, ``seed``, ``user``, ...); those that would change it are
accepted only at their neutral value (``n`` 1, no ``logprobs``, zero penalties and a
``repeat_penalty`` of 1, no tools). ``unsupported`` names the first one that is not. Torch-free.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec

Positive = Annotated[int, msgspec.Meta(ge=1)]


class Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What both endpoints accept besides their own fields."""

    model: str = ""  # not checked: every answer comes from the loaded target
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Positive | None = None
    stop: Union[str, list[str], None] = None
    n: int | None = None
    temperature: float | None = None  # ignored: the engine decodes greedily
    top_p: float | None = None  # ignored
    seed: int | None = None  # ignored: greedy decoding is deterministic
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None  # llama.cpp's; engine/client/remote.py sends 1.0 (none) to every server
    logit_bias: dict[str, float] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None

    @property
    def stop_strings(self) -> tuple[str, ...]:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return tuple(s for s in stop if s)


class StreamOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # ignored: nothing to pad


class TextPart(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: Literal["text"]
    text: str


Content = Union[str, list[TextPart]]


def text_of(content: Content | None) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content or ())


class Message(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    role: Literal["system", "developer", "user", "assistant"]
    content: Content | None = None
    name: str | None = None  # ignored


class Prediction(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """OpenAI's Predicted Outputs: text the reply is expected to copy (the file to edit)."""

    type: Literal["content"]
    content: Content


class ResponseFormat(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: Literal["text"]


class ChatRequest(Request, kw_only=True):
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    max_completion_tokens: Positive | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    prediction: Prediction | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict] | None = None
    tool_choice: Union[str, dict, None] = None
    parallel_tool_calls: bool | None = None

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(Request, kw_only=True):
    prompt: Union[str, Annotated[list[str], msgspec.Meta(min_length=1, max_length=1)]]
    max_tokens: Positive | None = 16  # OpenAI's default for this endpoint
    logprobs: int | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


def unsupported(request: ChatRequest | CompletionRequest) -> tuple[str, str] | None:
    """(parameter, why) for the first parameter whose value this server cannot honour."""
    checks = [
        ("n", (request.n or 1) != 1, "only n=1 is supported"),
        ("logprobs", bool(request.logprobs), "logprobs are not supported"),
        ("presence_penalty", bool(request.presence_penalty), "penalties are not supported (greedy decoding)"),
        ("frequency_penalty", bool(request.frequency_penalty), "penalties are not supported (greedy decoding)"),
        ("repeat_penalty", request.repeat_penalty not in (None, 1.0), "penalties are not supported (greedy decoding)"),
        ("logit_bias", bool(request.logit_bias), "logit_bias is not supported"),
    ]
    if isinstance(request, ChatRequest):
        checks += [
            ("top_logprobs", bool(request.top_logprobs), "logprobs are not supported"),
            ("tools", bool(request.tools), "tools are not supported"),
            ("tool_choice", request.tool_choice not in (None, "none", "auto"), "tools are not supported"),
        ]
    else:
        checks += [
            ("echo", request.echo, "echo is not supported"),
            ("suffix", bool(request.suffix), "suffix (fill-in-the-middle) is not supported"),
            ("best_of", (request.best_of or 1) != 1, "only best_of=1 is supported"),
        ]
    return next(((name, why) for name, bad, why in checks if bad), None)


# ---------------------------------------------------------------- responses


class PromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int = 0


class CompletionTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


FinishReason = Literal["stop", "length"]


class AssistantMessage(msgspec.Struct, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatChunk(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class TextChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    text: str
    finish_reason: FinishReason | None = None
    logprobs: None = None


class TextCompletion(msgspec.Struct, kw_only=True):
    """Both the answer and the stream chunks of /v1/completions."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class Model(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "blazedit"


class ModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorBody(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(msgspec.Struct, kw_only=True):
    error: ErrorBody
