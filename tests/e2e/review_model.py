"""What a review of an AI edit must leave in the buffer, as plain data: the document is a
list of segments, each plain text (the original, or what the user typed) or a pending hunk
(the AI's lines and what they replaced). Keeping a hunk turns its lines into plain text,
rejecting one its original; typing edits plain lines, or a hunk's (which can then no longer
be rejected). So the buffer is always the original with the kept hunks applied plus the
typing, by construction; the property tests hold the server to it.

Every line is unique (original ``l<i>``, AI ``a<i>``, typed ``t<i>``), so a line diff of two
buffers has one reading, as it has for the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st


@dataclass
class Seg:
    lines: list[str]
    original: list[str] | None = None
    """None: plain text; else a pending hunk and what it replaced."""
    touched: bool = False


@dataclass
class Case:
    original: str
    ai: str
    segs: list[Seg]
    ops: list[tuple[str, int, int]]


@dataclass
class Model:
    segs: list[Seg]
    typed: int = 0
    log: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(line for s in self.segs for line in s.lines)

    def hunks(self) -> list[tuple[int, int, str, bool]]:
        """(first line, end line, original, touched) of each pending hunk, in order."""
        out, line = [], 0
        for s in self.segs:
            if s.original is not None:
                out.append((line, line + len(s.lines), "".join(s.original), s.touched))
            line += len(s.lines)
        return out

    def pending(self) -> list[Seg]:
        return [s for s in self.segs if s.original is not None]

    def fresh(self, tag: str = "") -> str:
        self.typed += 1
        return f"t{self.typed}{tag}\n"

    # ---------------------------------------------------------------- typing

    def insert(self, k: int) -> None:
        """A new line at the k-th line boundary outside hunks (modulo their count): before
        every hunk that starts there, after one that ends there."""
        inside = {p for s, e, _, _ in self.hunks() for p in range(s + 1, e)}
        places = [p for p in range(len(self.text().splitlines()) + 1) if p not in inside]
        k = places[k % len(places)]
        line = 0
        for i, s in enumerate(self.segs):
            if line == k:
                if i > 0 and self.segs[i - 1].original is None:
                    self.segs[i - 1].lines.append(self.fresh())
                elif s.original is None:
                    s.lines.insert(0, self.fresh())
                else:
                    self.segs.insert(i, Seg([self.fresh()]))
                return
            if s.original is None and line < k < line + len(s.lines):
                s.lines.insert(k - line, self.fresh())
                return
            line += len(s.lines)
        if self.segs and self.segs[-1].original is None:
            self.segs[-1].lines.append(self.fresh())
        else:
            self.segs.append(Seg([self.fresh()]))

    def plain_lines(self) -> list[tuple[Seg, int]]:
        return [(s, i) for s in self.segs if s.original is None for i in range(len(s.lines))]

    def edit_plain(self, k: int) -> None:
        if lines := self.plain_lines():
            s, i = lines[k % len(lines)]
            s.lines[i] = s.lines[i].rstrip("\n") + " " + self.fresh().strip() + "\n"

    def delete_plain(self, k: int) -> None:
        if lines := self.plain_lines():
            s, i = lines[k % len(lines)]
            del s.lines[i]

    def edit_hunk(self, h: int, k: int) -> None:
        if hunks := [s for s in self.pending() if s.lines]:
            s = hunks[h % len(hunks)]
            i = k % len(s.lines)
            s.lines[i] = s.lines[i].rstrip("\n") + " " + self.fresh().strip() + "\n"
            s.touched = True

    def delete_hunk_line(self, h: int, k: int) -> None:
        """One line of a hunk; its last line deletes it entirely: it is dropped (kept as deleted)."""
        if hunks := [s for s in self.pending() if s.lines]:
            s = hunks[h % len(hunks)]
            del s.lines[k % len(s.lines)]
            if s.lines:
                s.touched = True
            else:
                s.original, s.touched = None, False

    # ---------------------------------------------------------------- review

    def keep(self, s: Seg) -> None:
        s.original, s.touched = None, False

    def reject(self, s: Seg) -> bool:
        if s.touched:
            return False
        s.lines, s.original = list(s.original or []), None
        return True

    def reject_all(self) -> bool:
        if not self.pending() or any(s.touched for s in self.pending()):
            return False
        for s in self.pending():
            self.reject(s)
        return True


TYPING = ("insert", "edit_plain", "delete_plain", "edit_hunk", "delete_hunk_line")
REVIEW = ("keep", "reject", "keep_all", "reject_all", "undo")


@st.composite
def cases(draw, max_ops: int = 10) -> Case:
    """An original text, an AI edit of it (1-5 hunks, each between unchanged lines), and a
    sequence of typing and review steps."""
    blocks = draw(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=5))
    tail = draw(st.integers(0, 2))
    segs, original, ai, o, a = [], [], [], 0, 0
    for plain, was, now in blocks:
        lines = [f"l{o + i}\n" for i in range(plain)]
        o += plain
        segs.append(Seg(list(lines)))
        original += lines
        ai += lines
        if was == now == 0:
            now = 1
        old = [f"l{o + i}\n" for i in range(was)]
        new = [f"a{a + i}\n" for i in range(now)]
        o, a = o + was, a + now
        segs.append(Seg(new, original=old))
        original += old
        ai += new
    lines = [f"l{o + i}\n" for i in range(tail)]
    segs.append(Seg(list(lines)))
    original += lines
    ai += lines
    ops = draw(st.lists(st.tuples(st.sampled_from(TYPING + REVIEW), st.integers(0, 40), st.integers(0, 40)),
                        max_size=max_ops))
    return Case("".join(original), "".join(ai), [s for s in segs if s.lines or s.original is not None], ops)
