"""Text diff → minimal LSP TextEdits, and the three-way rebase of an AI edit.

Why minimal edits: a whole-buffer replace moves the cursor, drops marks and
breakpoints and makes one giant undo step. We diff lines first (difflib), then
characters inside each changed hunk, so untouched lines are never inside an edit.

Offsets here count code points (Python ``str`` indices); positions sent to the
client count code units of the negotiated encoding (UTF-16 by default), via
pygls's position codec. Only ``\\n``, ``\\r\\n`` and ``\\r`` end lines (as in
LSP), never the other separators ``str.splitlines`` knows.
"""

from __future__ import annotations

import bisect
import difflib
import re
from dataclasses import dataclass
from typing import Sequence

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_WORD = re.compile(r"\w+")

CHAR_DIFF_LIMIT = 4_000_000
"""Above this product of hunk lengths, difflib on characters gets slow
(quadratic); such hunks get one edit trimmed of common prefix/suffix."""

MIN_KEPT_RUN = 3
"""Runs of word characters shorter than this between two edits of a hunk are
folded into one edit: a stray common letter inside a rewritten word is not
worth splitting the edit for (punctuation and spaces are kept: they anchor)."""


@dataclass(frozen=True)
class Splice:
    """Replace ``old[start:end]`` (code points) with ``text``."""

    start: int
    end: int
    text: str


def split_lines(text: str) -> list[str]:
    """Lines with their endings kept; "" gives []."""
    return _LINE.findall(text)


def line_starts(lines: Sequence[str]) -> list[int]:
    """The offset where each line starts, and the text's length last."""
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    return starts


def apply_splices(old: str, splices: Sequence[Splice]) -> str:
    """Apply non-overlapping splices sorted by position."""
    out, pos = [], 0
    for s in splices:
        out.append(old[pos : s.start])
        out.append(s.text)
        pos = s.end
    out.append(old[pos:])
    return "".join(out)


def _char_splices(a: str, b: str, base: int) -> list[Splice]:
    """Character-level splices turning ``a`` into ``b``, offsets shifted by ``base``."""
    if len(a) * len(b) > CHAR_DIFF_LIMIT:
        p = 0
        while p < min(len(a), len(b)) and a[p] == b[p]:
            p += 1
        s = 0
        while s < min(len(a), len(b)) - p and a[-1 - s] == b[-1 - s]:
            s += 1
        return [Splice(base + p, base + len(a) - s, b[p : len(b) - s])]
    out: list[Splice] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        gap = a[out[-1].end - base : i1] if out else ""
        if out and len(gap) < MIN_KEPT_RUN and _WORD.fullmatch(gap):
            prev = out.pop()
            out.append(Splice(prev.start, base + i2, prev.text + gap + b[j1:j2]))
        else:
            out.append(Splice(base + i1, base + i2, b[j1:j2]))
    return out


def _keep_crlf_whole(old: str, splices: list[Splice]) -> list[Splice]:
    """Widen splices whose bounds fall between "\\r" and "\\n": such a position
    does not exist for an LSP client."""
    out: list[Splice] = []
    for s in splices:
        start, end, text = s.start, s.end, s.text
        if 0 < start < len(old) and old[start - 1] == "\r" and old[start] == "\n":
            start, text = start - 1, "\r" + text
        if 0 < end < len(old) and old[end - 1] == "\r" and old[end] == "\n":
            end, text = end + 1, text + "\n"
        if out and start <= out[-1].end:
            prev = out.pop()
            start, text = prev.start, prev.text + old[prev.end : start] + text
        out.append(Splice(start, end, text))
    return out


def diff(old: str, new: str) -> list[Splice]:
    """Minimal splices turning ``old`` into ``new``: lines first, then
    characters inside each changed hunk. Sorted, non-overlapping."""
    a, b = split_lines(old), split_lines(new)
    starts = line_starts(a)
    splices: list[Splice] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        new_text = "".join(b[j1:j2])
        if tag == "replace":
            splices += _char_splices(old[starts[i1] : starts[i2]], new_text, starts[i1])
        else:
            splices.append(Splice(starts[i1], starts[i2], new_text))
    return _keep_crlf_whole(old, splices)


def to_text_edits(old: str, splices: Sequence[Splice], encoding: str | None) -> list[types.TextEdit]:
    """Map code-point splices on ``old`` to TextEdits in the client's encoding."""
    codec = PositionCodec(encoding or types.PositionEncodingKind.Utf16)
    lines = split_lines(old)
    starts = line_starts(lines)
    edits: list[types.TextEdit] = []

    def position(offset: int) -> types.Position:
        line = bisect.bisect_right(starts, offset) - 1
        if line == len(lines):  # the very end of the text
            if not lines or lines[-1].endswith(("\n", "\r")):
                return types.Position(line=line, character=0)
            line -= 1
        prefix = lines[line][: offset - starts[line]]
        return types.Position(line=line, character=codec.client_num_units(prefix))

    for s in splices:
        start = position(s.start)
        edits.append(types.TextEdit(range=types.Range(start=start, end=position(s.end)), new_text=s.text))
    return edits


def text_edits(old: str, new: str, encoding: str | None = None) -> list[types.TextEdit]:
    """Minimal TextEdits turning ``old`` into ``new`` ([] when equal)."""
    return to_text_edits(old, diff(old, new), encoding) if old != new else []


class RebaseConflict(Exception):
    """The user's typing and the AI edit touch the same lines."""


def _line_hunks(a: list[str], b: list[str]) -> list[tuple[int, int, list[str]]]:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [(i1, i2, b[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _conflict(x: tuple[int, int, list[str]], y: tuple[int, int, list[str]]) -> bool:
    """Hunks on base lines [x0, x1) and [y0, y1) conflict when they share a
    line, or when one inserts at a point inside or at the edge of the other
    (the order of the two texts would be a guess)."""
    (x0, x1, _), (y0, y1, _) = x, y
    if x0 == x1 or y0 == y1:
        return x0 <= y1 and y0 <= x1
    return x0 < y1 and y0 < x1


def rebase(base: str, ours: str, theirs: str) -> str:
    """Three-way merge at line granularity: ``ours`` (the AI result) and
    ``theirs`` (what the user typed meanwhile) both derive from ``base``.
    Raises RebaseConflict when they change the same or touching lines: merging
    two edits inside one line of code is how broken code gets written."""
    a = split_lines(base)
    mine, yours = _line_hunks(a, split_lines(ours)), _line_hunks(a, split_lines(theirs))
    for x in mine:
        for y in yours:
            if _conflict(x, y):
                raise RebaseConflict(f"both changed line {max(x[0], y[0]) + 1}")
    out: list[str] = []
    pos = 0
    for i1, i2, lines in sorted(mine + yours, key=lambda h: (h[0], h[1])):
        out += a[pos:i1] + lines
        pos = i2
    out += a[pos:]
    return "".join(out)


def apply_text_edits(text: str, edits: Sequence[types.TextEdit], encoding: str | None = None) -> str:
    """Apply TextEdits the way an LSP client does (tests and tools use it to
    check what the server sends). Edits must not overlap; positions count
    code units of ``encoding``; a character past a line's end is its end."""
    codec = PositionCodec(encoding or types.PositionEncodingKind.Utf16)
    lines = split_lines(text)
    starts = line_starts(lines)

    def offset(pos: types.Position) -> int:
        if pos.line >= len(lines):
            return len(text)
        content = lines[pos.line].rstrip("\r\n")
        units = 0
        for i, ch in enumerate(content):
            if units >= pos.character:
                return starts[pos.line] + i
            units += codec.impl.code_units_for_char(ch)
        return starts[pos.line] + len(content)

    spans = sorted(((offset(e.range.start), offset(e.range.end), e.new_text) for e in edits), key=lambda s: s[:2])
    for (_, end, _), (start, _, _) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError("overlapping edits")
    return apply_splices(text, [Splice(s, e, t) for s, e, t in spans])


SETTLE_LINES = 2
"""Unchanged non-blank lines the output must have copied after a hunk before the
hunk counts as settled: the model has moved past it and is copying the file again
(one short line could still be a coincidental match, e.g. ``return x``)."""


def settled(sent: str, partial: str) -> tuple[str, int]:
    """``sent`` with the hunks a partial output has settled, and their count.

    Only complete output lines count. The output is line-diffed against ``sent``;
    everything up to the end of its last run of at least SETTLE_LINES unchanged
    non-blank lines is settled: the text is the output up to there, then ``sent``
    from the matching line on (not yet regenerated, so kept as it is)."""
    a = split_lines(sent)
    b = split_lines(partial[: partial.rfind("\n") + 1])
    i_end = j_end = hunks = pending = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            pending += 1
        elif sum(1 for line in a[i1:i2] if line.strip()) >= SETTLE_LINES:
            i_end, j_end, hunks, pending = i2, j2, hunks + pending, 0
    return "".join(b[:j_end] + a[i_end:]), hunks
