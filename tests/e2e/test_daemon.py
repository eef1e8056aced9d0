"""The real daemon (`blazedit engine serve`, tiny-random model) over its socket:
streaming, correct text, prefix KV reuse, queueing, cancellation, supersession,
disconnects, status, and sixteen concurrent clients.

"Correct text" means equal to a cold run: an in-process Engine over the same
weights with empty caches (daemon_harness.Reference)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from daemon_harness import TIMEOUT, DaemonProcess, RawConnection, Reference, check_job_stream

from engine.client import protocol
from engine.client.daemon_client import EngineClient

pytestmark = pytest.mark.timeout(120)

SMALL = "def add(a, b):\n    return a + b\n"
# Greedy decoding of this edit runs ~1,500 tokens on tiny-random (seconds): long
# enough that a cancel, a newer edit or a disconnect always lands mid-job.
LONG = dict(text=SMALL, instruction="add docstrings", method="regular",
            options=protocol.DecodingOptions(max_new_tokens=4000))
FILES = [
    "import os\nprint(os.getcwd())\n",
    "class A:\n    pass\n",
    "x = 1\ny = 2\nprint(x + y)\n",
    "def greet(name):\n    return f'hello {name}' \U0001f600\n",
]
METHODS = ["regular", "pld", "assisted", "blazedit"]


@pytest.fixture(scope="module")
def daemon():
    process = DaemonProcess("--max-document-bytes", "20000").wait_ready()
    yield process
    process.cleanup()


@pytest.fixture(scope="module")
def reference():
    return Reference()


def edit(job_id: str, text: str = SMALL, instruction: str = "rename add to plus", **fields) -> protocol.Edit:
    fields.setdefault("options", protocol.DecodingOptions(max_new_tokens=48))
    return protocol.Edit(job_id=job_id, text=text, instruction=instruction, path="x.py", **fields)


async def wait_for_log(daemon: DaemonProcess, needle: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while needle not in daemon.log.read_text():
        assert time.monotonic() < deadline, f"{needle!r} not in the daemon log"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("method", METHODS)
async def test_edit_streams_and_matches_a_cold_run(daemon, reference, method):
    conn = await RawConnection.open(daemon.socket)
    request = edit(f"stream-{method}", FILES[3], "rename greet to welcome", method=method,
                   options=protocol.DecodingOptions())
    await conn.send(request)
    messages = await conn.job(request.job_id)
    done = check_job_stream(messages)
    assert isinstance(done, protocol.Done), done
    assert (done.text, done.finish_reason) == reference.text(request)
    started = [m for m in messages if isinstance(m, protocol.Started)]
    assert len(started) == 1 and started[0].prompt_tokens == done.stats.prompt_tokens > 0
    assert done.stats.tokens > 0 and done.stats.target_forward_passes > 0
    await conn.close()


async def test_second_edit_of_a_file_reuses_its_prefix_and_matches_a_cold_run(daemon, reference):
    # A file no other test sends; between its two edits another file goes through,
    # so the reuse comes from the prefix cache, not from the live KV cache.
    text = "".join(f"value_{i} = {i} * {i}  # prefix reuse\n" for i in range(30))
    changed = text.replace("value_29 = 29 * 29", "value_29 = 29 + 29")
    async with EngineClient(str(daemon.socket)) as client:
        runs = {}
        for job_id, body, instruction in [("first", text, "rename value to item"), ("other", FILES[0], "fix"),
                                          ("second", text, "add a docstring"), ("changed", changed, "fix")]:
            request = edit(job_id, body, instruction, method="blazedit")
            messages = [m async for m in client.edit(request)]
            done = check_job_stream(messages)
            assert isinstance(done, protocol.Done)
            assert (done.text, done.finish_reason) == reference.text(request)
            started = next(m for m in messages if isinstance(m, protocol.Started))
            assert started.cached_tokens == done.stats.cached_tokens
            runs[job_id] = started
        file_tokens = len(text.encode())  # tiny-random's tokenizer is byte-level
        assert runs["second"].cached_tokens > file_tokens  # system message + the whole file
        assert runs["other"].cached_tokens <= runs["other"].prompt_tokens - len(FILES[0].encode())  # not its file
        unchanged = len(text[: text.index("value_29 = 29")].encode())
        assert runs["changed"].cached_tokens > unchanged
        status = await client.status()
        assert status.cache_entries >= 1 and 0 < status.cache_bytes <= status.cache_budget_bytes


async def test_queued_job_reports_its_position_and_cancels_at_once(daemon):
    first = await RawConnection.open(daemon.socket)
    second = await RawConnection.open(daemon.socket)
    await first.send(protocol.Edit(job_id="long", **LONG))
    assert isinstance(await first.recv(), protocol.Started)
    await second.send(edit("waiting"))
    assert await second.recv() == protocol.Queued(job_id="waiting", position=1)
    await second.send(protocol.Status())
    status = await second.recv()
    assert [(j.job_id, j.state) for j in status.jobs] == [("long", "running"), ("waiting", "queued")]

    await second.send(protocol.Cancel(job_id="waiting"))
    done = await second.recv()
    assert done == protocol.Done(job_id="waiting", text="", finish_reason="cancelled", stats=protocol.Stats())

    await first.send(protocol.Cancel(job_id="long"))
    done = check_job_stream([m for m in await first.job("long")])
    assert isinstance(done, protocol.Done) and done.finish_reason == "cancelled"
    assert 0 < done.stats.tokens < 1000
    await second.send(protocol.Cancel(job_id="long"))  # not its job, and over anyway: ignored
    await second.send(protocol.Status())
    assert (await second.recv()).jobs == []
    await first.close()
    await second.close()


async def test_a_disconnected_clients_jobs_are_cancelled(daemon):
    leaving = await RawConnection.open(daemon.socket)
    await leaving.send(protocol.Edit(job_id="orphan-running", **LONG))
    assert isinstance(await leaving.recv(), protocol.Started)
    await leaving.send(edit("orphan-queued"))
    while isinstance(reply := await leaving.recv(), protocol.Progress):
        pass  # the running job streams meanwhile
    assert reply == protocol.Queued(job_id="orphan-queued", position=1)
    await leaving.close()
    await wait_for_log(daemon, "job orphan-queued cancelled while queued")
    await wait_for_log(daemon, "job orphan-running cancelled")
    async with EngineClient(str(daemon.socket)) as client:
        assert (await client.status()).jobs == []


async def test_leaving_the_client_stream_early_cancels_the_job(daemon):
    async with EngineClient(str(daemon.socket)) as client:
        async with contextlib.aclosing(client.edit(protocol.Edit(job_id="abandoned", **LONG))) as stream:
            async for message in stream:
                if isinstance(message, protocol.Started):
                    break
        await wait_for_log(daemon, "job abandoned cancelled")
        assert (await client.status()).jobs == []
        done = check_job_stream([m async for m in client.edit(edit("next"))])  # the connection goes on
        assert isinstance(done, protocol.Done)


async def test_status_names_models_queue_cache_and_log(daemon):
    async with EngineClient(str(daemon.socket)) as client:
        welcome = client.welcome
        assert welcome.target.spec == "tiny-random" and welcome.protocol == protocol.PROTOCOL_VERSION
        status = await client.status()
    assert status.pid == daemon.process.pid and status.uptime_seconds > 0
    assert status.target.device == "cpu" and status.draft is not None
    assert status.log_path == str(daemon.log) and status.address == str(daemon.socket)
    assert status.clients >= 1 and status.cache_budget_bytes > 0


async def test_refusals_name_the_job(daemon):
    conn = await RawConnection.open(daemon.socket)
    await conn.send(edit("big", "x" * 20001))
    assert await conn.recv() == protocol.Error(code="too_large", job_id="big", message=(
        "the document is 20001 bytes; this daemon accepts at most 20000"))
    await conn.send(protocol.Edit(job_id="dup", **LONG))
    assert isinstance(await conn.recv(), protocol.Started)
    await conn.send(edit("dup"))
    while isinstance(refusal := await conn.recv(), protocol.Progress):
        pass  # the running job's stream goes on
    assert (refusal.code, refusal.job_id) == ("duplicate_job", "dup")
    await conn.send(protocol.Cancel(job_id="dup"))
    # (not check_job_stream: Progress read in the loop above is missing from this stream)
    assert (await conn.job("dup"))[-1].finish_reason == "cancelled"
    await conn.close()


@pytest.mark.timeout(180)
async def test_sixteen_clients_with_cancels_get_one_terminal_per_job_and_correct_text(daemon, reference):
    clients, per_client = 16, 3

    def request(c: int, j: int) -> protocol.Edit:
        k = c * per_client + j
        return edit(f"c{c}-j{j}", FILES[k % len(FILES)], ["rename x", "fix it"][k % 2], method=METHODS[k % 4])

    async def client(c: int) -> dict[str, list]:
        conn = await RawConnection.open(daemon.socket)
        requests = [request(c, j) for j in range(per_client)]
        for r in requests:
            await conn.send(r)
        if c % 3 == 0:
            await conn.send(protocol.Cancel(job_id=requests[1].job_id))
        by_job: dict[str, list] = {r.job_id: [] for r in requests}
        while not all(m and isinstance(m[-1], (protocol.Done, protocol.Error)) for m in by_job.values()):
            message = await conn.recv()
            assert message.job_id in by_job, message
            assert not (by_job[message.job_id] and isinstance(by_job[message.job_id][-1],
                                                              (protocol.Done, protocol.Error))), "after terminal"
            by_job[message.job_id].append(message)
        await conn.send(protocol.Status())
        assert isinstance(await conn.recv(), protocol.StatusReply)  # nothing stray came before it
        await conn.close()
        return by_job

    results = await asyncio.wait_for(asyncio.gather(*(client(c) for c in range(clients))), 150)
    cancelled = 0
    for c, by_job in enumerate(results):
        for j in range(per_client):
            done = check_job_stream(by_job[f"c{c}-j{j}"])
            assert isinstance(done, protocol.Done), done
            if done.finish_reason == "cancelled":
                assert c % 3 == 0 and j == 1
                cancelled += 1
            else:
                assert (done.text, done.finish_reason) == reference.text(request(c, j)), f"c{c}-j{j}"
    assert cancelled >= 1  # most cancels reach a job still queued


async def status_after_warms(client: EngineClient, count: int) -> protocol.StatusReply:
    """Bounded polling until the daemon has finished ``count`` warms."""
    deadline = time.monotonic() + TIMEOUT
    while (status := await client.status()).warms_done < count or status.warming is not None:
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.02)
    return status


async def test_a_warm_has_no_reply_and_the_next_edit_starts_from_its_prefix(daemon, reference):
    text = "".join(f"warmed_{i} = {i} + {i}  # warm me\n" for i in range(30))
    async with EngineClient(str(daemon.socket)) as client:
        done_before = (await client.status()).warms_done
        await client.warm(text, path="x.py", document="file:///warm.py")
        status = await status_after_warms(client, done_before + 1)
        assert status.cache_entries >= 1
        request = edit("after-warm", text, "rename warmed to hot", method="blazedit")
        messages = [m async for m in client.edit(request)]
    done = check_job_stream(messages)
    assert isinstance(done, protocol.Done) and (done.text, done.finish_reason) == reference.text(request)
    started = next(m for m in messages if isinstance(m, protocol.Started))
    assert started.cached_tokens > len(text.encode())  # system message and the whole file (byte tokenizer)


async def test_status_names_the_document_being_warmed(daemon):
    from engine.daemon_cli import describe_status

    text = "".join(f"big_{i} = [{i}] * {i}\n" for i in range(800))  # 16K tokens: seconds of prefill
    async with EngineClient(str(daemon.socket)) as client:
        done_before = (await client.status()).warms_done
        await client.warm(text, path="big.py", document="file:///big.py")
        seen = set()
        while (status := await client.status()).warms_done == done_before:
            seen.add(status.warming)
        assert "file:///big.py" in seen
        lines = describe_status(await status_after_warms(client, done_before + 1), client.manages)
    assert any("warming: nothing" in line and f"{done_before + 1} prompt(s) warmed" in line for line in lines)
    # why the daemon runs where it does: the calibration's choice (tiny-random: torch fp32 alone)
    assert any(line.strip().startswith("runtime: torch fp32") and "predicted" in line for line in lines)
    assert any(line.strip().startswith("memory:  peak RSS") and line.endswith(" GiB") for line in lines)


async def test_a_region_edit_streams_and_returns_the_regions_new_text(daemon, reference):
    text = "def a():\r\n    return 1\r\n\r\ndef b():\r\n    return 2\r\n"
    start = text.index("def b")
    request = edit("region", text, "make b return 3", method="blazedit",
                   region=protocol.Region(start=start, end=len(text)))
    conn = await RawConnection.open(daemon.socket)
    await conn.send(request)
    messages = await conn.job(request.job_id)
    done = check_job_stream(messages)
    assert isinstance(done, protocol.Done)
    assert (done.text, done.finish_reason) == reference.text(request)
    streamed = "".join(m.text for m in messages if isinstance(m, protocol.Progress))
    assert done.text.startswith(streamed)
    whole = reference.text(edit("region-whole", text, "make b return 3", method="blazedit"))
    assert done.text != whole[0]  # the region's text, not the file's
    await conn.close()


@pytest.mark.parametrize("region", [(1, 5), (0, 4), (0, 10_000), (9, 3)])
async def test_a_region_off_line_boundaries_is_a_bad_request(daemon, region):
    conn = await RawConnection.open(daemon.socket)
    await conn.send(edit("bad-region", region=protocol.Region(start=region[0], end=region[1])))
    error = await conn.recv()
    assert isinstance(error, protocol.Error) and (error.code, error.job_id) == ("bad_request", "bad-region"), error
    await conn.send(protocol.Status())
    assert isinstance(await conn.recv(), protocol.StatusReply)
    await conn.close()
