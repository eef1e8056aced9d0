"""blazedit_lsp.edits: minimal TextEdits in every position encoding, line
endings, and the three-way rebase."""

import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol.types import Position, Range, TextEdit

from blazedit_lsp.edits import (
    RebaseConflict,
    apply_text_edits,
    diff,
    rebase,
    split_lines,
    text_edits,
)

ENCODINGS = ["utf-16", "utf-8", "utf-32"]


def spans(edits):
    return [(e.range.start.line, e.range.start.character, e.range.end.line, e.range.end.character, e.new_text) for e in edits]


def untouched_lines(old: str, new: str) -> set[int]:
    """Old lines that the line diff keeps."""
    m = difflib.SequenceMatcher(None, split_lines(old), split_lines(new), autojunk=False)
    return {i for tag, i1, i2, _, _ in m.get_opcodes() if tag == "equal" for i in range(i1, i2)}


def assert_minimal(old: str, new: str) -> None:
    """No splice overlaps a line the line diff keeps, nor inserts inside one."""
    starts = [0]
    for line in split_lines(old):
        starts.append(starts[-1] + len(line))
    for sp in diff(old, new):
        for i in untouched_lines(old, new):
            lo, hi = starts[i], starts[i + 1]
            assert not (sp.start < hi and lo < sp.end), f"{sp} overlaps kept line {i}"
            assert not lo < sp.start < hi, f"{sp} starts inside kept line {i}"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_edits_apply_and_are_small(encoding):
    old = "def f(x):\n    return x\n\n\nprint(f(1))\n"
    new = "def f(x: int) -> int:\n    return x\n\n\nprint(f(2))\n"
    edits = text_edits(old, new, encoding)
    assert apply_text_edits(old, edits, encoding) == new
    assert spans(edits) == [(0, 7, 0, 7, ": int"), (0, 8, 0, 8, " -> int"), (4, 8, 4, 9, "2")]


def test_no_change_no_edit():
    assert text_edits("a\r\nb", "a\r\nb") == []


def test_emoji_positions_per_encoding():
    old = "x = '😀é中'; y = 1\n"
    new = "x = '😀é中'; y = 2\n"
    # the 1 sits after 😀 (1 code point, 2 UTF-16 units, 4 UTF-8 bytes), é (1, 1, 2), 中 (1, 1, 3)
    assert spans(text_edits(old, new, "utf-32")) == [(0, 15, 0, 16, "2")]
    assert spans(text_edits(old, new, "utf-16")) == [(0, 16, 0, 17, "2")]
    assert spans(text_edits(old, new, "utf-8")) == [(0, 21, 0, 22, "2")]


def test_crlf_kept_and_never_split():
    old = "a\r\nb\r\nc\r\n"
    new = "a\nb\r\nc\r\n"  # only the first line ending changes
    edits = text_edits(old, new)
    assert apply_text_edits(old, edits) == new
    for e in edits:  # no position between \r and \n: (0, 2) would be one
        assert e.range.start.character <= 1 and e.range.end.character <= 1 or e.range.end == Position(1, 0)


def test_split_lines():
    assert split_lines("a\rb\u2028c\n") == ["a\r", "b\u2028c\n"]  # only LSP's line ends split


def test_end_of_text_positions():
    assert spans(text_edits("x", "x\ny")) == [(0, 1, 0, 1, "\ny")]
    assert spans(text_edits("x\n", "x\ny")) == [(1, 0, 1, 0, "y")]
    assert spans(text_edits("", "abc")) == [(0, 0, 0, 0, "abc")]


def test_large_hunks_fall_back_to_trimmed_edit():
    old = "".join(f"line {i}\n" for i in range(3000))
    new = old.replace("line", "LINE")
    assert apply_text_edits(old, text_edits(old, new)) == new


def test_apply_text_edits_clamps_and_orders():
    edits = [TextEdit(Range(Position(0, 99), Position(0, 99)), "!"), TextEdit(Range(Position(0, 0), Position(0, 0)), ">")]
    assert apply_text_edits("ab\ncd", edits) == ">ab!\ncd"


# ----------------------------------------------------------------- property

_ALPHABET = st.sampled_from(list("ab xy\t(){}") + ["\n", "\r\n", "\r", "😀", "中", "é", "𝄞", "\u2028"])
texts = st.lists(_ALPHABET, max_size=60).map("".join)


def _mutations(text: str):
    return st.lists(st.tuples(st.integers(0, len(text)), st.integers(0, 4), texts.map(lambda t: t[:5])), max_size=4)


@st.composite
def pairs(draw):
    """Random texts, and texts that mostly share lines (the common case)."""
    old = draw(texts)
    if draw(st.booleans()):
        return old, draw(texts)
    new = old
    for pos, cut, ins in draw(_mutations(old)):
        pos = min(pos, len(new))
        new = new[:pos] + ins + new[pos + cut :]
    return old, new


@settings(max_examples=400, deadline=None)
@given(pairs(), st.sampled_from(ENCODINGS))
def test_property_edits_apply_to_new_text(pair, encoding):
    old, new = pair
    edits = text_edits(old, new, encoding)
    assert apply_text_edits(old, edits, encoding) == new
    assert (edits == []) == (old == new)
    assert_minimal(old, new)
    for e in edits:  # never between \r and \n of the old text
        for p in (e.range.start, e.range.end):
            lines = split_lines(old)
            if p.line < len(lines) and lines[p.line].endswith("\r\n"):
                content = lines[p.line][:-2]
                units = {"utf-8": len(content.encode()), "utf-16": len(content.encode("utf-16-le")) // 2}.get(encoding, len(content))
                assert p.character <= units


@settings(max_examples=200, deadline=None)
@given(pairs())
def test_property_splices_sorted_disjoint(pair):
    splices = diff(*pair)
    for a, b in zip(splices, splices[1:]):
        assert a.end < b.start


# ----------------------------------------------------------------- rebase

BASE = "".join(f"line {i}\n" for i in range(10))


def test_rebase_keeps_both_changes():
    ours = BASE.replace("line 2\n", "LINE TWO\n")
    theirs = BASE.replace("line 7\n", "line 7 typed\n")
    assert rebase(BASE, ours, theirs) == BASE.replace("line 2\n", "LINE TWO\n").replace("line 7\n", "line 7 typed\n")


def test_rebase_insertions_and_deletions():
    ours = BASE.replace("line 1\n", "")
    theirs = BASE.replace("line 5\n", "line 5\nnew\n")
    assert rebase(BASE, ours, theirs) == BASE.replace("line 1\n", "").replace("line 5\n", "line 5\nnew\n")


@pytest.mark.parametrize(
    "theirs",
    [
        BASE.replace("line 2\n", "line 2 typed\n"),  # same line
        BASE.replace("line 3\n", "line 3\ninserted\n"),  # insertion at the edge of our hunk
    ],
)
def test_rebase_refuses_overlap(theirs):
    ours = BASE.replace("line 2\nline 3\n", "changed\n")
    with pytest.raises(RebaseConflict):
        rebase(BASE, ours, theirs)


def test_rebase_same_point_insertions_conflict():
    with pytest.raises(RebaseConflict):
        rebase(BASE, BASE + "ours\n", BASE + "theirs\n")


@settings(max_examples=200, deadline=None)
@given(pairs(), pairs())
def test_property_rebase_identity(p, q):
    base, ours = p
    assert rebase(base, ours, base) == ours  # nothing typed: our result
    assert rebase(base, base, ours) == ours  # nothing from us: their text


# ------------------------------------------------------------------ settled hunks

from blazedit_lsp.edits import settled  # noqa: E402

SENT = "import os\n\ndef a():\n    return 1\n\ndef b():\n    return 2\n\ndef c():\n    return 3\n"


def test_a_hunk_settles_once_the_output_copies_two_lines_after_it():
    head = "import os\n\ndef a():\n    return 10\n"
    assert settled(SENT, head) == (SENT, 0)  # nothing copied after the change yet
    assert settled(SENT, head + "\ndef b():\n") == (SENT, 0)  # one non-blank line is not enough
    text, hunks = settled(SENT, head + "\ndef b():\n    return 2\n")
    assert hunks == 1 and text == SENT.replace("return 1", "return 10")


def test_only_complete_lines_count():
    assert settled(SENT, "import os\n\ndef a():\n    return 10\n\ndef b():\n    return") == (SENT, 0)


def test_a_dropped_definition_shows_in_the_settled_text():
    text, hunks = settled(SENT, "import os\n\ndef b():\n    return 2\n\ndef c():\n")
    assert hunks == 1 and "def a" not in text and text.endswith("def c():\n    return 3\n")


def test_the_rest_of_the_file_is_kept_as_it_was():
    text, _ = settled(SENT.replace("\n", "\r\n"), "import os\r\n\r\ndef a():\r\n    return 10\r\n\r\ndef b():\r\n    return 2\r\n")
    assert text == SENT.replace("return 1", "return 10").replace("\n", "\r\n")


def test_a_copy_of_the_whole_file_settles_nothing():
    assert settled(SENT, SENT) == (SENT, 0)
