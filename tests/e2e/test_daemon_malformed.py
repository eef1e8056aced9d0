"""Malformed input never takes the daemon down: every bad frame gets an Error or a
closed connection, and the daemon keeps serving (a normal edit still succeeds and
gives the same text as before the abuse, from the same process)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import msgspec
import pytest
from daemon_harness import TIMEOUT, DaemonProcess, RawConnection, check_job_stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.client import protocol

pytestmark = pytest.mark.timeout(120)

NORMAL = protocol.Edit(job_id="normal", text="def f(x):\n    return x\n", instruction="rename f to g", path="f.py",
                       method="pld", options=protocol.DecodingOptions(max_new_tokens=32))


@pytest.fixture(scope="module")
def daemon():
    process = DaemonProcess("--max-queue", "2", "--max-clients", "4").wait_ready()
    yield process
    process.cleanup()


async def normal_edit(daemon) -> protocol.Done:
    conn = await RawConnection.open(daemon.socket)
    await conn.send(NORMAL)
    done = check_job_stream(await conn.job(NORMAL.job_id))
    await conn.close()
    assert isinstance(done, protocol.Done) and done.finish_reason in ("stop", "length")
    return done


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def packed(obj) -> bytes:
    return frame(msgspec.msgpack.encode(obj))


HELLO = protocol.encode(protocol.Hello(client="test"))
STATUS = protocol.encode(protocol.Status())


@pytest.mark.parametrize("before_hello, code", [
    (b"GET / HTTP/1.1\r\n\r\n", "too_large"),  # the 'length' is 0x47455420: over the pre-hello limit
    (frame(b"\xc1garbage"), "bad_request"),
    (packed({"type": "status"}), "bad_request"),  # hello must come first
    (packed({"type": "edit", "job_id": "j", "text": "x", "instruction": "y"}), "bad_request"),
    (packed({"type": "hello", "protocol": 999}), "protocol_version"),
    (packed({"type": "hello", "protocol": "1"}), "bad_request"),
    (struct.pack(">I", protocol.HELLO_MAX_FRAME_BYTES + 1), "too_large"),
])
async def test_bad_openings_get_an_error_and_a_closed_connection(daemon, before_hello, code):
    conn = await RawConnection.open(daemon.socket, hello=False)
    await conn.send_bytes(before_hello)
    replies = await conn.until_closed()
    assert [(type(r), r.code) for r in replies] == [(protocol.Error, code)]
    await normal_edit(daemon)


@pytest.mark.parametrize("bad, job_id", [
    (frame(b"\xc1\xc1\xc1"), None),  # not msgpack
    (packed({"type": "launch"}), None),  # unknown tag
    (packed({"type": "cancel", "job_id": 5}), None),  # wrong type
    (packed({"type": "edit", "job_id": 5, "text": "", "instruction": ""}), None),
    (packed({"type": "edit", "job_id": "j", "text": "", "instruction": "", "surprise": 1}), "j"),  # unknown field
    (packed({"type": "edit", "job_id": "k", "text": "", "instruction": "", "options": {"max_new_tokens": -1}}), "k"),
    (packed(["edit", "j"]), None),
    (packed({"type": "done", "job_id": "j", "text": "", "finish_reason": "stop", "stats": {}}), None),
    (HELLO, None),  # a second hello
])
async def test_bad_requests_get_an_error_and_the_connection_goes_on(daemon, bad, job_id):
    conn = await RawConnection.open(daemon.socket)
    await conn.send_bytes(bad)
    error = await conn.recv()
    assert isinstance(error, protocol.Error) and error.code == "bad_request" and error.job_id == job_id, error
    await conn.send_bytes(STATUS)
    assert isinstance(await conn.recv(), protocol.StatusReply)
    await conn.close()


@pytest.mark.parametrize("bad", [
    packed({"type": "warm"}),  # no text
    packed({"type": "warm", "text": 5}),
    packed({"type": "warm", "text": "x = 1\n", "surprise": True}),
    packed({"type": "warm", "text": "x = 1\n", "document": ["not", "a", "string"]}),
])
async def test_a_malformed_warm_gets_no_reply_and_disturbs_nothing(daemon, bad):
    conn = await RawConnection.open(daemon.socket)
    await conn.send_bytes(bad)
    await conn.send_bytes(STATUS)
    assert isinstance(await conn.recv(), protocol.StatusReply)  # the first reply: no Error for the warm
    await conn.close()
    await normal_edit(daemon)


@pytest.mark.parametrize("tail", [
    struct.pack(">I", protocol.MAX_FRAME_BYTES + 1),  # oversize: refused from the header
    struct.pack(">I", 1000) + b"x" * 10,  # truncated: the peer hangs up mid-frame
    b"\x00\x00",  # truncated header
])
async def test_oversize_and_truncated_frames_end_the_connection_only(daemon, tail):
    conn = await RawConnection.open(daemon.socket)
    await conn.send_bytes(tail)
    conn.writer.write_eof()
    replies = await conn.until_closed()
    assert all(isinstance(r, protocol.Error) and r.code == "too_large" for r in replies), replies
    assert len(replies) == (1 if tail.startswith(struct.pack(">I", protocol.MAX_FRAME_BYTES + 1)) else 0)
    await normal_edit(daemon)


async def test_a_full_queue_refuses_new_jobs_with_busy(daemon):
    conn = await RawConnection.open(daemon.socket)
    long = protocol.Edit(job_id="long", text=NORMAL.text, instruction="add docstrings", method="regular",
                         options=protocol.DecodingOptions(max_new_tokens=4000))  # ~1,500 tokens: seconds
    await conn.send(long)
    assert isinstance(await conn.recv(), protocol.Started)
    for job_id in ("q1", "q2", "q3"):
        await conn.send(protocol.Edit(job_id=job_id, text=NORMAL.text, instruction="x", path="f.py"))
    replies = {}
    while len(replies) < 3:
        message = await conn.recv()
        if not isinstance(message, protocol.Progress):
            replies[message.job_id] = message
    assert [type(replies[j]) for j in ("q1", "q2")] == [protocol.Queued, protocol.Queued]
    assert (replies["q3"].code, replies["q3"].job_id) == ("busy", "q3")
    await conn.close()  # cancels the rest


async def test_clients_over_the_limit_are_refused_with_busy(daemon):
    held = [await RawConnection.open(daemon.socket) for _ in range(4)]
    extra = await RawConnection.open(daemon.socket, hello=False)
    await extra.send(protocol.Hello(client="fifth"))
    replies = await extra.until_closed()
    assert [(type(r), r.code) for r in replies] == [(protocol.Error, "busy")], replies
    assert "at most 4 clients" in replies[0].message
    for conn in held:
        await conn.close()
    await normal_edit(daemon)  # the slots are free again


async def test_a_client_that_stops_reading_is_dropped_and_the_daemon_goes_on(daemon):
    conn = await RawConnection.open(daemon.socket)
    requests = 20_000  # their replies, never read, fill the socket buffers and then the outbox
    try:
        await conn.send_bytes(STATUS * requests)
    except ConnectionError:
        pass  # dropped while we were still writing
    deadline = time.monotonic() + TIMEOUT
    while "dropped client" not in daemon.output():
        assert time.monotonic() < deadline, daemon.output()
        await asyncio.sleep(0.05)
    try:
        replies = await conn.until_closed()
    except ConnectionError:
        replies = []
    assert len(replies) < requests
    await normal_edit(daemon)


# Random abuse: raw bytes, frames of random msgpack, frames of message-shaped maps.
TAGS = st.sampled_from(["hello", "edit", "cancel", "status", "shutdown", "welcome", "nope"])
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.text(max_size=12), st.binary(max_size=12))
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=10)
SHAPED = st.fixed_dictionaries({"type": TAGS}, optional={
    "job_id": st.one_of(st.text(max_size=8), st.integers(-2**40, 2**40)), "text": VALUES, "instruction": VALUES,
    "options": st.one_of(VALUES, st.fixed_dictionaries({}, optional={"max_new_tokens": st.integers(-5, 5)})),
    "protocol": st.integers(-1, 3), "token": VALUES})
# No "shutdown" among the random frames: a well-formed Shutdown would (rightly) stop the daemon.
SAFE_SHAPED = SHAPED.filter(lambda m: m["type"] != "shutdown")
CHUNKS = st.one_of(st.binary(min_size=1, max_size=64), VALUES.map(packed), SAFE_SHAPED.map(packed),
                   st.integers(0, 2**32 - 1).map(lambda n: struct.pack(">I", n)))


def exchange(path, chunks: list[bytes], hello: bool) -> list:
    """Send the chunks, hang up our side, and read every reply until the daemon closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(path))
        try:
            sock.sendall((HELLO if hello else b"") + b"".join(chunks))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may hang up on us mid-send (an oversize frame)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    replies = []
    while data:
        (size,) = struct.unpack(">I", data[:4])
        replies.append(protocol.decode_reply(data[4:4 + size]))
        data = data[4 + size:]
    return replies


@pytest.mark.timeout(240)
async def test_random_frames_get_errors_and_the_daemon_keeps_serving(daemon):
    before = await normal_edit(daemon)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(chunks=st.lists(CHUNKS, min_size=1, max_size=4), hello=st.booleans())
    def abuse(chunks, hello):
        replies = exchange(daemon.socket, chunks, hello)
        welcomed = bool(replies) and isinstance(replies[0], protocol.Welcome)  # random bytes may say hello too
        assert welcomed or not hello, replies
        if welcomed:
            # Well-formed Edits and Status may be answered; everything else must be an Error.
            allowed = (protocol.Error, protocol.Queued, protocol.Started, protocol.Progress, protocol.Done,
                       protocol.StatusReply)
            assert all(isinstance(r, allowed) for r in replies[1:]), replies
        else:
            assert len(replies) <= 1 and all(isinstance(r, protocol.Error) for r in replies), replies

    abuse()
    assert daemon.process.poll() is None, daemon.output()
    after = await normal_edit(daemon)
    assert (after.text, after.finish_reason) == (before.text, before.finish_reason)
