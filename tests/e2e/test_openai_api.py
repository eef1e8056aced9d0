"""The OpenAI-compatible API against the official `openai` client: a real uvicorn server
on loopback, in this process (so the tests can watch the engine's jobs), on the tiny
random model; answers are checked against an in-process Engine of the same model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

pytest.importorskip("starlette", reason="needs the [openai] extra")
pytest.importorskip("uvicorn", reason="needs the [openai] extra")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from engine.client import prompts  # noqa: E402
from engine.client.address import TOKEN_ENV, Address, AddressError, parse_http  # noqa: E402
from engine.client.prompts import ReplyReader  # noqa: E402
from engine.client.protocol import DecodingOptions, Done, Edit, Progress, Started  # noqa: E402
from engine.client.remote import RemoteEngineClient  # noqa: E402
from engine.completion import Completion, prediction_usage  # noqa: E402
from engine.daemon import ServeOptions  # noqa: E402
from engine.decoding.cost import ForwardCost  # noqa: E402
from engine.local_engine import CompletionResult, Engine  # noqa: E402
from engine.openai_api import Settings, bind, serve  # noqa: E402
from engine.service import Service  # noqa: E402
from tests.e2e.daemon_harness import TIMEOUT, DaemonProcess, free_port  # noqa: E402

TOKEN = "s3cret-token"
MAX_BODY = 64 * 1024
FILE = '''class Inventory:
    def __init__(self):
        self.items = {}

    def add(self, name, count):
        self.items[name] = self.items.get(name, 0) + count

    def remove(self, name, count):
        self.items[name] -= count
'''


class ApiServer:
    """The Service and the OpenAI API on one event loop in a thread, as in the daemon.
    ``results`` records every completion job's end as the engine reports it."""

    def __init__(self, engine: Engine, settings: Settings, max_queue: int = 64):
        self.engine, self.settings, self.max_queue = engine, settings, max_queue
        self.results: list[CompletionResult] = []
        self.ended = threading.Condition()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self.thread.start()
        assert self.ready.wait(TIMEOUT), "the server did not start"

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.service = Service(self._recording(self.engine), max_queue=self.max_queue)
        worker = asyncio.create_task(self.service.run())
        sock = bind(Address(host="127.0.0.1", port=0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        self.stopping = asyncio.Event()
        server = await serve(self.service, sock, self.settings, started=self.ready.set)
        await self.stopping.wait()
        self.service.close()
        server.should_exit = True
        await asyncio.wait([server.done, worker], timeout=TIMEOUT)

    def _recording(self, engine: Engine) -> Engine:
        complete = engine.complete

        def recorded(*args, **kwargs):
            for event in complete(*args, **kwargs):
                if isinstance(event, CompletionResult):
                    with self.ended:
                        self.results.append(event)
                        self.ended.notify_all()
                yield event

        engine.complete = recorded
        return engine

    def wait_result(self, where) -> CompletionResult:
        with self.ended:
            assert self.ended.wait_for(lambda: any(map(where, self.results)), TIMEOUT), self.results
            return next(r for r in self.results if where(r))

    def wait_jobs(self, count: int) -> None:
        """Until ``count`` jobs are queued or running (bounded)."""
        asyncio.run_coroutine_threadsafe(asyncio.wait_for(self._jobs(count), TIMEOUT), self.loop).result()

    async def _jobs(self, count: int) -> None:
        while len(self.service.job_infos()) != count:
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(TIMEOUT)


@pytest.fixture(scope="module")
def server():
    engine = Engine.load("tiny-random", threads=1)
    # Fixed costs (as test_lossless's "flat"): proposal lengths, and so forward passes, do not vary from run to run
    engine.target_cost, engine.draft_cost = ForwardCost.flat(), ForwardCost.flat(0.3)
    running = ApiServer(engine, Settings(token=TOKEN, max_body_bytes=MAX_BODY))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def reference():
    """The same model in this thread, never touched by the server."""
    engine = Engine.load("tiny-random", threads=1)

    def complete(**kwargs) -> CompletionResult:
        *_, result = engine.complete(Completion(job_id="reference", **kwargs))
        return result

    complete.engine = engine
    return complete


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server.url, api_key=TOKEN, max_retries=0, timeout=TIMEOUT) as c:
        yield c


def chat(i: int = 0) -> list[dict]:
    return [{"role": "system", "content": "You are terse."}, {"role": "user", "content": f"Question {i}: why?"}]


def test_models_lists_target_and_draft(client):
    assert [m.id for m in client.models.list()] == ["tiny-random"]  # the draft is the target's own weights


def test_chat_completion_answers_as_the_engine_does(client, reference):
    answer = client.chat.completions.create(model="tiny-random", messages=chat(), max_tokens=24,
                                            temperature=0.7, top_p=0.9, seed=1)  # accepted, ignored
    expected = reference(messages=chat(), max_tokens=24)
    (choice,) = answer.choices
    assert (choice.message.role, choice.message.content, choice.finish_reason) == ("assistant", expected.text, "length")
    assert answer.usage.completion_tokens == 24
    assert answer.usage.prompt_tokens == expected.stats.prompt_tokens
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 24
    assert answer.usage.completion_tokens_details.accepted_prediction_tokens == 0


def test_streamed_chat_completion_matches_and_ends_once(client, reference):
    chunks = list(client.chat.completions.create(model="m", messages=chat(1), max_completion_tokens=40, stream=True,
                                                 stream_options={"include_usage": True}))
    expected = reference(messages=chat(1), max_tokens=40)
    content = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(content) == expected.text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 40
    assert len({c.id for c in chunks}) == 1


def test_stop_strings_end_the_reply_before_them(client, reference):
    full = reference(messages=chat(2), max_tokens=60).text
    stop = full[20:23]
    for stream in (False, True):
        answer = client.chat.completions.create(model="m", messages=chat(2), max_tokens=60, stop=[stop], stream=stream)
        if stream:
            parts = [(c.choices[0].delta.content or "", c.choices[0].finish_reason) for c in answer if c.choices]
            text, finish = "".join(p for p, _ in parts), [f for _, f in parts if f][0]
        else:
            text, finish = answer.choices[0].message.content, answer.choices[0].finish_reason
        assert (text, finish) == (full[:full.index(stop)], "stop"), stream


def test_raw_completion(client, reference):
    answer = client.completions.create(model="m", prompt="def add(a, b):", max_tokens=20)
    assert answer.choices[0].text == reference(prompt="def add(a, b):", max_tokens=20).text
    streamed = client.completions.create(model="m", prompt="def add(a, b):", max_tokens=20, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == answer.choices[0].text


def test_whole_file_apply_with_prediction_matches_blazedit_edit(client, reference, server):
    """The messages of blazedit's own prompt, the reply pre-opened with its fence (a last
    assistant message is continued), the file as the prediction: the text of `blazedit edit`."""
    instruction = "add type hints"
    prompt = prompts.build(FILE, instruction, "inventory.py")
    messages = prompt.messages + [{"role": "assistant", "content": prompt.reply_prefix}]
    answer = client.chat.completions.create(model="m", messages=messages, max_tokens=200, stop=["\n" + prompt.fence],
                                            prediction={"type": "content", "content": FILE})
    *_, edit = reference.engine.edit(FILE, instruction, path="inventory.py", retry_unchanged=False,  # one request
                                     options=DecodingOptions(max_new_tokens=200))
    assert "\n" + prompt.fence not in edit.text  # a random model does not close the fence: its EOS ends the reply
    (choice,) = answer.choices
    assert (prompt.file_from_reply(choice.message.content), choice.finish_reason) == (edit.text, edit.finish_reason)
    assert answer.usage.completion_tokens == len(edit.tokens)
    details = answer.usage.completion_tokens_details
    file_tokens = reference.engine.tokenizer(FILE, add_special_tokens=False)["input_ids"]
    assert details.accepted_prediction_tokens > 0
    expected = prediction_usage(file_tokens, edit.tokens)
    assert (details.accepted_prediction_tokens, details.rejected_prediction_tokens) == (expected.accepted,
                                                                                        expected.rejected)
    assert details.accepted_prediction_tokens + details.rejected_prediction_tokens == len(file_tokens)


async def test_engine_serve_openai_is_an_openai_url_engine(server, reference):
    """`engine: "openai:URL"` (engine/client/remote.py) pointed at this server, with the daemon's
    token as the API key: the edit is what the engine answers to remote.py's request
    (blazedit's prompt, no pre-opened fence) without a prediction, read by remote.py's
    ReplyReader; remote.py sent the file as the prediction, and learnt that it is used."""
    instruction = "add type hints"
    async with RemoteEngineClient(f"openai:{server.url}", api_key=TOKEN, retries=0) as remote:
        assert remote.welcome.target.spec == "tiny-random"
        edit = Edit(job_id="remote", text=FILE, instruction=instruction, path="inventory.py",
                    options=DecodingOptions(max_new_tokens=60))
        messages = [message async for message in remote.edit(edit)]
        assert remote.predicting is True  # the usage counted the prediction it sent (lossless: same text)
    prompt = prompts.build(FILE, instruction, "inventory.py")
    expected = reference(messages=prompt.messages, max_tokens=60)
    reader = ReplyReader(prompt)
    reader.feed(expected.text)
    assert isinstance(messages[0], Started) and all(isinstance(m, Progress) for m in messages[1:-1])
    done = messages[-1]
    assert isinstance(done, Done), done
    assert (done.text, done.finish_reason) == (reader.result(complete=expected.finish_reason == "stop"),
                                               expected.finish_reason)
    assert done.stats.tokens == expected.stats.tokens == 60  # from the usage chunk


def test_a_prediction_the_reply_copies_is_accepted_and_saves_forward_passes(client, server, reference):
    plain = client.chat.completions.create(model="m", messages=chat(3), max_tokens=150, user="plain")
    text = plain.choices[0].message.content
    predicted = client.chat.completions.create(model="m", messages=chat(3), max_tokens=150,
                                               prediction={"type": "content", "content": text})
    assert predicted.choices[0].message.content == text
    without, with_prediction = [r for r in server.results if r.text == text][-2:]
    assert with_prediction.stats.target_forward_passes < without.stats.target_forward_passes * 0.8
    # The reply's bytes that are not UTF-8 come back as U+FFFD: the prediction holds
    # those characters, not the reply's tokens, and they count as rejected.
    prediction = reference.engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    expected = prediction_usage(prediction, with_prediction.tokens)
    details = predicted.usage.completion_tokens_details
    assert details.accepted_prediction_tokens == expected.accepted > 0
    assert details.rejected_prediction_tokens == expected.rejected == len(prediction) - expected.accepted


def test_closing_the_stream_cancels_the_job(client, server):
    stream = client.chat.completions.create(model="m", messages=chat(4), max_tokens=20000, stream=True)
    next(c for c in stream if c.choices and c.choices[0].delta.content)
    stream.close()
    result = server.wait_result(lambda r: r.finish_reason == "cancelled")
    assert result.stats.tokens < 20000
    server.wait_jobs(0)


def test_a_wrong_or_missing_token_is_refused(server):
    with openai.OpenAI(base_url=server.url, api_key=TOKEN[:-1], max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError) as caught:
            c.chat.completions.create(model="m", messages=chat(), max_tokens=1)
        assert caught.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
    missing = httpx.get(f"{server.url}/models", timeout=TIMEOUT)  # the SDK always sends a key
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"


def test_non_loopback_needs_a_token():
    assert parse_http("8080") == Address(host="127.0.0.1", port=8080)
    wide = ServeOptions(address=Address(path="/tmp/x.sock"), model="tiny-random", openai=parse_http("0.0.0.0:8080"))
    with pytest.raises(AddressError, match="without a token"):
        wide.check()
    ServeOptions(address=wide.address, model="tiny-random", openai=wide.openai, token="t").check()


def test_malformed_json_and_an_oversize_body_are_refused(server):
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    reply = httpx.post(f"{server.url}/chat/completions", content=b'{"messages": [', headers=headers, timeout=TIMEOUT)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_json"
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    with openai.OpenAI(base_url=server.url, api_key=TOKEN, max_retries=0) as c:
        with pytest.raises(openai.APIStatusError) as caught:
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x" * MAX_BODY}])
    assert caught.value.status_code == 413


@pytest.mark.parametrize("extra", [{"n": 2}, {"logprobs": True}, {"top_logprobs": 2}, {"frequency_penalty": 0.5},
                                   {"extra_body": {"repeat_penalty": 1.1}}, {"extra_body": {"no_such_parameter": 1}},
                                   {"messages": [{"role": "tool", "content": "x"}]}])
def test_unsupported_parameters_are_clear_400s(client, extra):
    arguments = {"model": "m", "messages": chat(), "max_tokens": 1, **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**arguments)
    assert caught.value.body["message"]


def test_a_full_queue_is_a_429_and_a_reply_beyond_the_context_a_400(client):
    small = ApiServer(Engine.load("tiny-random", threads=1), Settings(), max_queue=1)
    try:
        with openai.OpenAI(base_url=small.url, api_key="any", max_retries=0, timeout=TIMEOUT) as c:
            running = c.chat.completions.create(model="m", messages=chat(6), max_tokens=20000, stream=True)
            next(iter(running))
            waiting = []
            thread = threading.Thread(target=lambda: waiting.append(
                c.chat.completions.create(model="m", messages=chat(7), max_tokens=3)))
            thread.start()
            small.wait_jobs(2)
            with pytest.raises(openai.RateLimitError) as caught:
                c.chat.completions.create(model="m", messages=chat(8), max_tokens=3)
            assert caught.value.body["code"] == "busy"
            running.close()
            thread.join(TIMEOUT)
            assert waiting[0].usage.completion_tokens == 3
    finally:
        small.stop()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=chat(), max_tokens=40000)
    assert caught.value.body["code"] == "context_overflow"


def test_bad_requests_do_not_disturb_a_running_job(client, server, reference):
    stream = client.chat.completions.create(model="m", messages=chat(5), max_tokens=300, stream=True)
    parts = [next(c for c in stream if c.choices and c.choices[0].delta.content).choices[0].delta.content]
    for bad in ({"n": 3}, {"extra_body": {"bogus": True}}):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="m", messages=chat(), max_tokens=1, **bad)
    parts += [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(parts) == reference(messages=chat(5), max_tokens=300).text


async def test_sixteen_concurrent_clients_each_get_one_complete_answer(server, reference):
    expected = [reference(messages=chat(10 + i), max_tokens=12 + i).text for i in range(16)]

    async def one(i: int) -> tuple[str, list[str]]:
        async with openai.AsyncOpenAI(base_url=server.url, api_key=TOKEN, max_retries=0, timeout=120) as c:
            if i % 2:
                answer = await c.chat.completions.create(model="m", messages=chat(10 + i), max_tokens=12 + i)
                return answer.choices[0].message.content, [answer.choices[0].finish_reason]
            chunks = [c async for c in await c.chat.completions.create(
                model="m", messages=chat(10 + i), max_tokens=12 + i, stream=True)]
            return ("".join(c.choices[0].delta.content or "" for c in chunks),
                    [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason])

    answers = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(16))), 180)
    assert [text for text, _ in answers] == expected
    assert all(finishes == ["length"] for _, finishes in answers)


def test_engine_serve_openai_shares_the_daemon(tmp_path):
    """`blazedit engine serve --openai PORT`: the API next to the native socket; beyond
    loopback without a token it refuses to start."""
    refused = subprocess.run([sys.executable, "-m", "engine.cli", "engine", "serve", "--model", "tiny-random",
                              "--socket", str(tmp_path / "s.sock"), "--openai", "0.0.0.0:1"],
                             capture_output=True, text=True, timeout=120,
                             env={k: v for k, v in os.environ.items() if k != TOKEN_ENV})
    assert refused.returncode == 2 and "without a token" in refused.stderr
    port = free_port()
    daemon = DaemonProcess("--openai", str(port))
    try:
        daemon.wait_ready()
        daemon.wait_ready(("127.0.0.1", port))
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0) as c:
            answer = c.chat.completions.create(model="m", messages=chat(), max_tokens=5)
        assert answer.usage.completion_tokens == 5
        status = subprocess.run([sys.executable, "-m", "engine.cli", "engine", "status", "--json", "--address",
                                 str(daemon.socket)], capture_output=True, text=True, timeout=120)
        assert '"jobs_accepted":1' in status.stdout.replace(" ", ""), status.stdout + status.stderr
    finally:
        daemon.cleanup()
