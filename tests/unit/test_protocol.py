"""Framing and schema of engine.client.protocol: round trips, limits, and that no input
makes the decoder fail with anything but msgspec.DecodeError (the one exception
the daemon's connection loop turns into an Error reply)."""

from __future__ import annotations

import asyncio
import struct

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.client import protocol

STATS = protocol.Stats(prompt_tokens=10, cached_tokens=9, tokens=3, target_forward_passes=2, drafted=4, accepted=2)
MODEL = protocol.ModelInfo(spec="tiny-random", runtime="torch", device="cpu", dtype="float32", context_tokens=8192)

REQUESTS = [
    protocol.Hello(client="test", token="secret"),
    protocol.Edit(job_id="j1", text="x = 1\n\U0001f600\r\n", instruction="rename", path="a.py", language="python",
                  document="file:///a.py", method="pld", options=protocol.DecodingOptions(max_new_tokens=5)),
    protocol.Edit(job_id="j2", text="a\nb\n", instruction="x", region=protocol.Region(start=2, end=4)),
    protocol.Warm(text="x = 1\n", path="a.py", language="python", document="file:///a.py"),
    protocol.Warm(text=""),
    protocol.Cancel(job_id="j1"),
    protocol.Status(),
    protocol.Shutdown(),
]
REPLIES = [
    protocol.Welcome(protocol=protocol.PROTOCOL_VERSION, version="0.1", target=MODEL, draft=None),
    protocol.Queued(job_id="j1", position=2),
    protocol.Started(job_id="j1", queue_position=2, prompt_tokens=10, cached_tokens=9),
    protocol.Progress(job_id="j1", text="x =", chars=3, tokens_per_second=1.5, stats=STATS),
    protocol.Done(job_id="j1", text="y = 1\n", finish_reason="stop", stats=STATS),
    protocol.Error(code="busy", message="the queue is full", job_id="j1"),
    protocol.Error(code="unauthorized", message="wrong token"),
    protocol.StatusReply(version="0.1", pid=1, uptime_seconds=2.0, target=MODEL, draft=MODEL, jobs=[
        protocol.JobInfo(job_id="j1", document=None, state="running", tokens=3)], clients=1, cache_entries=1,
        cache_bytes=10, cache_budget_bytes=100),
    protocol.StatusReply(version="0.1", pid=1, uptime_seconds=2.0, target=MODEL, draft=None, jobs=[], clients=0,
                         cache_entries=0, cache_bytes=0, cache_budget_bytes=100, warming="file:///a.py", warms_done=3),
    protocol.Bye(),
]


def reader_with(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: type(m).__name__)
async def test_request_round_trip(message):
    body = await protocol.read_frame(reader_with(protocol.encode(message)))
    assert protocol.decode_request(body) == message


@pytest.mark.parametrize("message", REPLIES, ids=lambda m: type(m).__name__)
async def test_reply_round_trip(message):
    body = await protocol.read_frame(reader_with(protocol.encode(message)))
    assert protocol.decode_reply(body) == message


async def test_frames_follow_each_other_on_one_stream():
    reader = reader_with(b"".join(protocol.encode(m) for m in REQUESTS))
    assert [protocol.decode_request(await protocol.read_frame(reader)) for _ in REQUESTS] == REQUESTS
    with pytest.raises(asyncio.IncompleteReadError):
        await protocol.read_frame(reader)


async def test_oversize_frame_is_refused_from_its_header_alone():
    # Only the header arrives and the stream stays open: reading the body would hang.
    reader = reader_with(struct.pack(">I", protocol.MAX_FRAME_BYTES + 1), eof=False)
    with pytest.raises(protocol.FrameTooLarge):
        await asyncio.wait_for(protocol.read_frame(reader), 5)
    small = reader_with(struct.pack(">I", protocol.HELLO_MAX_FRAME_BYTES + 1), eof=False)
    with pytest.raises(protocol.FrameTooLarge):
        await asyncio.wait_for(protocol.read_frame(small, protocol.HELLO_MAX_FRAME_BYTES), 5)


@pytest.mark.parametrize("cut", [1, 3, 4, 10])
async def test_truncated_frame_is_an_incomplete_read(cut):
    frame = protocol.encode(REQUESTS[1])
    with pytest.raises(asyncio.IncompleteReadError):
        await protocol.read_frame(reader_with(frame[:cut]))


def test_encode_refuses_a_message_over_the_frame_limit():
    huge = protocol.Edit(job_id="j", text="x" * (protocol.MAX_FRAME_BYTES + 1), instruction="")
    with pytest.raises(protocol.FrameTooLarge):
        protocol.encode(huge)


def body(obj) -> bytes:
    return msgspec.msgpack.encode(obj)


@pytest.mark.parametrize("raw", [
    {"type": "launch_missiles"},  # unknown tag
    {"job_id": "j"},  # no tag
    {"type": "cancel"},  # missing field
    {"type": "cancel", "job_id": 7},  # wrong type
    {"type": "cancel", "job_id": "j", "extra": 1},  # unknown field
    {"type": "edit", "job_id": "j", "text": "", "instruction": "", "method": "magic"},
    {"type": "edit", "job_id": "j", "text": "", "instruction": "", "options": {"max_new_tokens": 0}},
    {"type": "edit", "job_id": "j", "text": "", "instruction": "", "options": {"num_tokens": -3}},
    {"type": "edit", "job_id": "j", "text": b"bytes", "instruction": ""},
    {"type": "edit", "job_id": "j", "text": "", "instruction": "", "region": {"start": 0}},
    {"type": "edit", "job_id": "j", "text": "", "instruction": "", "region": {"start": 0, "end": 0, "x": 1}},
    {"type": "warm"},
    {"type": "warm", "text": "", "job_id": "j"},  # a warm has no job
    {"type": "done", "job_id": "j", "text": "", "finish_reason": "stop", "stats": {}},  # a reply is no request
    [1, 2, 3],
    "hello",
])
def test_invalid_requests_raise_decode_errors(raw):
    with pytest.raises(msgspec.DecodeError):
        protocol.decode_request(body(raw))


def test_hello_repr_hides_the_token():
    hello = protocol.Hello(client="c", token="hunter2")
    assert "hunter2" not in repr(hello) and "hunter2" not in str(hello)
    assert protocol.decode_request(body({"type": "hello", "token": "hunter2"})).token == "hunter2"


# Random msgpack values, biased towards dicts that look like our messages.
KEYS = st.sampled_from(["type", "job_id", "text", "instruction", "options", "method", "protocol", "token",
                        "max_new_tokens", "document", "path", "language", "x"])
TAGS = st.sampled_from(["hello", "edit", "cancel", "status", "shutdown", "done", "Edit", ""])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=20),
                    st.binary(max_size=20), TAGS)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=6)), max_leaves=20)
MESSAGES = st.fixed_dictionaries({"type": TAGS}, optional={k: VALUES for k in
                                                           ["job_id", "text", "instruction", "options", "method", "x"]})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), VALUES.map(body), MESSAGES.map(body)))
def test_any_body_decodes_or_raises_decode_error(data):
    try:
        message = protocol.decode_request(data)
    except msgspec.DecodeError:
        return
    assert isinstance(message, protocol.Request.__args__)

