"""engine/client/remote.py against a scripted OpenAI-compatible server (Starlette on loopback,
in the test's own event loop): what each kind of reply and failure becomes, and
the pieces (addresses, the reply reader, error messages, the key's repr)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
from pathlib import Path

import msgspec
import pytest

pytest.importorskip("uvicorn")

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from engine.client import protocol  # noqa: E402
from engine.client.address import AddressError, parse_openai  # noqa: E402
from engine.client.connect import engine_client  # noqa: E402
from engine.client.daemon_client import EngineClient  # noqa: E402
from engine.client.errors import EngineUnavailable  # noqa: E402
from engine.client.prompts import build  # noqa: E402
from engine.client.remote import RemoteEngineClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TEXT = "def f():\n    return 1\n"
EDITED = "def f() -> int:\n    return 1\n"


# ---------------------------------------------------------------- a scripted server


class Script:
    """What the server answers to each chat completion, in order: a status with a
    JSON body, or SSE chunks followed by "done" ([DONE]), "close" (the connection
    drops mid-stream) or "hang" (nothing more, until the client goes away)."""

    def __init__(self) -> None:
        self.replies: list[dict] = []
        self.requests: list[dict] = []
        self.disconnected = asyncio.Event()
        self.models = ["served-model"]

    def reply(self, *pieces: str, finish: str | None = "stop", end: str = "done", usage: dict | None = None) -> None:
        self.replies.append({"pieces": pieces, "finish": finish, "end": end, "usage": usage})

    def status(self, code: int, message: str) -> None:
        self.replies.append({"status": code, "message": message})


def chunk(content: str | None = None, finish: str | None = None, **extra) -> str:
    delta = {} if content is None else {"content": content}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "served-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body)}\n\n"


def app_for(script: Script) -> Starlette:
    async def models(request):
        if script.models is None:  # a server that accepts and never answers
            await asyncio.Event().wait()
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "x"}
                                                        for m in script.models]})

    async def completions(request):
        script.requests.append(await request.json())
        reply = script.replies.pop(0)
        if "status" in reply:
            return JSONResponse({"error": {"message": reply["message"]}}, status_code=reply["status"])

        async def events():
            try:
                yield chunk("")  # llama.cpp-style role chunk
                for piece in reply["pieces"]:
                    yield chunk(piece)
                if reply["end"] == "close":
                    raise ConnectionResetError("the scripted server drops the stream")
                if reply["end"] == "hang":
                    await asyncio.Event().wait()
                yield chunk(finish=reply["finish"]) if reply["finish"] else ""
                if reply["usage"]:
                    yield f"data: {json.dumps({'id': 'c', 'object': 'chat.completion.chunk', 'created': 0, 'model': 'served-model', 'choices': [], 'usage': reply['usage']})}\n\n"
                yield "data: [DONE]\n\n"
            except asyncio.CancelledError:
                script.disconnected.set()
                raise

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.fixture
async def server():
    script = Script()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections queue from now on: no wait for the server to start
    config = uvicorn.Config(app_for(script), log_level="critical", lifespan="off", timeout_graceful_shutdown=1)
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    script.url = f"openai:http://127.0.0.1:{sock.getsockname()[1]}/v1"
    yield script
    uv.should_exit = True
    await asyncio.wait_for(task, 10)
    sock.close()


def edit(text: str = TEXT, max_new_tokens: int | None = None) -> protocol.Edit:
    return protocol.Edit(job_id="j", text=text, instruction="add type hints", path="f.py",
                         options=protocol.DecodingOptions(max_new_tokens=max_new_tokens))


async def run(client: RemoteEngineClient, request: protocol.Edit | None = None) -> list[protocol.Message]:
    async with client:
        return [m async for m in client.edit(request or edit())]


# ---------------------------------------------------------------- streams


async def test_a_reply_becomes_started_progress_and_the_file(server):
    server.reply("Here is the file:\n", "```python\n", "def f() -> int:\n", "    return 1\n", "```\n", "Done.")
    messages = await run(RemoteEngineClient(server.url))
    assert isinstance(messages[0], protocol.Started)
    assert all(isinstance(m, protocol.Progress) for m in messages[1:-1])
    done = messages[-1]
    assert isinstance(done, protocol.Done) and done.finish_reason == "stop" and done.text == EDITED
    assert done.stats.tokens == 7  # the role chunk's "" included, and "Done." (read for a usage, see below)
    sent = server.requests[0]
    assert sent["model"] == "served-model" and sent["temperature"] == 0 and sent["stream"] is True
    assert sent["messages"] == build(TEXT, "add type hints", "f.py").messages and "max_tokens" not in sent


@pytest.mark.parametrize("retry", [True, False])
async def test_an_unchanged_reply_is_asked_for_again_plan_first(server, retry):
    server.reply("```python\n", TEXT, "```\n")
    server.reply("I will add the return type.\n", "```python\n", EDITED, "```\n")
    messages = await run(RemoteEngineClient(server.url), msgspec.structs.replace(edit(), retry_unchanged=retry))
    done = messages[-1]
    assert isinstance(done, protocol.Done) and done.finish_reason == "stop"
    if not retry:
        assert done.text == TEXT and done.attempt == 1 and len(server.requests) == 1
        return
    assert done.text == EDITED and done.attempt == 2 and len(server.requests) == 2
    assert server.requests[1]["messages"] == build(TEXT, "add type hints", "f.py", plan_first=True).messages
    progress = [m for m in messages if isinstance(m, protocol.Progress)]
    restart = next(i for i, m in enumerate(progress) if m.attempt == 2)
    assert progress[restart].text == "" and progress[restart].chars == 0
    assert EDITED.startswith("".join(m.text for m in progress[restart:]))  # (throttled: the rest is in Done)


PARTIAL_FILE = "import os\n\n\ndef f():\n    return 1\n\n\ndef g():\n    return os.sep\n"


async def test_a_partial_reply_is_merged_as_the_local_engine_merges_it(server):
    server.reply("```python\n", "def f() -> int:\n    return 1\n", "```\n")
    *_, done = await run(RemoteEngineClient(server.url), edit(PARTIAL_FILE))
    assert done.text == PARTIAL_FILE.replace("def f():", "def f() -> int:") and len(server.requests) == 1
    assert done.partial == protocol.Partial(how="merged", items=["f()"]) and done.attempt == 1


async def test_a_partial_reply_that_changes_nothing_is_asked_for_again(server):
    server.reply("```python\n", "def f():\n    return 1\n", "```\n")  # merged: the file unchanged
    server.reply("I will add the return type.\n", "```python\n", "def f() -> int:\n    return 1\n", "```\n")
    *_, done = await run(RemoteEngineClient(server.url), edit(PARTIAL_FILE))
    assert done.text == PARTIAL_FILE.replace("def f():", "def f() -> int:") and done.attempt == 2
    assert done.partial == protocol.Partial(how="merged", items=["f()"]) and len(server.requests) == 2


async def test_an_ambiguous_partial_reply_gets_an_apply_pass(server):
    server.reply("```python\n", "def f() -> int:\n    return (1\n", "```\n")  # does not parse
    server.reply("```python\n", PARTIAL_FILE.replace("def f():", "def f() -> int:"), "```\n")
    messages = await run(RemoteEngineClient(server.url), edit(PARTIAL_FILE))
    done = messages[-1]
    assert done.text == PARTIAL_FILE.replace("def f():", "def f() -> int:") and done.attempt == 2
    assert done.partial == protocol.Partial(how="apply_pass") and len(server.requests) == 2
    assert server.requests[1]["messages"] == build(PARTIAL_FILE, "add type hints", "f.py",
                                                   sketch="def f() -> int:\n    return (1\n").messages
    assert any(isinstance(m, protocol.Progress) and m.attempt == 2 and m.chars == 0 for m in messages)


async def test_line_endings_and_the_length_limit(server):
    server.reply("```python\n", "def f() -> int:\n", "    return", finish="length")
    (*_, done) = await run(RemoteEngineClient(server.url), edit(TEXT.replace("\n", "\r\n"), max_new_tokens=5))
    assert done.finish_reason == "length" and done.text == "def f() -> int:\r\n    return"
    assert server.requests[0]["max_tokens"] == 5


@pytest.mark.parametrize("end", ["close", "done"])
async def test_a_stream_that_breaks_mid_file_is_an_error_never_a_done(server, end):
    server.reply("```python\n", "def f() -> int:\n", finish=None, end=end)
    messages = await run(RemoteEngineClient(server.url))
    assert not any(isinstance(m, protocol.Done) for m in messages)
    error = messages[-1]
    assert isinstance(error, protocol.Error) and error.code == "model_error" and error.job_id == "j"
    assert "broke after 3 tokens" in error.message and "nothing was applied" in error.message


async def test_a_silent_server_times_out_with_an_error(server):
    server.reply("```python\n", finish=None, end="hang")
    (*_, error) = await run(RemoteEngineClient(server.url, read_timeout=2, retries=0))
    assert isinstance(error, protocol.Error) and "broke after 2 tokens" in error.message
    assert "no data from the server for 2 s" in error.message


async def test_cancel_closes_the_stream_and_ends_with_done_cancelled(server):
    server.reply("```python\n", "def f() -> int:\n", finish=None, end="hang")
    async with RemoteEngineClient(server.url, read_timeout=30) as client:
        messages = []
        async for message in client.edit(edit()):
            messages.append(message)
            if isinstance(message, protocol.Started):
                await client.cancel("j")
        done = messages[-1]
        assert isinstance(done, protocol.Done) and done.finish_reason == "cancelled"
        await asyncio.wait_for(server.disconnected.wait(), 10)  # the server saw the stream close


@pytest.mark.parametrize("status, code, words", [
    (401, "unauthorized", "refused the API key (401: nope): set $BLAZEDIT_API_KEY or $OPENAI_API_KEY"),
    (404, "model_error", "answered 404 (nope): check that the URL ends with the API's base"),
    (429, "busy", "is rate-limiting or its queue is full (429: nope); retry later"),
    (503, "model_error", "failed (503: nope); see its log"),
    (400, "bad_request", "refused the request (400: nope)"),
])
async def test_http_errors_say_what_to_do(server, status, code, words):
    server.status(status, "nope")
    server.status(status, "nope")  # a 400 is asked again without `prediction` (the first time): the same answer
    (error,) = await run(RemoteEngineClient(server.url, retries=0))
    assert isinstance(error, protocol.Error) and error.code == code and words in error.message, error


async def test_a_context_overflow_is_named(server):
    for _ in range(2):
        server.status(400, "This model's maximum context length is 32768 tokens")
    (error,) = await run(RemoteEngineClient(server.url, retries=0))
    assert error.code == "context_overflow"


async def test_failures_before_the_first_token_are_retried(server):
    server.status(503, "warming up")
    server.reply("```python\n", "def f() -> int:\n", "    return 1\n", "```")
    (*_, done) = await run(RemoteEngineClient(server.url, retries=1))
    assert isinstance(done, protocol.Done) and done.text == EDITED and len(server.requests) == 2


# ---------------------------------------------------------------- prediction and regions

REPLY = ("```python\n", "def f() -> int:\n", "    return 1\n", "```")
USAGE = {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}
PREDICTED = "```python\ndef f():\n    return 1\n```\n"


async def two_edits(server, usage: dict | None) -> bool | None:
    """Two edits on one client, each answered with ``usage``; what the client then
    knows of the server's use of `prediction`."""
    server.reply(*REPLY, usage=usage)
    server.reply(*REPLY, usage=usage)
    async with RemoteEngineClient(server.url, retries=0) as client:
        for _ in range(2):
            *_, done = [m async for m in client.edit(edit())]
            assert isinstance(done, protocol.Done) and done.text == EDITED
        return client.predicting


async def test_a_server_that_uses_the_prediction_is_sent_it_every_time(server):
    used = {**USAGE, "completion_tokens_details": {"accepted_prediction_tokens": 6, "rejected_prediction_tokens": 2}}
    assert await two_edits(server, used) is True
    assert [r["prediction"] for r in server.requests] == [{"type": "content", "content": PREDICTED}] * 2


@pytest.mark.parametrize("chatter, learnt", [(1, True), (20, None)])
async def test_the_usage_is_read_past_the_closing_fence_while_probing(server, chatter, learnt):
    """A reply that closes the fence and goes on: the usage is waited for a few chunks (once)."""
    used = {**USAGE, "completion_tokens_details": {"accepted_prediction_tokens": 6, "rejected_prediction_tokens": 2}}
    server.reply(*REPLY[:-1], "```\n", *["more "] * chatter, usage=used)
    async with RemoteEngineClient(server.url) as client:
        *_, done = [m async for m in client.edit(edit())]
        assert isinstance(done, protocol.Done) and done.finish_reason == "stop" and done.text == EDITED
        assert client.predicting is learnt


@pytest.mark.parametrize("usage", [USAGE, {**USAGE, "completion_tokens_details": {"reasoning_tokens": 0}}])
async def test_a_server_that_ignores_the_prediction_is_not_sent_it_again(server, usage):
    assert await two_edits(server, usage) is False
    assert "prediction" in server.requests[0] and "prediction" not in server.requests[1]


async def test_a_server_that_refuses_the_prediction_gets_the_request_again_without_it(server):
    server.status(400, "unknown field: prediction")
    assert await two_edits(server, None) is False
    assert ["prediction" in r for r in server.requests] == [True, False, False]
    assert server.requests[0]["messages"] == server.requests[1]["messages"]


TWO = "def f():\n    return 1\n\n\ndef g():\n    return 2\n"


async def test_a_region_edit_sends_the_region_prompt_and_returns_the_region(server):
    start = TWO.index("def g")
    server.reply("```python\n", "def g() -> int:\n", "    return 2\n", "```")
    request = protocol.Edit(job_id="j", text=TWO, instruction="add type hints", path="f.py",
                            region=protocol.Region(start=start, end=len(TWO)))
    (*_, done) = await run(RemoteEngineClient(server.url), request)
    assert done.text == "def g() -> int:\n    return 2\n"
    sent = server.requests[0]
    assert sent["messages"] == build(TWO, "add type hints", "f.py", region=(start, len(TWO))).messages
    assert sent["prediction"]["content"] == "```python\ndef g():\n    return 2\n```\n"


async def test_a_bad_region_is_refused_before_any_request(server):
    request = protocol.Edit(job_id="j", text=TWO, instruction="x", path="f.py", region=protocol.Region(start=3, end=9))
    (error,) = await run(RemoteEngineClient(server.url), request)
    assert isinstance(error, protocol.Error) and error.code == "bad_request" and server.requests == []


# ---------------------------------------------------------------- connecting


async def test_the_model_is_the_named_one_or_the_first_served(server):
    server.models = ["a", "b"]
    async with RemoteEngineClient(server.url) as client:
        assert client.welcome.target.spec == "a" and client.welcome.target.runtime == "openai"
        status = await client.status()
        assert status.address == server.url and status.target.spec == "a"
    async with RemoteEngineClient(server.url, model="b") as client:
        assert client.welcome.target.spec == "b"
    with pytest.raises(EngineUnavailable, match=r"does not serve 'c'; it serves a, b"):
        await RemoteEngineClient(server.url, model="c").connect()


async def test_a_server_that_never_answers_times_out_clearly(server):
    server.models = None
    with pytest.raises(EngineUnavailable, match=r"did not answer in time \(connect timeout 10 s, read timeout 0.5 s"):
        await RemoteEngineClient(server.url, read_timeout=0.5, retries=0).connect()


async def test_no_server_is_engine_unavailable_with_the_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there
    with pytest.raises(EngineUnavailable, match=rf"cannot reach the server at http://127.0.0.1:{port}/v1"):
        await RemoteEngineClient(f"openai:http://127.0.0.1:{port}/v1", retries=0).connect()


def test_the_api_key_comes_from_the_environment_and_never_shows(monkeypatch):
    monkeypatch.delenv("BLAZEDIT_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-1")
    client = RemoteEngineClient("openai:http://gpu-box:8000/v1", model="m")
    assert client._api_key == "sk-secret-1"
    monkeypatch.setenv("BLAZEDIT_API_KEY", "sk-secret-2")  # first in line
    client = RemoteEngineClient("openai:http://gpu-box:8000/v1", model="m")
    assert client._api_key == "sk-secret-2"
    assert "sk-secret" not in repr(client) and "<hidden>" in repr(client)
    assert "sk-secret" not in str(vars(client).get("address"))


def test_the_factory_picks_the_client_by_address():
    assert isinstance(engine_client("openai:http://h:1/v1", engine_model="m"), RemoteEngineClient)
    assert isinstance(engine_client("tcp://127.0.0.1:1", engine_model="m", spawn=False), EngineClient)


@pytest.mark.parametrize("text, url", [
    ("openai:http://gpu-box:8000/v1", "http://gpu-box:8000/v1"),
    ("openai:https://llm.example/api/v1/", "https://llm.example/api/v1"),
    ("openai:http://[::1]:8000/v1", "http://[::1]:8000/v1"),
])
def test_openai_addresses(text, url):
    assert parse_openai(text) == url


@pytest.mark.parametrize("text, words", [
    ("openai:gpu-box:8000", "use openai:http://HOST:PORT/v1"),
    ("openai:ftp://gpu-box/v1", "use openai:http://HOST:PORT/v1"),
    ("openai:http://user:sk-123@gpu-box/v1", "must not hold credentials"),
    ("openai:http://gpu-box:99999/v1", "bad server URL"),
    ("openai:http://gpu-box/v1?key=1", "no query"),
])
def test_bad_openai_addresses(text, words):
    with pytest.raises(AddressError, match=words):
        parse_openai(text)
    with pytest.raises(EngineUnavailable, match="bad engine address"):
        RemoteEngineClient(text)


# ---------------------------------------------------------------- bench/remote_latency.py


async def test_the_latency_bench_measures_edits_through_the_remote_client(server):
    spec = importlib.util.spec_from_file_location("remote_latency", ROOT / "bench" / "remote_latency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for _ in range(2):
        server.reply("```python\n", "def f() -> int:\n", "    return 1\n", "```\n")
    items = [{"id": name, "before": TEXT, "instruction": "add type hints", "after": EDITED, "path": "f.py"}
             for name in ("a", "b")]
    records = await bench.measure(server.url, None, items, 2, None)
    assert [r["id"] for r in records] == ["a", "b"]
    assert all(r["equals_after"] and 0 < r["ttft_s"] <= r["seconds"] and r["finish_reason"] == "stop"
               for r in records), records
    assert bench.summary(records).startswith("2 of 2 edits finished (2 equal the dataset's `after`)")
