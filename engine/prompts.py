"""The prompt for a whole-file edit, and the file extracted back from the reply.

Layout: a fixed system message, then the file in a code fence, then the
instruction. The file comes before the instruction so that the KV cache of
"system + file" can be reused by the next edit of the same file. The reply is
pre-opened with the fence, so the model starts writing the file at once and
the first closing fence line ends it.
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
    """What the engine needs to build the prompt and to map the reply back to a file."""

    messages: list[dict]
    reply_prefix: str  # appended after the chat template's generation prompt
    fence: str
    line_ending: str
    trailing_newline: bool

    def file_from_reply(self, reply: str) -> str:
        """The file text from the model's reply (which starts inside the fence)."""
        body = _strip_reopened_fence(reply, self.fence)
        start = "\n" + body
        end = start.find("\n" + self.fence)
        if end >= 0:
            body = start[1:end] if end > 0 else ""
        return self.restore_layout(body, complete=end >= 0)

    def file_end(self, rendered: str) -> int:
        """Where the fence closing the file ends in the rendered prompt: a reply that
        copies the file ends there. (The fence is longer than any backtick run in the
        file, so its first match is the closing one.)"""
        return rendered.index("\n" + self.fence + AFTER_FILE) + 1 + len(self.fence)

    def restore_layout(self, body: str, complete: bool = True) -> str:
        """Give the model's text the input's line endings and final newline."""
        if complete:
            body = body.rstrip("\n")
            if self.trailing_newline and body:
                body += "\n"
        if self.line_ending != "\n":
            body = body.replace("\n", self.line_ending)
        return body


def build(text: str, instruction: str, path: str = "", language: str | None = None) -> EditPrompt:
    line_ending = "\r\n" if "\r\n" in text else "\n"
    body = text.replace("\r\n", "\n")
    trailing = body.endswith("\n")
    body = body.rstrip("\n")
    fence = fence_for(body)
    lang = language_for(path, language)
    name = f" `{PurePath(path).name}`" if path else ""
    user = (
        f"File{name}:\n{fence}{lang}\n{body}\n{fence}{AFTER_FILE}{instruction.strip()}\n\n"
        f"Reply with the whole edited file in one {fence}{lang} code block."
    )
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return EditPrompt(messages, f"{fence}{lang}\n", fence, line_ending, trailing)


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
