"""The review state of one document: the hunks of its last AI edit, each with the lines it
covers in the current text and the text it replaced, followed through the user's typing so
each can be kept or rejected on its own.

Why whole lines: a hunk is what a line diff shows, what an editor can mark, and what the
rebase (edits.rebase) reasons in; typing inside a line of a hunk is typing into the hunk.
Why the review keeps its own copy of the text: the editor sends whole new texts (full sync),
and the ranges refer to the text they were computed on; a new text is mapped by a line diff.

Pure: no LSP types, no I/O. The language server's side is blazedit_lsp/reviewing.py.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from .edits import split_lines


@dataclass(frozen=True)
class Hunk:
    """Lines [start, end) of the review's text hold what the AI wrote in place of ``original``
    (start == end: the AI deleted ``original`` there)."""

    id: int
    start: int
    end: int
    original: str
    ai: str | None
    """What the AI wrote there; None once a later AI change merged it with the user's typing
    (the user's lines can no longer be told apart, so it cannot be rejected)."""


class Touched(Exception):
    """A hunk to reject has the user's typing in it: rejecting it would lose that typing."""

    def __init__(self, hunk: Hunk):
        super().__init__(f"AI change {hunk.id} has your typing in it")
        self.hunk = hunk


Op = tuple[int, int, int, int]
"""A line diff's change: old lines [i1, i2) became new lines [j1, j2)."""


def _ops(old: list[str], new: list[str]) -> list[Op]:
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _collide(a0: int, a1: int, b0: int, b1: int) -> bool:
    """Line ranges that share a line, or an empty one at the edge of or inside the other."""
    if a0 == a1 or b0 == b1:
        return a0 <= b1 and b0 <= a1
    return a0 < b1 and b0 < a1


class Review:
    """The pending hunks of one document's last AI edit, on ``text``."""

    def __init__(self, text: str, instruction: str, job: str = "") -> None:
        self.text = text
        self.instruction = instruction
        self.job = job
        """The AI edit (job id) the hunks come from."""
        self.hunks: list[Hunk] = []
        self._next_id = 1

    def lines(self, hunk: Hunk) -> str:
        """The current text of the hunk's lines."""
        return "".join(split_lines(self.text)[hunk.start : hunk.end])

    def touched(self, hunk: Hunk) -> bool:
        return hunk.ai is None or (self.lines(hunk) != hunk.ai and not self._eol_added(hunk))

    def _eol_added(self, hunk: Hunk) -> str:
        """The line break after an AI hunk that ended the text without one, when that is all
        that changed in it ("" otherwise). Neovim adds it: a buffer whose file ended with a
        line break keeps one ('eol') whatever the edit did, so it is no typing into the hunk."""
        now, ai = self.lines(hunk), hunk.ai
        if not ai or ai.endswith(("\n", "\r")) or hunk.end != len(split_lines(self.text)) or not now.startswith(ai):
            return ""
        return now[len(ai):] if now[len(ai):] in ("\n", "\r\n") else ""

    def get(self, hunk_id: int) -> Hunk | None:
        return next((h for h in self.hunks if h.id == hunk_id), None)

    def at(self, first: int, last: int) -> list[Hunk]:
        """The hunks on lines [first, last] (a deletion's hunk is on the line after it)."""
        return [h for h in self.hunks if h.start <= last and first < max(h.end, h.start + 1)]

    def typed(self, new: str) -> None:
        """The user changed ``text`` into ``new``: hunks move; a hunk typed into grows over the
        typing (and is touched); one whose lines the user deleted, and nothing else, is dropped."""
        if new == self.text:
            return
        ops = _ops(split_lines(self.text), split_lines(new))
        self.hunks = [m for h in self.hunks if (m := _move(h, ops)) is not None]
        self.text = new

    def landed(self, new: str) -> None:
        """The AI changed ``text`` into ``new``: each change becomes a hunk, merged with the
        hunks it meets. A merged hunk's original is what was there before any of them."""
        old_lines, new_lines = split_lines(self.text), split_lines(new)
        hunks: list[Hunk] = []
        shift = 0
        for c0, c1, ops, members in _groups(_ops(old_lines, new_lines), self.hunks):
            delta = sum((j2 - j1) - (i2 - i1) for i1, i2, j1, j2 in ops)
            if not ops:
                hunks += [replace(h, start=h.start + shift, end=h.end + shift) for h in members]
                continue
            start, end = c0 + shift, c1 + shift + delta
            original = self._original(old_lines, c0, c1, members)
            ai = None if any(self.touched(h) for h in members) else "".join(new_lines[start:end])
            if ai is None or ai != original:
                hunk_id = min((h.id for h in members), default=0) or self._fresh()
                hunks.append(Hunk(hunk_id, start, end, original, ai))
            shift += delta
        self.hunks, self.text = hunks, new

    def _original(self, old_lines: list[str], c0: int, c1: int, members: list[Hunk]) -> str:
        """Old lines [c0, c1) with each member hunk's lines put back to its original."""
        out, pos = [], c0
        for h in members:
            out += old_lines[pos : h.start] + [h.original]
            pos = h.end
        return "".join(out + old_lines[pos:c1])

    def _fresh(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def without(self, rejected: list[Hunk]) -> tuple[str, list[Hunk]]:
        """The text with ``rejected`` hunks put back to their originals, and the other hunks
        on it. Raises Touched, changing nothing, when one has the user's typing in it."""
        for h in rejected:
            if self.touched(h):
                raise Touched(h)
        ids = {h.id for h in rejected}
        lines = split_lines(self.text)
        out: list[str] = []
        kept: list[Hunk] = []
        pos = 0
        for h in self.hunks:
            out += lines[pos : h.start]
            start = len(out)
            if h.id in ids:  # (keeping a line break added after it, where it had none)
                eol = self._eol_added(h) if h.original and not h.original.endswith(("\n", "\r")) else ""
                out += split_lines(h.original + eol)
            else:
                out += lines[h.start : h.end]
                kept.append(replace(h, start=start, end=len(out)))
            pos = h.end
        out += lines[pos:]
        return "".join(out), kept

    def reverted(self, text: str, hunks: list[Hunk]) -> None:
        """The editor applied ``without``'s text: adopt it and its hunks."""
        self.text, self.hunks = text, hunks

    def keep(self, kept: list[Hunk]) -> None:
        ids = {h.id for h in kept}
        self.hunks = [h for h in self.hunks if h.id not in ids]


def _groups(ops: list[Op], hunks: list[Hunk]) -> list[tuple[int, int, list[Op], list[Hunk]]]:
    """The AI's changes and the existing hunks, in order, grouped where they collide:
    (first line, end line, changes, hunks) in the old text. Hunks that meet no change
    stay groups of their own."""
    items = sorted([(op[0], op[1], op, None) for op in ops] + [(h.start, h.end, None, h) for h in hunks],
                   key=lambda item: (item[0], item[1]))
    groups: list[tuple[int, int, list[Op], list[Hunk]]] = []
    for s, e, op, hunk in items:
        if groups and _collide(groups[-1][0], groups[-1][1], s, e) and (op or groups[-1][2]):
            c0, c1, group_ops, members = groups[-1]
            groups[-1] = (c0, max(c1, e), group_ops + ([op] if op else []), members + ([hunk] if hunk else []))
        else:
            groups.append((s, e, [op] if op else [], [hunk] if hunk else []))
    return groups


def _move(h: Hunk, ops: list[Op]) -> Hunk | None:
    """``h`` after the user's line changes ``ops`` (sorted); None when they deleted its lines
    and nothing else."""
    shift, start, end = 0, None, h.end
    for i1, i2, j1, j2 in ops:
        delta = (j2 - j1) - (i2 - i1)
        if i2 <= h.start:  # before the hunk (an insertion at its first line too)
            shift += delta
            continue
        if i1 >= h.end:  # after it, and so are the rest
            break
        if j1 == j2 and i1 <= h.start and h.end <= i2:
            return None
        if start is None:
            start = min(h.start + shift, j1)
        shift += delta
        end = max(h.end + shift, j2)
    if start is None:
        return replace(h, start=h.start + shift, end=h.end + shift)
    return replace(h, start=start, end=end)
