"""Code actions and where an edit's instruction comes from.

LSP has no free-text prompt, so an instruction comes from the command's
arguments (clients with a prompt), a configured preset, an instruction comment
in the file (``# AI: make this async``; the only way in Zed), or the configured
default. The comment is taken out of the text sent to the engine, so the
result does not carry it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from lsprotocol import types

from .config import Config
from .edits import split_lines

EDIT_FILE = "blazedit.editFile"
CANCEL = "blazedit.cancel"
UNDO = "blazedit.undo"
STATUS = "blazedit.status"

KIND = "refactor.rewrite.blazedit"
"""Under refactor.rewrite, so clients filtering on refactor(.rewrite) list
it, and specific enough to bind a key to."""
TITLE = "AI edit whole file"
SELECTION_TITLE = "AI edit selection"
NEAR_LINES = 5
"""How far from the cursor or selection an instruction comment is looked for."""
MAX_TITLE_CHARS = 60

_COMMENT_START = r"(?:#+|//+|/\*+|\*|--+|;+|%+|<!--|'|\")"
_COMMENT_END = r"(?:\*+/|-->)?"


@dataclass(frozen=True)
class Found:
    """An instruction comment: its text and its line (0-based)."""

    instruction: str
    line: int


def _pattern(marker: str) -> re.Pattern[str]:
    return re.compile(
        rf"^\s*{_COMMENT_START}\s*{re.escape(marker)}\s*(?P<text>.*?)\s*{_COMMENT_END}\s*$",
        re.IGNORECASE,
    )


def find_instructions(text: str, marker: str) -> list[Found]:
    """Every instruction comment in ``text``, in order."""
    pattern = _pattern(marker)
    found = []
    for i, line in enumerate(split_lines(text)):
        m = pattern.match(line.rstrip("\r\n"))
        if m and m["text"]:
            found.append(Found(m["text"], i))
    return found


def find_near(text: str, marker: str, first: int, last: int) -> Found | None:
    """The instruction comment nearest to lines [first, last] (the cursor or
    selection), within NEAR_LINES of it."""

    def distance(f: Found) -> int:
        return 0 if first <= f.line <= last else min(abs(f.line - first), abs(f.line - last))

    near = [f for f in find_instructions(text, marker) if distance(f) <= NEAR_LINES]
    return min(near, key=distance, default=None)


def without_lines(text: str, lines: set[int]) -> str:
    return "".join(line for i, line in enumerate(split_lines(text)) if i not in lines)


@dataclass(frozen=True)
class Resolved:
    """The instruction of one edit and the text to send for it."""

    instruction: str
    text: str
    source: str  # "argument" | "comment" | "default"
    removed: frozenset[int] = frozenset()
    """The instruction comment's lines (0-based), taken out of ``text``."""

    def sent_line(self, line: int) -> int:
        """Where line ``line`` of the document is in ``text``: after it, if it was removed."""
        return line - sum(1 for r in self.removed if r < line)


def resolve(text: str, instruction: str | None, config: Config) -> Resolved | None:
    """Pick the instruction (argument, else the file's instruction comment,
    else the configured default) and drop its comment lines from the text.
    None: no instruction from any source."""
    found = find_instructions(text, config.instruction_marker)
    if instruction and instruction.strip():
        instruction = instruction.strip()
        lines = {f.line for f in found if f.instruction == instruction}
        return Resolved(instruction, without_lines(text, lines), "argument", frozenset(lines))
    if found:
        return Resolved(found[0].instruction, without_lines(text, {found[0].line}), "comment",
                        frozenset({found[0].line}))
    if config.default_instruction.strip():
        return Resolved(config.default_instruction.strip(), text, "default")
    return None


HOW_TO_INSTRUCT = (
    "Blazedit needs an instruction: add a comment line such as "
    "`{marker} make this async` to the file, pick a preset action, call "
    "blazedit.editFile with an instruction, or set `defaultInstruction`."
)


def selected_lines(selection: types.Range) -> tuple[int, int] | None:
    """The whole lines [first, last] (0-based) a selection covers; None for an empty
    selection (a cursor). A selection ending at a line's start leaves that line out."""
    start, end = selection.start, selection.end
    if (start.line, start.character) == (end.line, end.character):
        return None
    last = end.line - 1 if end.character == 0 and end.line > start.line else end.line
    return start.line, last


def _title(instruction: str | None, title: str = TITLE) -> str:
    if not instruction:
        return title
    if len(instruction) > MAX_TITLE_CHARS:
        instruction = instruction[: MAX_TITLE_CHARS - 1] + "…"
    return f"{title}: {instruction}"


def _wanted(only: list[str] | None) -> bool:
    """Whether a client's `only` filter admits KIND (kinds are hierarchical)."""
    return not only or any(o == "" or KIND == o or KIND.startswith(o + ".") for o in only)


def code_actions(
    uri: str, version: int | None, text: str, selection: types.Range, only: list[str] | None, config: Config
) -> list[types.CodeAction]:
    """The comment's action (preferred) first, then presets, then the plain one; with a
    non-empty selection, the same for the selected lines first."""
    if not _wanted(only):
        return []
    found = find_near(text, config.instruction_marker, selection.start.line, selection.end.line)
    instructions: list[str | None] = [found.instruction] if found else []
    instructions += [p for p in config.presets if p not in instructions]
    instructions.append(None)
    lines = selected_lines(selection)
    scopes = ([(SELECTION_TITLE, {"range": msgspec.to_builtins(selection)})] if lines else []) + [(TITLE, {})]
    actions = []
    for title, scope in scopes:
        for instruction in instructions:
            args: dict = {"uri": uri, **scope}
            if version is not None:
                args["version"] = version
            if instruction:
                args["instruction"] = instruction
            actions.append(
                types.CodeAction(
                    title=_title(instruction, title),
                    kind=KIND,
                    command=types.Command(title=_title(instruction, title), command=EDIT_FILE, arguments=[args]),
                    is_preferred=True if found and instruction == found.instruction and title == scopes[0][0] else None,
                )
            )
    return actions
