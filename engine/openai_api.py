"""The OpenAI-compatible HTTP face of the engine daemon (Starlette on uvicorn).

``POST /v1/chat/completions`` (with Predicted Outputs), ``POST /v1/completions`` and
``GET /v1/models``, served next to the native socket by the same daemon: jobs go to
the same Service, so an editor and an OpenAI client share one engine and one queue.
Each request is one job, submitted once its body is valid (a bad request never
reaches the queue), and dropped, queued or running, when its client disconnects:
a running job stops at its next forward pass.

Security as for the native socket: loopback unless a token is set; with a token,
every request needs ``Authorization: Bearer TOKEN``. Bodies are limited in size.
Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Union

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from engine.client import protocol
from engine.client.address import Address, AddressError, token_matches
from engine.completion import Completion
from engine.openai_schema import (AssistantMessage, ChatChoice, ChatChunk, ChatCompletion, ChatRequest, ChunkChoice,
                                  CompletionRequest, CompletionTokensDetails, Delta, ErrorBody, ErrorResponse, Model,
                                  ModelList, PromptTokensDetails, TextChoice, TextCompletion, Usage, text_of,
                                  unsupported)
from engine.local_engine import CompletionResult, CompletionStep
from engine.service import Service

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
GRACEFUL_SHUTDOWN_SECONDS = 5
STATUS = {"bad_request": 400, "context_overflow": 400, "unknown_method": 400, "unauthorized": 401,
          "too_large": 413, "busy": 429, "shutting_down": 503}  # any other engine error: 500
Event = Union[CompletionStep, CompletionResult, protocol.Done, protocol.Error]


class APIError(Exception):
    """Answered as OpenAI's error object with ``status``."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    @classmethod
    def from_engine(cls, event: protocol.Error | protocol.Done) -> "APIError":
        """A job's end that is not a result: an Error, or a Done of a job cancelled from elsewhere."""
        if isinstance(event, protocol.Done):
            return cls(503, "the job was cancelled", "cancelled")
        return cls(STATUS.get(event.code, 500), event.message, event.code)

    def body(self) -> ErrorResponse:
        kind = ("invalid_request_error" if self.status < 500 and self.status != 429
                else "rate_limit_error" if self.status == 429 else "server_error")
        return ErrorResponse(error=ErrorBody(message=self.message, type=kind, param=self.param, code=self.code))

    def response(self) -> Response:
        return Response(msgspec.json.encode(self.body()), self.status, media_type="application/json")


@dataclass(frozen=True)
class Settings:
    token: str | None = None  # required as a bearer token when set
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


class HttpJob:
    """One request's job in the Service; its events arrive on a queue, on the loop thread.
    The job is the Service's owner key, so ``drop`` ends it whatever state it is in."""

    def __init__(self, service: Service, completion: Completion):
        self.service = service
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        service.submit(self, self._receive, completion)

    def _receive(self, event: Event | protocol.Queued) -> None:
        if not isinstance(event, protocol.Queued):  # waiting is not news to an HTTP client
            self.events.put_nowait(event)

    async def next(self, disconnected: asyncio.Future) -> Event | None:
        """The next event, steps that arrived together merged into one; None once the client is gone."""
        get = asyncio.ensure_future(self.events.get())
        await asyncio.wait({get, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        if not get.done():
            get.cancel()
            return None
        event = get.result()
        while isinstance(event, CompletionStep) and not self.events.empty():
            later = self.events.get_nowait()
            event = CompletionStep(event.text + later.text, later.stats) if isinstance(later, CompletionStep) else later
        return event

    def drop(self) -> None:
        self.service.drop_owner(self)


def create_app(service: Service, settings: Settings = Settings()) -> Starlette:
    api = _Api(service, settings)
    routes = [Route("/v1/chat/completions", api.chat, methods=["POST"]),
              Route("/v1/completions", api.completions, methods=["POST"]),
              Route("/v1/models", api.models, methods=["GET"])]
    handlers = {APIError: _api_error, HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, exception_handlers=handlers)


class _Api:
    def __init__(self, service: Service, settings: Settings):
        self.service, self.settings = service, settings
        engine = service.engine
        self.method = next(m for m in ("blazedit", "pld", "regular") if not engine.method_unavailable(m))

    @property
    def model(self) -> str:
        return self.service.engine.target.spec

    async def models(self, request: Request) -> Response:
        self._authorize(request)
        engine = self.service.engine
        specs = [engine.target.spec] + ([engine.draft.spec] if engine.draft else [])
        return _json(ModelList(data=[Model(id=spec) for spec in dict.fromkeys(specs)]))

    async def chat(self, request: Request) -> Response:
        body = await self._read(request, ChatRequest)
        prediction = text_of(body.prediction.content) if body.prediction else ""
        messages = [{"role": m.role, "content": text_of(m.content)} for m in body.messages]
        completion = Completion(job_id=f"chatcmpl-{uuid.uuid4().hex}", messages=messages, prediction=prediction,
                                max_tokens=body.token_limit, stop=body.stop_strings, method=self.method,
                                document=f"openai {_peer(request)}")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await self._answer(request, completion, body.stream, _ChatFormat(completion.job_id, self.model,
                                                                                include_usage))

    async def completions(self, request: Request) -> Response:
        body = await self._read(request, CompletionRequest)
        completion = Completion(job_id=f"cmpl-{uuid.uuid4().hex}", prompt=body.text, max_tokens=body.max_tokens,
                                stop=body.stop_strings, method=self.method, document=f"openai {_peer(request)}")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await self._answer(request, completion, body.stream, _TextFormat(completion.job_id, self.model,
                                                                                include_usage))

    async def _read(self, request: Request, schema: type[ChatRequest] | type[CompletionRequest]):
        """The request's body as ``schema``: authorized, within the size limit, valid."""
        self._authorize(request)
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise APIError(413, f"the request body is {declared} bytes; this server accepts at most {limit}",
                           "too_large")
        raw = bytearray()
        try:
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > limit:
                    raise APIError(413, f"the request body exceeds {limit} bytes", "too_large")
        except ClientDisconnect:
            raise APIError(400, "the client disconnected while sending the request", "disconnected") from None
        try:
            body = msgspec.json.decode(raw, type=schema)
        except msgspec.ValidationError as exc:
            raise APIError(400, f"invalid request: {exc}", "invalid_request") from None
        except msgspec.DecodeError as exc:
            raise APIError(400, f"the request body is not valid JSON: {exc}", "invalid_json") from None
        if problem := unsupported(body):
            raise APIError(400, problem[1], "unsupported_parameter", problem[0])
        return body

    def _authorize(self, request: Request) -> None:
        token = self.settings.token
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token_matches(given.strip(), token):
            log.warning("refused an OpenAI API request from %s: missing or wrong token", _peer(request))
            raise APIError(401, "missing or wrong API key (send Authorization: Bearer TOKEN)", "invalid_api_key")

    async def _answer(self, request: Request, completion: Completion, stream: bool, fmt: "_Format") -> Response:
        """Submit the job, wait for its first event (a refusal or an engine error is then
        still an HTTP status), then stream or collect the rest."""
        job = HttpJob(self.service, completion)
        disconnected = asyncio.ensure_future(_disconnect(request))
        try:
            first = await job.next(disconnected)
            if first is None:
                return Response(status_code=499)  # nobody reads it
            if isinstance(first, (protocol.Error, protocol.Done)):
                raise APIError.from_engine(first)
            if stream:
                response = _JobStream(fmt.stream(_events(job, first, disconnected)), job, disconnected)
                disconnected = None  # the response owns the job now
                return response
            event = first
            while isinstance(event, CompletionStep):
                event = await job.next(disconnected)
            if event is None:
                return Response(status_code=499)
            if isinstance(event, (protocol.Error, protocol.Done)):
                raise APIError.from_engine(event)
            return _json(fmt.whole(event))
        finally:
            if disconnected is not None:
                disconnected.cancel()
                job.drop()


class _JobStream(StreamingResponse):
    """Server-sent events that end the job however the response ends (Starlette cancels
    the stream when the client disconnects, perhaps before its first chunk)."""

    def __init__(self, chunks: AsyncIterator[bytes], job: HttpJob, disconnected: asyncio.Future):
        super().__init__(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.job, self.disconnected = job, disconnected

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.disconnected.cancel()
            self.job.drop()


async def _events(job: HttpJob, first: Event, disconnected: asyncio.Future) -> AsyncIterator[Event]:
    """The job's events from ``first`` to its terminal one, or until the client goes."""
    event: Event | None = first
    while event is not None:
        yield event
        if not isinstance(event, CompletionStep):
            return
        event = await job.next(disconnected)


class _Format:
    """How one endpoint writes an answer (whole, or as server-sent events)."""

    def __init__(self, job_id: str, model: str, include_usage: bool):
        self.job_id, self.model, self.include_usage = job_id, model, include_usage
        self.created = int(time.time())

    def whole(self, result: CompletionResult):
        raise NotImplementedError

    def chunk(self, text: str | None, finish_reason: str | None = None, usage: Usage | None = None,
              first: bool = False):
        raise NotImplementedError

    async def stream(self, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
        yield _sse(self.chunk("", first=True))
        streamed = 0
        async for event in events:
            if isinstance(event, CompletionStep):
                if event.text:
                    yield _sse(self.chunk(event.text))
                    streamed += len(event.text)
                continue
            if not isinstance(event, CompletionResult):
                yield _sse(APIError.from_engine(event).body())
                return
            if event.text[streamed:]:
                yield _sse(self.chunk(event.text[streamed:]))
            yield _sse(self.chunk(None, event.finish_reason))
            if self.include_usage:
                yield _sse(self.chunk(None, usage=_usage(event)))
            yield b"data: [DONE]\n\n"


class _ChatFormat(_Format):
    def whole(self, result: CompletionResult) -> ChatCompletion:
        choice = ChatChoice(message=AssistantMessage(content=result.text), finish_reason=result.finish_reason)
        return ChatCompletion(id=self.job_id, created=self.created, model=self.model, choices=[choice],
                              usage=_usage(result))

    def chunk(self, text, finish_reason=None, usage=None, first=False) -> ChatChunk:
        choices = [] if usage else [ChunkChoice(delta=Delta(role="assistant" if first else None, content=text),
                                                finish_reason=finish_reason)]
        return ChatChunk(id=self.job_id, created=self.created, model=self.model, choices=choices, usage=usage)


class _TextFormat(_Format):
    def whole(self, result: CompletionResult) -> TextCompletion:
        choice = TextChoice(text=result.text, finish_reason=result.finish_reason)
        return TextCompletion(id=self.job_id, created=self.created, model=self.model, choices=[choice],
                              usage=_usage(result))

    def chunk(self, text, finish_reason=None, usage=None, first=False) -> TextCompletion:
        choices = [] if usage else [TextChoice(text=text or "", finish_reason=finish_reason)]
        return TextCompletion(id=self.job_id, created=self.created, model=self.model, choices=choices, usage=usage)


def _usage(result: CompletionResult) -> Usage:
    stats = result.stats
    return Usage(prompt_tokens=stats.prompt_tokens, completion_tokens=stats.tokens,
                 total_tokens=stats.prompt_tokens + stats.tokens,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=stats.cached_tokens),
                 completion_tokens_details=CompletionTokensDetails(
                     accepted_prediction_tokens=result.prediction.accepted,
                     rejected_prediction_tokens=result.prediction.rejected))


async def _disconnect(request: Request) -> None:
    """Returns when the client has gone (the body has been read: only a disconnect comes now)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _sse(message: msgspec.Struct) -> bytes:
    return b"data: " + msgspec.json.encode(message) + b"\n\n"


def _json(message: msgspec.Struct) -> Response:
    return Response(msgspec.json.encode(message), media_type="application/json")


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


async def _api_error(request: Request, exc: APIError) -> Response:
    return exc.response()


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return APIError(exc.status_code, exc.detail, "not_found" if exc.status_code == 404 else "bad_request").response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("OpenAI API request failed", exc_info=exc)
    return APIError(500, "internal error; see the engine daemon's log", "internal").response()


# ---------------------------------------------------------------- server


class _Server(uvicorn.Server):
    done: asyncio.Future  # the serving task

    @contextlib.contextmanager
    def capture_signals(self):
        """The daemon owns SIGTERM and SIGINT (it stops this server itself)."""
        yield


def bind(address: Address) -> socket.socket:
    """The listening socket, bound now so that a taken port is the daemon's error at start."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        return socket.create_server((address.host, address.port), family=family)
    except OSError as exc:
        raise AddressError(f"cannot listen on http://{address.host}:{address.port}: {exc.strerror or exc}") from None


async def serve(service: Service, sock: socket.socket, settings: Settings, *, max_clients: int = 64,
                started: Callable[[], None] | None = None) -> _Server:
    """Start serving on ``sock`` in this event loop; stop with ``server.should_exit = True``
    and await ``server.done``."""
    config = uvicorn.Config(create_app(service, settings), log_config=None, access_log=False,
                            limit_concurrency=max_clients, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
    server = _Server(config)
    server.done = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not server.done.done():
        await asyncio.sleep(0.01)  # uvicorn reports its start only by this flag
    if server.done.done():
        server.done.result()  # its startup failed: raise why
    if started:
        started()
    return server
