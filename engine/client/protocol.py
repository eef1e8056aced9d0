"""The wire protocol between editors' language servers and the engine daemon.

Both sides import this module, so it imports only msgspec and the standard
library (the language server must never pull in torch). Every message is a
tagged msgspec ``Struct``; the Structs are the schema (docs/protocol.md).

Framing: a 4-byte big-endian length, then one msgpack-encoded message.
Frames longer than ``MAX_FRAME_BYTES`` are refused before they are read (and
before the ``Hello``, frames longer than ``HELLO_MAX_FRAME_BYTES``, so that an
unauthenticated peer cannot make the daemon buffer much).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Annotated, Literal, Union, get_args

import msgspec

PROTOCOL_VERSION = 5  # 5: Done.partial, StatusReply.runtime_choice; 4: Edit.retry_unchanged, Progress/Done.attempt; 3: Warm, Edit.region; 2: Welcome and StatusReply lost the fields no client read
MAX_FRAME_BYTES = 16 * 1024 * 1024
HELLO_MAX_FRAME_BYTES = 64 * 1024

Method = Literal["regular", "pld", "assisted", "blazedit"]
"""The decoding methods' names; engine/decoding/strategies.py's METHODS holds each
one's strategy (and checks that the two lists agree)."""
METHODS: tuple[str, ...] = get_args(Method)
FinishReason = Literal["stop", "length", "cancelled"]
ErrorCode = Literal[
    "bad_request",  # malformed frame, wrong types, unknown tag
    "unauthorized",  # missing or wrong token
    "protocol_version",  # client and daemon speak different versions
    "too_large",  # a frame over the limit, or a document over the daemon's --max-document-bytes
    "context_overflow",  # prompt + output would not fit the model's context
    "unknown_method",
    "duplicate_job",  # a job id already in use on this connection
    "busy",  # the queue, or the number of clients, is at its limit; retry later
    "model_error",  # the model failed to load or to run
    "shutting_down",
    "internal",
]


class Message(msgspec.Struct, forbid_unknown_fields=True, tag_field="type", kw_only=True):
    """Base of every message. Unknown fields are refused: a typo in a field
    name is a client bug that should surface, not be silently ignored."""


# ---------------------------------------------------------------- options


Positive = Annotated[int, msgspec.Meta(ge=1)]


class DecodingOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Knobs of the decoding methods; every method reads only its own.

    The defaults for ``blazedit`` are those of the original work.
    """

    max_new_tokens: Positive | None = None
    """None: twice the file's token count plus 256 (room to double it)."""
    max_ngram: Positive = 10
    """Longest suffix n-gram that prompt lookup tries to match (pld, blazedit)."""
    num_tokens: Positive = 40
    """Tokens that pld copies per lookup."""
    assisted_start_tokens: Positive = 5
    """Initial draft length of assisted decoding (adapts with acceptance)."""
    micro_draft_tokens: Positive = 80
    """Tokens that prompt lookup proposes to the draft model per draft pass (blazedit)."""
    max_num_run: Positive = 4
    """Draft-model passes per target pass (blazedit)."""
    max_draft_tokens: Positive = 256
    """Cap on the tokens the target verifies in one forward pass (assisted, blazedit)."""


# ---------------------------------------------------------------- requests


class Hello(Message, tag="hello"):
    """First message of a connection. ``token`` is required when the daemon has one
    (always on TCP beyond loopback); without it nothing else is read."""

    protocol: int = PROTOCOL_VERSION
    client: str = ""
    token: str | None = None

    def __repr__(self) -> str:  # the token must never reach a log
        token = "<hidden>" if self.token else None
        return f"Hello(protocol={self.protocol!r}, client={self.client!r}, token={token})"


class Region(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Lines ``text[start:end]`` of an Edit's text: str offsets (Python indices), both on
    line boundaries (``start`` at 0 or just after a newline, ``end`` at the text's end or
    just after a newline); other values are refused with ``bad_request``."""

    start: int
    end: int


class Edit(Message, tag="edit"):
    """Regenerate ``text`` following ``instruction``.

    ``document`` names the buffer (its URI, say): a newer Edit for the same
    document on the same connection cancels the older one. With ``region`` the model
    regenerates only ``text[start:end]`` (the whole file stays in the prompt as
    context), and Progress/Done carry the region's new text, to splice into
    [start, end). ``retry_unchanged``: a whole file that comes back unchanged is asked
    for once more, the model saying first what it will change (a second ``attempt``).
    """

    job_id: str
    text: str
    instruction: str
    path: str = ""
    language: str | None = None
    document: str | None = None
    method: Method = "blazedit"
    options: DecodingOptions = msgspec.field(default_factory=DecodingOptions)
    region: Region | None = None
    retry_unchanged: bool = True


class Warm(Message, tag="warm"):
    """Prefill, at the lowest priority, the prompt prefix that every edit of ``text``
    shares (system message and file), so that the next Edit of it starts at once.
    No reply, ever: a newer Warm of the same ``document`` replaces an older one, an
    Edit pre-empts a running Warm within one chunk of prefill, and Warms the daemon
    cannot or need not do (too large, already cached, too many waiting) are dropped."""

    text: str
    path: str = ""
    language: str | None = None
    document: str | None = None


class Cancel(Message, tag="cancel"):
    """Stop a job: a queued one ends at once, a running one within one forward pass.
    Its terminal message is ``Done(finish_reason="cancelled")`` (no reply if the job
    already ended)."""

    job_id: str


class Status(Message, tag="status"):
    """Answered by ``StatusReply``."""


class Shutdown(Message, tag="shutdown"):
    """Stop the daemon: jobs end with ``Error(shutting_down)``, then ``Bye``."""


Request = Union[Hello, Edit, Warm, Cancel, Status, Shutdown]


# ---------------------------------------------------------------- replies


class ModelInfo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    spec: str
    runtime: str
    """"torch" or "llama.cpp"."""
    device: str
    dtype: str
    """torch's dtype ("bfloat16"), or the GGUF's own under llama.cpp ("qwen2 1.5B Q4_K - Medium")."""
    context_tokens: int


class Welcome(Message, tag="welcome"):
    """Answer to ``Hello``: the daemon's version and models."""

    protocol: int
    version: str
    target: ModelInfo
    draft: ModelInfo | None


class Stats(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Counters of one decoding run; the benchmark and progress reports read them."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    tokens: int = 0
    target_forward_passes: int = 0  # the prefill counts as one, however many chunks it was fed in
    draft_forward_passes: int = 0
    drafted: int = 0
    accepted: int = 0
    handover_tokens: int = 0  # tokens written before the edit moved to the second target (0: it did not)
    prefill_seconds: float = 0.0
    first_token_seconds: float = 0.0
    seconds: float = 0.0


class Queued(Message, tag="queued"):
    """Sent when an accepted job has to wait: ``position`` jobs are ahead of it."""

    job_id: str
    position: int


class Started(Message, tag="started"):
    """The job is decoding; sent with the engine's first event, so the prompt and
    cached-prefix token counts are known. ``queue_position``: jobs that were
    ahead of it when it was accepted."""

    job_id: str
    queue_position: int
    prompt_tokens: int = 0
    cached_tokens: int = 0


class Progress(Message, tag="progress"):
    """Streamed after target forward passes; ``text`` is new since the last Progress
    (of the region's new text, for an Edit with a region). The first Progress of a
    new ``attempt`` has no text: the file streams again from its start."""

    job_id: str
    text: str
    chars: int
    tokens_per_second: float
    stats: Stats  # of this attempt
    attempt: int = 1


class Partial(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How a reply that covered only part of the file became the file (engine/client/merge.py)."""

    how: Literal["merged", "apply_pass"]
    """``merged``: the reply's items replaced the file's by kind and name; ``apply_pass``:
    the model was asked again for the whole file with its partial reply applied."""
    items: list[str] = []
    """What the partial reply rewrote ("do_complete()", "Inventory.restock()"); empty
    where an apply pass could not tell."""


class Done(Message, tag="done"):
    """Terminal message of a job. ``text`` is the regenerated file (or, for an Edit with
    a region, the region's new text), already extracted from the reply, with the
    input's line endings. ``partial``: the reply was part of the file, and ``text`` is
    the whole file made from it (None: the reply was the file)."""

    job_id: str
    text: str
    finish_reason: FinishReason
    stats: Stats  # of the attempt that wrote ``text``
    attempt: int = 1
    partial: Partial | None = None


class Error(Message, tag="error"):
    """Terminal message of a job (``job_id`` set) or of a connection (``job_id`` None)."""

    code: ErrorCode
    message: str
    job_id: str | None = None


class JobInfo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    job_id: str
    document: str | None
    state: Literal["queued", "running"]
    tokens: int = 0


class StatusReply(Message, tag="status_reply"):
    version: str
    pid: int
    uptime_seconds: float
    target: ModelInfo
    draft: ModelInfo | None
    jobs: list[JobInfo]
    clients: int
    cache_entries: int
    cache_bytes: int
    cache_budget_bytes: int
    address: str = ""
    log_path: str = ""
    idle_timeout_seconds: float | None = None
    jobs_accepted: int = 0
    warming: str | None = None
    """The document (else the path) whose prompt prefix is being warmed now."""
    warms_done: int = 0
    """Warms finished since the start (already cached ones included; pre-empted or dropped ones not)."""
    runtime_choice: list[str] = []
    """Why the daemon runs on its runtimes: the calibration's choice and the predicted
    figures behind it (engine/calibration.py), one line each; empty where not measured."""
    second: ModelInfo | None = None
    """The target on a second runtime, where an edit moves midway when its passes say so:
    None until the first edit that moves loads it (``runtime_choice`` names it before)."""
    peak_rss_bytes: int = 0  # the daemon's peak resident memory, all models loaded


class Bye(Message, tag="bye"):
    """Answer to Shutdown: the daemon stops after sending it."""


Reply = Union[Welcome, Queued, Started, Progress, Done, Error, StatusReply, Bye]

_request_decoder = msgspec.msgpack.Decoder(Request)
_reply_decoder = msgspec.msgpack.Decoder(Reply)
_encoder = msgspec.msgpack.Encoder()
_header = struct.Struct(">I")


class FrameTooLarge(ValueError):
    pass


def encode(message: Message) -> bytes:
    """One frame: length prefix + msgpack body."""
    body = _encoder.encode(message)
    if len(body) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"message of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return _header.pack(len(body)) + body


def decode_request(body: bytes) -> Request:
    """Raises msgspec.DecodeError / ValidationError on bad input."""
    return _request_decoder.decode(body)


def decode_reply(body: bytes) -> Reply:
    return _reply_decoder.decode(body)


async def read_frame(reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """Read one frame body. Raises asyncio.IncompleteReadError at EOF and
    FrameTooLarge before reading an oversize body."""
    (size,) = _header.unpack(await reader.readexactly(_header.size))
    if size > max_bytes:
        raise FrameTooLarge(f"frame of {size} bytes exceeds {max_bytes}")
    return await reader.readexactly(size)

