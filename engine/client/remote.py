"""Edits streamed from an OpenAI-compatible serving engine (vLLM, SGLang, llama.cpp's server).

``RemoteEngineClient`` is an ``EngineBackend`` (engine/client/backend.py): its
``edit()`` yields the daemon's messages (Started, Progress, then one Done or Error),
so the language server and ``blazedit edit`` use it unchanged; engine/client/connect.py's
``engine_client`` returns it for an ``openai:URL`` address. No
torch here: the language server imports it. The `openai` SDK speaks the API (SSE
parsing, typed HTTP errors, timeouts, retries with backoff that honours Retry-After).

The prompt is engine/client/prompts.py's ``build()``: the same messages as the local engine
(a region's too), file before instruction, so a server's prefix caching reuses
"system + file". The reply expected of the model (the file in its fence) goes as
``prediction`` (OpenAI's Predicted Outputs; `blazedit engine serve --openai` copies
from it): once per client, the first reply tells whether the server uses it (its usage
counts accepted prediction tokens) or refuses it (a 400, then the request is sent again
without); a server that refuses or ignores it is not sent it again. Its
``reply_prefix`` (the pre-opened fence) is not sent: a trailing assistant message is
continued only by some servers (vLLM and SGLang with ``continue_final_message``,
llama.cpp's own server), while llama-cpp-python's chat formats close it and open a
new assistant turn, and a server that ignores the flag would do the same silently.
The model opens the fence itself (the prompt asks for one code block) and
``ReplyReader`` takes the file from inside it.

Robustness: the SDK retries (connection errors, 408/409/429/5xx) only until a
response starts, so never after a token. A stream that breaks, times out or ends
without a finish reason ends with an Error, never a Done with part of a file.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import AsyncIterator

import msgspec
import openai

import engine
from engine.client import protocol
from engine.client.address import API_KEY_ENVS, OPENAI_PREFIX, AddressError, parse_openai, read_api_key
from engine.client.attempts import Attempt, EditAttempts, JobStream, Reply
from engine.client.backend import EngineBackend
from engine.client.errors import EngineUnavailable, JobError
from engine.client.prompts import EditPrompt, reply_reader

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
"""Longest silence between two chunks, the first included: a busy server queues the
request and then reads the whole file before its first token."""
RETRIES = 2
"""The SDK's, before a response starts (with exponential backoff)."""
PROGRESS_INTERVAL = 0.05
PROBE_CHUNKS = 8
"""Chunks read past the file's closing fence while the server's use of `prediction` is not
known: its usage comes with the last chunk, a token or two later when the model stops there."""
SAMPLING = {"temperature": 0.0}
EXTRA_SAMPLING = {"repeat_penalty": 1.0}
"""llama-cpp-python's server penalises repeats by 1.1 unless told otherwise, which
is neither greedy decoding nor good for a file that is mostly copied; vLLM and
SGLang ignore the field (vLLM logs that it did)."""


class RemoteEngineClient(EngineBackend):
    """The ``EngineBackend`` of an ``openai:URL`` server."""

    warms = False  # the API cannot prefill without generating; such servers cache prefixes of their own
    manages = False  # a server blazedit does not run

    def __init__(self, address: str, *, model: str | None = None, api_key: str | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT,
                 retries: int = RETRIES, client_name: str = "blazedit-lsp"):
        try:
            self.base_url = parse_openai(address)
        except AddressError as exc:
            raise EngineUnavailable(f"bad engine address {address!r}: {exc}") from None
        self.address = OPENAI_PREFIX + self.base_url
        self.requested_model = model
        self.log_path = None  # the server's log is wherever it runs
        self._api_key = api_key or read_api_key()
        self._sdk = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self._api_key or "none", max_retries=retries,
            timeout=openai.Timeout(read_timeout, connect=connect_timeout),
            default_headers={"User-Agent": f"{client_name}/{engine.version()}"})
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._welcome: protocol.Welcome | None = None
        self._since = time.monotonic()
        self._jobs: dict[str, RemoteJob] = {}
        self.predicting: bool | None = None  # whether the server uses `prediction` (None: not known yet)

    def __repr__(self) -> str:  # the key must never reach a log
        key = "<hidden>" if self._api_key else None
        return f"RemoteEngineClient(url={self.base_url!r}, model={self.requested_model!r}, api_key={key})"

    @property
    def welcome(self) -> protocol.Welcome | None:
        return self._welcome

    # ------------------------------------------------------------ public API

    async def connect(self) -> protocol.Welcome:
        """Ask the server for its models (a no-op once done): the served model when none
        was named, or a clear error when the named one is not served."""
        if self._welcome is None:
            self._welcome = await self._probe()
        return self._welcome

    async def edit(self, edit: protocol.Edit) -> AsyncIterator[protocol.Message]:
        """Stream a job's messages. Leaving the loop early closes the stream."""
        welcome = await self.connect()
        if edit.job_id in self._jobs:
            raise ValueError(f"job id {edit.job_id!r} is already running on this client")
        job = self._jobs[edit.job_id] = RemoteJob(self, edit, welcome.target.spec)
        try:
            async for message in job.run():
                yield message
        finally:
            self._jobs.pop(edit.job_id, None)
            await job.stop()

    async def warm(self, text: str, *, path: str = "", language: str | None = None,
                   document: str | None = None) -> None:
        """Nothing: the OpenAI API has no way to prefill a prompt without generating, and
        such servers keep their own prefix caches (vLLM's, SGLang's), filled by the edits."""

    async def cancel(self, job_id: str) -> None:
        """Close a job's stream (vLLM and SGLang then abort the request); it ends with Done(cancelled)."""
        if (job := self._jobs.get(job_id)) is not None:
            job.cancel()

    async def status(self) -> protocol.StatusReply:
        """The server's model (asked again, so this checks it answers) and this client's jobs."""
        welcome = await self._probe()
        jobs = [protocol.JobInfo(job_id=j.edit.job_id, document=j.edit.document, state="running", tokens=j.tokens)
                for j in self._jobs.values()]
        return protocol.StatusReply(
            version=welcome.version, pid=0, uptime_seconds=time.monotonic() - self._since, target=welcome.target,
            draft=None, jobs=jobs, clients=1, cache_entries=0, cache_bytes=0, cache_budget_bytes=0,
            address=self.address)

    async def shutdown(self) -> None:
        raise EngineUnavailable(f"{self.address} is a server blazedit does not run; stop it where it runs")

    async def close(self) -> None:
        for job in list(self._jobs.values()):
            job.cancel()
        await self._sdk.close()

    # ------------------------------------------------------------ internals

    async def _probe(self) -> protocol.Welcome:
        """GET /models. A server that lists none (some gateways answer 404) is
        still usable when the model is named."""
        try:
            cards = [m async for m in self._sdk.models.list()]
        except openai.NotFoundError:
            if not self.requested_model:
                raise EngineUnavailable(
                    f"{self.base_url}/models is not found (404): check that the URL ends with the API's base "
                    f"(usually /v1), or name the model (setting engineModel, --engine-model)") from None
            cards = []
        except openai.APIStatusError as exc:
            raise EngineUnavailable(describe_http_error(self.base_url, exc)[1]) from None
        except openai.APIConnectionError as exc:
            raise EngineUnavailable(self._unreachable(exc)) from None
        served = [card.id for card in cards]
        model = self.requested_model or (served[0] if served else None)
        if model is None:
            raise EngineUnavailable(f"the server at {self.base_url} serves no model")
        if served and model not in served:
            raise EngineUnavailable(f"the server at {self.base_url} does not serve {model!r}; it serves "
                                    f"{', '.join(served)} (setting engineModel, --engine-model)")
        context = next((getattr(card, "max_model_len", None) for card in cards if card.id == model), None)
        log.info("%r serves %s", self, model)
        info = protocol.ModelInfo(spec=model, runtime="openai", device=self.base_url, dtype="remote",
                                  context_tokens=context or 0)  # vLLM's model cards say max_model_len
        return protocol.Welcome(protocol=protocol.PROTOCOL_VERSION, version=engine.version(), target=info, draft=None)

    def _unreachable(self, exc: openai.APIConnectionError) -> str:
        if isinstance(exc, openai.APITimeoutError):
            return (f"the server at {self.base_url} did not answer in time (connect timeout {self.connect_timeout:g} s, "
                    f"read timeout {self.read_timeout:g} s; after {self._sdk.max_retries} retries): it may be overloaded")
        cause = exc.__cause__ or exc
        return (f"cannot reach the server at {self.base_url} ({cause}; after {self._sdk.max_retries} retries): "
                f"is it running, and is the URL right?")


class RemoteJob:
    """One edit: its attempts' requests, their streams, and what the current one has read."""

    def __init__(self, client: RemoteEngineClient, edit: protocol.Edit, model: str):
        self.client, self.edit, self.model = client, edit, model
        self.span = (edit.region.start, edit.region.end) if edit.region else None
        self.predicted = self.client.predicting is not False  # sends `prediction` with this request
        self.tokens = 0
        self._outbox: list[protocol.Message] = []  # what JobStream posted, for run() to yield
        self._cancelled = asyncio.Event()
        self._stream: openai.AsyncStream | None = None

    def cancel(self) -> None:
        self._cancelled.set()

    def _drained(self) -> list[protocol.Message]:
        messages = list(self._outbox)
        self._outbox.clear()
        return messages

    async def stop(self) -> None:
        if self._stream is not None:
            await self._stream.close()  # closes the connection, which tells the server
            self._stream = None

    async def run(self) -> AsyncIterator[protocol.Message]:
        """The job's messages, attempt after attempt as engine/client/attempts.py decides;
        each stream is closed before its attempt's outcome is used (a consumer may stop at
        the last message and leave this generator unfinished)."""
        stream = JobStream(self.edit.job_id, self._outbox.append, PROGRESS_INTERVAL, rate_alone=True)
        try:
            attempts = EditAttempts.of(self.edit)
        except JobError as exc:
            yield protocol.Error(code=exc.code, message=exc.message, job_id=self.edit.job_id)
            return
        attempt = attempts.first
        while attempt is not None:
            async for item in self._read(attempt, stream):  # ends with the attempt's Reply or an Error
                if not isinstance(item, (Reply, protocol.Error)):
                    yield item
            await self.stop()
            if isinstance(item, protocol.Error):
                yield item
                return
            attempt = attempts.next(item)
        done = stream.done(attempts.final)
        for message in self._drained():  # what the Done flushed
            yield message
        yield done

    async def _read(self, attempt: Attempt, stream: JobStream) -> AsyncIterator[protocol.Message | Reply]:
        """One attempt: its messages as ``stream`` shapes them, then its Reply, or an Error."""
        self.prompt, self.attempt = attempt.prompt, attempt.number
        self.reader, self.stats, self.tokens = reply_reader(attempt.prompt, prefilled=False), protocol.Stats(), 0
        job_id, started_at = self.edit.job_id, time.monotonic()
        if attempt.number > 1:  # tells a consumer to start the file again
            stream.step("", 0, protocol.Stats(), attempt.number)
            for message in self._drained():
                yield message
        try:
            self._stream = await self._unless_cancelled(self._open_with_fallback())
        except _Cancelled:
            yield self._reply("cancelled", started_at)
            return
        except openai.APIStatusError as exc:
            code, message = describe_http_error(self.client.base_url, exc)
            yield protocol.Error(code=code, message=message, job_id=job_id)
            return
        except openai.APIConnectionError as exc:
            raise EngineUnavailable(f"{self.client._unreachable(exc)}; nothing was applied") from None
        finish, chunks, past_end = None, aiter(self._stream), 0
        try:
            while not self.reader.closed or self._probing(past_end):
                try:
                    chunk = await self._unless_cancelled(anext(chunks))
                except StopAsyncIteration:
                    break
                past_end += self.reader.closed
                if chunk.usage:
                    self._count(chunk.usage)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish = choice.finish_reason or finish
                if choice.delta.content is None:  # (a chunk with "" is a token that ends inside a character)
                    continue
                if not self.tokens:
                    self.stats.first_token_seconds = self.stats.prefill_seconds = time.monotonic() - started_at
                self.tokens += 1
                stream.step(self.reader.feed(choice.delta.content), self.reader.chars, self._timed(started_at),
                            attempt.number)
                for message in self._drained():
                    yield message
        except _Cancelled:
            yield self._reply("cancelled", started_at)
            return
        except Exception as exc:  # noqa: BLE001 - boundary: whatever broke the stream (the SDK does not
            if finish is None:    # wrap its HTTP library's read errors), nothing is applied
                yield self._broken(self._why(exc))
                return
            log.debug("job %s: error after the finish reason, ignored", job_id, exc_info=True)
        if self.reader.closed or finish == "stop":
            yield self._reply("stop", started_at)
        elif finish == "length":
            yield self._reply("length", started_at)
        elif finish is None:
            yield self._broken("the stream ended without a finish reason: the server stopped or dropped it")
        else:
            yield protocol.Error(code="model_error", job_id=job_id,
                                 message=f"the server ended the reply with finish_reason {finish!r}; nothing was applied")

    def _probing(self, past_end: int) -> bool:
        """Whether to read on past the closing fence, for the usage chunk that says what
        the server does with `prediction` (once per client, PROBE_CHUNKS at most)."""
        return self.predicted and self.client.predicting is None and past_end < PROBE_CHUNKS

    async def _open_with_fallback(self):
        """The stream; sent again without ``prediction`` when a server that was not known
        to take it refuses the request (OpenAI refuses it for some models, a strict
        server for any unknown field)."""
        try:
            return await self._open()
        except openai.APIStatusError as exc:
            if not (self.predicted and self.client.predicting is None and exc.status_code in (400, 422)):
                raise
            log.info("%s refused the request with `prediction` (%d: %s); sending none from now on",
                     self.client.base_url, exc.status_code, _detail(exc))
            self.client.predicting = self.predicted = False
            return await self._open()

    def _open(self):
        extra = {"max_tokens": self.edit.options.max_new_tokens} if self.edit.options.max_new_tokens else {}
        if self.predicted:
            extra["prediction"] = {"type": "content", "content": expected_reply(self.prompt, self.edit.text, self.span)}
        return self.client._sdk.chat.completions.create(
            model=self.model, messages=self.prompt.messages, stream=True, stream_options={"include_usage": True},
            extra_body=EXTRA_SAMPLING, **SAMPLING, **extra)

    def _count(self, usage) -> None:
        """Token counts from the usage chunk (servers that send one: vLLM, SGLang, llama.cpp's
        server), and whether the server used the prediction."""
        self.stats.prompt_tokens = usage.prompt_tokens or 0
        prompt_details = getattr(usage, "prompt_tokens_details", None)
        self.stats.cached_tokens = getattr(prompt_details, "cached_tokens", None) or 0
        self.tokens = max(self.tokens, usage.completion_tokens or 0)
        if self.predicted:
            completion_details = getattr(usage, "completion_tokens_details", None)
            accepted = getattr(completion_details, "accepted_prediction_tokens", None)
            if self.client.predicting is None:
                self.client.predicting = accepted is not None
                log.info("%s %s `prediction`", self.client.base_url, "uses" if accepted is not None else "ignores")
            if accepted is not None:
                log.info("job %s: %d prediction tokens accepted, %s rejected", self.edit.job_id, accepted,
                         getattr(completion_details, "rejected_prediction_tokens", None))

    async def _unless_cancelled(self, awaitable):
        """``awaitable``'s result, unless the job is cancelled first (then _Cancelled)."""
        work = asyncio.ensure_future(awaitable)
        cancelled = asyncio.ensure_future(self._cancelled.wait())
        try:
            await asyncio.wait({work, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if not work.done() or work.cancelled():
            raise _Cancelled
        return work.result()

    def _timed(self, started_at: float) -> protocol.Stats:
        self.stats.tokens = self.tokens
        self.stats.seconds = time.monotonic() - started_at
        return msgspec.structs.replace(self.stats)

    def _reply(self, finish_reason: protocol.FinishReason, started_at: float) -> Reply:
        text = self.reader.result(complete=finish_reason == "stop")
        return Reply(text, finish_reason, self._timed(started_at), self.attempt)

    def _why(self, exc: Exception) -> str:
        if isinstance(exc, openai.APITimeoutError):
            return f"no data from the server for {self.client.read_timeout:g} s"
        cause = f" ({exc.__cause__!r})" if exc.__cause__ else ""
        return f"{type(exc).__name__}: {exc}{cause}"

    def _broken(self, why: str) -> protocol.Error:
        log.warning("job %s: the stream from %s broke after %d tokens: %s", self.edit.job_id, self.client.base_url,
                    self.tokens, why)
        return protocol.Error(code="model_error", job_id=self.edit.job_id,
                              message=f"the stream from {self.client.base_url} broke after {self.tokens} tokens "
                                      f"({why}); nothing was applied")


class _Cancelled(Exception):
    """The job was cancelled while waiting for the server."""


def expected_reply(prompt: EditPrompt, text: str, span: tuple[int, int] | None) -> str:
    """The reply of a model that changes nothing: what it rewrites (the file or the
    region) in the prompt's fence; a good prediction for an edit that copies most of it."""
    rewritten = (text[span[0]:span[1]] if span else text).replace("\r\n", "\n").rstrip("\n")
    return f"{prompt.reply_prefix}{rewritten}\n{prompt.fence}\n"


def describe_http_error(base_url: str, exc: openai.APIStatusError) -> tuple[protocol.ErrorCode, str]:
    """A protocol error code and a message that says what to do."""
    status, detail = exc.status_code, _detail(exc)
    where = f"the server at {base_url}"
    if status in (401, 403):
        keys = " or ".join(f"${name}" for name in API_KEY_ENVS)
        return "unauthorized", (f"{where} refused the API key ({status}: {detail}): set {keys} to a key it accepts "
                                "in the environment of the editor or `blazedit`")
    if status == 404:
        return "model_error", (f"{where} answered 404 ({detail}): check that the URL ends with the API's base "
                               "(usually /v1) and that engineModel / --engine-model names a model it serves")
    if status == 429:
        return "busy", f"{where} is rate-limiting or its queue is full (429: {detail}); retry later"
    if status >= 500:
        return "model_error", f"{where} failed ({status}: {detail}); see its log"
    if re.search(r"context|too long|maximum.*tokens", detail, re.IGNORECASE):
        return "context_overflow", f"the file does not fit the served model's context ({status}: {detail})"
    return "bad_request", f"{where} refused the request ({status}: {detail})"


def _detail(exc: openai.APIStatusError) -> str:
    """The server's own message, short."""
    body = exc.body
    if isinstance(body, dict):
        body = body.get("message") or body.get("detail") or body.get("error") or body
    text = str(body if body else exc.response.reason_phrase)
    return text if len(text) <= 300 else text[:299] + "…"
