"""The daemon's scheduling of warms (engine.service), on the tiny model: an edit pre-empts
a running warm before its next chunk and reuses what it prefilled, a newer warm of a
document replaces the older, waiting warms are bounded, and status names the warm.

The engine's warm is gated: it pauses at a chosen poll until the test releases it, so
"the edit arrived while the warm was running, with chunks left" is a fact, not a race."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine import models

from engine.client import protocol
from engine.completion import Completion
from engine.decoding.cost import ForwardCost
from engine.local_engine import CompletionResult, Engine
from engine.prefix_cache import PrefixCache
from engine.service import Service

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 30.0
CHUNK = 16
TEXT = "".join(f"value_{i} = {i} * {i}\n" for i in range(20))


class GatedEngine:
    """The engine, whose first warm pauses at its second poll (one chunk prefilled) until released."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.log: list[tuple] = []  # ("poll", document text, target passes) from the worker, ("Started", ...) etc.
        self.paused, self.release = threading.Event(), threading.Event()
        self.returned = threading.Semaphore(0)

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def warm(self, text, *, should_stop, **kwargs) -> int:
        def gate() -> bool:
            self.log.append(("poll", text, self.engine.target_model.forward_passes))
            if len(self.log) == 2:
                self.paused.set()
                assert self.release.wait(TIMEOUT)
            return should_stop()

        try:
            return self.engine.warm(text, should_stop=gate, **kwargs)
        finally:
            self.returned.release()

    def complete(self, completion, **kwargs):
        self.log.append(("complete", completion.job_id, self.engine.target_model.forward_passes))
        return self.engine.complete(completion, **kwargs)


@pytest.fixture(scope="module")
def loaded():
    return models.load("tiny-random", runtime="torch")


@pytest.fixture
def gated(loaded):
    engine = Engine(loaded, loaded, costs=(ForwardCost.flat(), ForwardCost.flat(0.3)))
    engine.prefix_cache = PrefixCache(1 << 30)
    engine.prefill_chunk_tokens = CHUNK
    return GatedEngine(engine)


async def wait(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, TIMEOUT)


async def warms_returned(gated: GatedEngine, count: int) -> None:
    for _ in range(count):
        assert await asyncio.to_thread(gated.returned.acquire, True, TIMEOUT)


async def settled(service: Service, warms_done: int) -> None:
    """Bounded wait for the loop to count the warms (it does so just after the worker returns)."""
    for _ in range(1000):
        if service.warms_done >= warms_done and service.warming is None:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"warms_done is {service.warms_done}, not {warms_done}")


def warm(text: str = TEXT, document: str = "doc") -> protocol.Warm:
    return protocol.Warm(text=text, path="v.py", document=document)


async def test_an_edit_pre_empts_a_running_warm_before_its_next_chunk_and_reuses_it(gated):
    service = Service(gated, progress_interval=0)
    runner = asyncio.create_task(service.run())
    done = asyncio.Event()

    def send(message: protocol.Message) -> None:
        gated.log.append((type(message).__name__, message))
        if isinstance(message, (protocol.Done, protocol.Error)):
            done.set()

    service.warm(warm())
    await wait(gated.paused)  # one chunk prefilled, polling before the second
    assert service.warming == "doc"
    prefix = len(gated.engine.warm_prefix(TEXT, "v.py"))
    assert prefix > 4 * CHUNK  # chunks were left to do
    submitted = gated.engine.target_model.forward_passes
    service.submit(object(), send, protocol.Edit(job_id="e", text=TEXT, instruction="x", path="v.py", method="regular",
                                                  options=protocol.DecodingOptions(max_new_tokens=4)))
    gated.release.set()
    await asyncio.wait_for(done.wait(), TIMEOUT)
    await warms_returned(gated, 2)  # pre-empted, then resumed after the edit
    await settled(service, 1)
    kinds = [entry[0] for entry in gated.log]
    started = kinds.index("Started")
    polls_before = [entry for entry in gated.log[:started] if entry[0] == "poll"]
    assert len(polls_before) == 2 and polls_before[-1][2] == submitted  # no chunk ran after the edit came
    assert kinds[started + 1:].count("poll") >= 1  # the warm's remaining chunks came after the edit started
    assert gated.log[started][1].cached_tokens == CHUNK  # the chunk the warm prefilled, reused live
    assert isinstance(gated.log[kinds.index("Done")][1], protocol.Done)
    service.close()
    await asyncio.wait_for(runner, TIMEOUT)


async def test_a_newer_warm_of_a_document_replaces_the_older_running_or_waiting(gated):
    service = Service(gated)
    runner = asyncio.create_task(service.run())
    first, second, third = TEXT, TEXT + "a = 1\n", TEXT + "b = 2\n"
    service.warm(warm(first))
    await wait(gated.paused)
    service.warm(warm(second))  # stops the running one
    service.warm(warm(third))  # replaces the waiting one
    gated.release.set()
    await warms_returned(gated, 2)
    await settled(service, 1)
    assert [entry[1] for entry in gated.log if entry[0] == "poll"][:2] == [first, first]
    assert {entry[1] for entry in gated.log[2:]} == {third}
    assert service.warms_done == 1
    model = gated.engine.target_model
    prefix = gated.engine.warm_prefix(third, "v.py")
    assert gated.engine.prefix_cache.held(0, model, prefix) == len(prefix)
    service.close()
    await asyncio.wait_for(runner, TIMEOUT)


async def test_waiting_warms_are_bounded_oldest_dropped_newest_first(gated):
    service = Service(gated)
    runner = asyncio.create_task(service.run())
    texts = [f"doc_{i} = {i}\n" * 8 for i in range(Service.MAX_WARMS + 2)]
    service.warm(warm(texts[0], "d0"))
    await wait(gated.paused)
    for i, text in enumerate(texts[1:], 1):
        service.warm(warm(text, f"d{i}"))
    gated.release.set()
    await warms_returned(gated, len(texts) - 1)
    await settled(service, len(texts) - 1)
    order = list(dict.fromkeys(entry[1] for entry in gated.log if entry[0] == "poll"))
    assert order == [texts[0], *reversed(texts[2:])]  # d1, the oldest waiting, was dropped
    service.close()
    await asyncio.wait_for(runner, TIMEOUT)


async def test_a_warm_over_the_document_limit_is_ignored(gated):
    service = Service(gated, max_document_bytes=len(TEXT))
    runner = asyncio.create_task(service.run())
    gated.release.set()
    service.warm(warm(TEXT, "fits"))
    service.warm(warm(TEXT + "x", "big"))  # the newest: it would run first
    await warms_returned(gated, 1)
    await settled(service, 1)
    assert {entry[1] for entry in gated.log} == {TEXT}
    service.close()
    await asyncio.wait_for(runner, TIMEOUT)


async def test_a_completion_job_pre_empts_a_running_warm_as_an_edit_does(gated):
    """An OpenAI API request (engine/openai_api.py) is a job like an edit: it goes first."""
    service = Service(gated, progress_interval=0)
    runner = asyncio.create_task(service.run())
    ended: asyncio.Future = asyncio.get_running_loop().create_future()

    def send(message) -> None:
        if isinstance(message, (CompletionResult, protocol.Error)) and not ended.done():
            ended.set_result(message)

    service.warm(warm())
    await wait(gated.paused)
    submitted = gated.engine.target_model.forward_passes
    service.submit(object(), send, Completion(job_id="c", prompt="def f():", max_tokens=4, method="regular"))
    gated.release.set()
    assert isinstance(await asyncio.wait_for(ended, TIMEOUT), CompletionResult)
    await warms_returned(gated, 2)  # pre-empted, then resumed after the completion
    await settled(service, 1)
    kinds = [entry[0] for entry in gated.log]
    began = kinds.index("complete")
    assert kinds[:began] == ["poll", "poll"] and gated.log[began][2] == submitted  # no chunk ran after it came
    assert "poll" in kinds[began + 1:]
    service.close()
    await asyncio.wait_for(runner, TIMEOUT)
