"""The prompt for an edit of a whole file or of a region of it, and the new text
extracted back from the reply.

Layout: a fixed system message, then the file in a code fence, then (for a region)
the selected lines in a fence of their own, then the instruction. The file comes
before the rest so that the KV cache of "system + file" can be reused by the next
edit of the same file, whole or a region, and prefilled before any edit is asked
for (``warm_end``). The reply is pre-opened with the fence, so the model starts
writing at once and the first closing fence line ends it.

A second attempt after an unchanged reply (``plan_first``) asks the model to say first,
in one sentence, what it will change: the reply then opens its own fence, and
``ReplyReader`` takes the file from inside it (as from a remote server's reply).
An apply pass after a partial reply that cannot be merged by name (``sketch``,
engine/client/merge.py) shows that reply after the instruction and asks for the whole file
with it applied; the file stays the lookup source, as for every whole-file edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

SYSTEM = (
    "You are a precise code editor. You receive a file and an instruction. "
    "Reply with the complete edited file in one code block, changing only what the "
    "instruction asks for and keeping everything else exactly as it was."
)

AFTER_FILE = "\n\nInstruction: "  # what follows the fence that closes the file

APPLY_SKETCH = ("An earlier reply gave only the part of the file that it changed:\n{sketch}\n\n"
                "Reply with the whole edited file in one {block} code block: that part as the earlier reply wrote "
                "it, every other line exactly as in the file.")

# Measured on commit-message instructions that the model first answered with the file
# unchanged: said first, the plan turns 4 of 4 into edits (bench/results/noop-rescue/).
PLAN_FIRST = ("First say in one sentence which lines you will change and how; then reply with the whole edited "
              "file, every line of it from the first to the last, not only the part you change.")

_OPENING = r"[ \t]*{fence}[\w+#.-]*[ \t]*"  # a line that opens a code block

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "jsx", ".ts": "typescript", ".tsx": "tsx", ".rs": "rust", ".go": "go", ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".cs": "csharp", ".java": "java", ".kt": "kotlin",
    ".rb": "ruby", ".php": "php", ".swift": "swift", ".scala": "scala", ".lua": "lua", ".sh": "bash",
    ".bash": "bash", ".zsh": "zsh", ".sql": "sql", ".html": "html", ".css": "css", ".scss": "scss",
    ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".md": "markdown", ".r": "r",
    ".jl": "julia", ".hs": "haskell", ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".ml": "ocaml",
    ".zig": "zig", ".nim": "nim", ".dart": "dart", ".vue": "vue", ".svelte": "svelte", ".tex": "latex",
}


def language_for(path: str, language: str | None = None) -> str:
    """The fence language: the client's language id if given, else from the file extension."""
    if language:
        return language
    return LANGUAGES.get(PurePath(path).suffix.lower(), "")


@dataclass(frozen=True)
class EditPrompt:
    """What the engine needs to build the prompt and to map the reply back to a file
    (or, for a region edit, to the region's new text)."""

    messages: list[dict]
    reply_prefix: str  # appended after the chat template's generation prompt
    fence: str
    line_ending: str
    trailing_newline: bool
    region: bool = False  # the reply is a region: its blank last lines are kept (they separate it from what follows)

    @property
    def opens_fence(self) -> bool:
        """Whether the reply opens its own fence (nothing pre-opened it)."""
        return not self.reply_prefix

    def file_from_reply(self, reply: str) -> str:
        """The file text from the model's reply (which starts inside the fence)."""
        body = _strip_reopened_fence(reply, self.fence)
        start = "\n" + body
        end = start.find("\n" + self.fence)
        if end >= 0:
            body = start[1:end] if end > 0 else ""
        return self.restore_layout(body, complete=end >= 0)

    def file_end(self, rendered: str) -> int:
        """Where the fence closing what the reply rewrites (the file, or the region) ends
        in the rendered prompt: a reply that copies it ends there. (The fence is longer
        than any backtick run in the file, so its first match is the closing one.)"""
        return rendered.index("\n" + self.fence + AFTER_FILE) + 1 + len(self.fence)

    def context_end(self, rendered: str) -> int:
        """Where the fence closing the file ends: the prompt up to here, system message
        and file, is the same for every edit of this file, whole or a region."""
        opening = rendered.index("\n" + self.fence) + 1 + len(self.fence)
        return rendered.index("\n" + self.fence, opening) + 1 + len(self.fence)

    def copy_start(self, rendered: str) -> int:
        """Where prompt lookup's source begins: the file for a whole-file edit; the
        region's own fence, after the file, for a region edit."""
        return self.context_end(rendered) if self.region else 0

    def restore_layout(self, body: str, complete: bool = True) -> str:
        """Give the model's text the input's line endings and final newline."""
        if complete:
            body = body if self.region else body.rstrip("\n")
            if self.trailing_newline and body:
                body += "\n"
        if self.line_ending != "\n":
            body = body.replace("\n", self.line_ending)
        return body


def build(text: str, instruction: str, path: str = "", language: str | None = None,
          region: tuple[int, int] | None = None, plan_first: bool = False, sketch: str | None = None) -> EditPrompt:
    """The prompt for editing ``text``, or only ``text[start:end]`` when ``region`` is given
    (str offsets on line boundaries: check them with ``region_problem`` first).
    ``plan_first`` (whole files only): the model says what it will change, then opens
    the fence itself. ``sketch`` (whole files only): an earlier reply that gave part of
    the file, to be written into the whole file (an apply pass)."""
    line_ending = "\r\n" if "\r\n" in text else "\n"
    body = text.replace("\r\n", "\n").rstrip("\n")
    shown_sketch = (sketch or "").replace("\r\n", "\n").rstrip("\n")
    fence = fence_for(body + "\n" + shown_sketch)
    lang = language_for(path, language)
    name = f" `{PurePath(path).name}`" if path else ""
    context = f"File{name}:\n{fence}{lang}\n{body}\n{fence}"
    if sketch is not None:
        assert region is None and not plan_first, "an apply pass is a whole-file edit of its own"
        user = (f"{context}{AFTER_FILE}{instruction.strip()}\n\n"
                + APPLY_SKETCH.format(sketch=f"{fence}{lang}\n{shown_sketch}\n{fence}", block=f"{fence}{lang}"))
        trailing = text.endswith("\n")
    elif region is None:
        user = (f"{context}{AFTER_FILE}{instruction.strip()}\n\n"
                f"Reply with the whole edited file in one {fence}{lang} code block.")
        trailing = text.endswith("\n")
    else:
        start, end = region
        selected = text[start:end].replace("\r\n", "\n")
        trailing = selected.endswith("\n") or (not selected and text != "")  # an empty one sits at a line start
        first = text.count("\n", 0, start) + 1
        last = first + selected.count("\n") - trailing
        shown = selected.removesuffix("\n")  # blank last lines stay visible
        where = f"Lines {first}-{last} of the file" if selected else f"An empty selection before line {first}"
        user = (f"{context}\n\n{where}:\n{fence}{lang}\n{shown}\n{fence}{AFTER_FILE}"
                f"{instruction.strip()}\n\nRewrite only these lines. Reply with the rewritten lines alone, "
                f"in one {fence}{lang} code block; the rest of the file stays as it is.")
    if plan_first:
        assert region is None, "a plan first is asked only for whole-file edits"
        user += f"\n\n{PLAN_FIRST}"
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    reply_prefix = "" if plan_first else f"{fence}{lang}\n"
    return EditPrompt(messages, reply_prefix, fence, line_ending, trailing, region=region is not None)


def ask_again(text: str, instruction: str, region: object | None, finish_reason: str, result: str) -> bool:
    """Whether an edit's reply calls for a second attempt, plan first: a whole file
    that came back unchanged although an instruction asked for a change."""
    return region is None and bool(instruction.strip()) and finish_reason == "stop" and result == text


def region_problem(text: str, start: int, end: int) -> str | None:
    """Why ``text[start:end]`` is not a region that can be edited (offsets out of
    range, or not on line boundaries), or None when it is."""
    if not 0 <= start <= end <= len(text):
        return f"region [{start}, {end}) is not within the text of {len(text)} characters"
    if start and text[start - 1] != "\n":
        return f"region start {start} is not at the start of a line"
    if end < len(text) and end and text[end - 1] != "\n":
        return f"region end {end} is not at the end of a line (just after a newline, or the end of the text)"
    return None


def line_region(text: str, first: int, last: int) -> tuple[int, int]:
    """The str offsets [start, end) of lines ``first`` to ``last`` of ``text`` (1-based,
    inclusive, each ending at its newline); ValueError if the file has no such lines."""
    count = text.count("\n") + (not text.endswith("\n") and text != "")
    if not 1 <= first <= last <= count:
        raise ValueError(f"lines {first}-{last} are not within the file's {count} lines")
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    return starts[first - 1], starts[last] if last < len(starts) else len(text)


def fence_for(body: str) -> str:
    """A backtick fence longer than any backtick run in the file (CommonMark rule),
    so a closing fence line can only be the end of the file."""
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def _strip_reopened_fence(reply: str, fence: str) -> str:
    """Some models open the fence again although the reply was pre-opened."""
    match = re.match(rf"\s*{re.escape(fence)}[\w+#.-]*\n", reply)
    return reply[match.end():] if match else reply


def stream_safe_length(reply: str, fence: str) -> int:
    """How much of a partial reply is surely file text: hold back a last line that
    could still become the closing fence, with the newline before it."""
    cut = reply.rfind("\n")
    tail = reply[cut + 1:]
    if tail and not fence.startswith(tail[: len(fence)]):
        return len(reply)
    return max(cut, 0)


def file_start(reply: str, fence: str, since: int = 0) -> int | None:
    """Where the file begins in a reply that opens its own fence: just after the first
    line that opens it; None until one does. Only lines that end after ``since`` are
    looked at (the stop rule asks once per token: what came before did not open it)."""
    line = reply.rfind("\n", 0, since) + 1
    match = re.compile(rf"(?m)^{_OPENING.format(fence=re.escape(fence))}\n").search(reply, line)
    return match.end() if match else None


class ReplyReader:
    """The file inside a reply that opens its own fence, fed as it streams.

    Whole lines only: until a line opens the fence, lines are held (a model may
    write a sentence first); the lines after it are the file, up to the line that
    starts with the fence. A reply that never opens it is taken whole, as a reply
    that does not re-open a pre-opened fence is.
    """

    def __init__(self, prompt: EditPrompt):
        self.prompt = prompt
        self.opening = re.compile(_OPENING.format(fence=re.escape(prompt.fence)))
        self.before: list[str] = []  # complete lines before the opening fence
        self.body: list[str] | None = None  # complete lines after it (None: not opened yet)
        self.line = ""  # the incomplete last line
        self.closed = False
        self.chars = 0  # file text handed out, in the file's line endings

    def feed(self, text: str) -> str:
        """Add a piece of the reply; returns the file text settled by it."""
        *complete, self.line = (self.line + text).split("\n")
        settled = []
        for line in complete:
            if self.closed:
                break
            if self.body is None:
                if self.opening.fullmatch(line):
                    self.body = []
                else:
                    self.before.append(line + "\n")
                continue
            self.body.append(line + "\n")
            if line.startswith(self.prompt.fence):
                self.closed = True
            else:
                settled.append(line + "\n")
        new = self.prompt.restore_layout("".join(settled), complete=False)
        self.chars += len(new)
        return new

    def result(self, complete: bool) -> str:
        """The file: cut at the closing fence and given the input's layout when the reply
        ended normally, as it stands (line endings only) when it did not."""
        reply = "".join(self.before if self.body is None else self.body) + ("" if self.closed else self.line)
        return self.prompt.file_from_reply(reply) if complete else self.prompt.restore_layout(reply, complete=False)


class PrefilledReader:
    """The file inside a reply whose fence the prompt opened (``reply_prefix``, which the
    local engine sends), fed as it streams: handed out up to where the closing fence
    may begin (``stream_safe_length``)."""

    def __init__(self, prompt: EditPrompt):
        self.prompt = prompt
        self.reply = ""
        self.streamed = 0  # of the reply
        self.chars = 0  # file text handed out, in the file's line endings

    def feed(self, text: str) -> str:
        """Add a piece of the reply; returns the file text settled by it."""
        self.reply += text
        safe = max(stream_safe_length(self.reply, self.prompt.fence), self.streamed)
        new = self.prompt.restore_layout(self.reply[self.streamed:safe], complete=False)
        self.streamed = safe
        self.chars += len(new)
        return new

    def result(self, complete: bool) -> str:
        """As ReplyReader.result."""
        return self.prompt.file_from_reply(self.reply) if complete else self.prompt.restore_layout(self.reply, False)


def reply_reader(prompt: EditPrompt, prefilled: bool = True) -> ReplyReader | PrefilledReader:
    """The reader of ``prompt``'s reply: ``prefilled``, whether the backend sent the
    prompt's ``reply_prefix`` (a remote server is not sent it: its model opens the fence)."""
    return PrefilledReader(prompt) if prefilled and not prompt.opens_fence else ReplyReader(prompt)
