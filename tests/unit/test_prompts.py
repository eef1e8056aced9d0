import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.client import prompts


def test_file_comes_before_instruction_and_reply_is_preopened():
    p = prompts.build("x = 1\n", "rename x", "pkg/mod.py")
    user = p.messages[-1]["content"]
    assert user.index("x = 1") < user.index("rename x")
    assert p.reply_prefix == "```python\n"


@pytest.mark.parametrize("text", ["x = 1\n", "", "```\n"])
def test_file_end_is_just_past_the_closing_fence(text):
    p = prompts.build(text, "rename x")
    rendered = "<system>" + p.messages[-1]["content"] + "<assistant>" + p.reply_prefix
    before = rendered[:p.file_end(rendered)]
    assert before.endswith(text.rstrip("\n") + "\n" + p.fence)
    assert before.count(p.fence) == 2  # the opening fence and the closing one
    assert p.context_end(rendered) == p.file_end(rendered)  # a whole-file prompt's context is the file


def test_language_from_path_or_client():
    assert prompts.language_for("a/b.rs") == "rust"
    assert prompts.language_for("Makefile") == ""
    assert prompts.language_for("a.txt", "markdown") == "markdown"


def test_fence_is_longer_than_any_backtick_run():
    assert prompts.fence_for("no ticks") == "```"
    assert prompts.fence_for("a ```` b") == "`````"


def test_extraction_stops_at_closing_fence_and_ignores_prose():
    p = prompts.build("a\nb\n", "x")
    assert p.file_from_reply("a\nB\n```\nI changed b to B.") == "a\nB\n"


def test_extraction_handles_reopened_fence():
    p = prompts.build("a\n", "x", "f.py")
    assert p.file_from_reply("```python\na2\n```") == "a2\n"


def test_extraction_keeps_crlf_and_missing_final_newline():
    crlf = prompts.build("a\r\nb\r\n", "x")
    assert crlf.file_from_reply("a\nc\n```") == "a\r\nc\r\n"
    bare = prompts.build("a\nb", "x")
    assert bare.file_from_reply("a\nc\n```") == "a\nc"


def test_empty_reply_is_empty_file():
    assert prompts.build("a\n", "delete everything").file_from_reply("```") == ""


@given(st.text(alphabet="ab`\n ", max_size=40), st.text(alphabet="ab`\n", max_size=10))
def test_streamed_text_never_runs_past_the_file(file, after):
    """For every partial reply the loop streams (it stops once the fence is complete),
    the text judged safe is a prefix of the file."""
    fence = prompts.fence_for(file)
    reply = file + "\n" + fence + after
    for n in range(len(reply) + 1):
        partial = reply[:n]
        if ("\n" + partial).find("\n" + fence) >= 0:
            break
        safe = partial[: prompts.stream_safe_length(partial, fence)]
        assert file.startswith(safe)


# ---------------------------------------------------------------- region edits

FILE = "import os\n\ndef f():\n    return 1\n\n\ndef g():\n    return 2\n"


def render(p: prompts.EditPrompt) -> str:
    return "<system>" + p.messages[-1]["content"] + "<assistant>" + p.reply_prefix


def test_a_region_prompt_shares_the_whole_file_prompts_context_and_shows_the_lines_after_it():
    start, end = prompts.line_region(FILE, 3, 6)
    whole, region = prompts.build(FILE, "x", "m.py"), prompts.build(FILE, "x", "m.py", region=(start, end))
    rw, rr = render(whole), render(region)
    assert rw[:whole.context_end(rw)] == rr[:region.context_end(rr)]
    assert rr[:region.context_end(rr)].endswith("    return 2\n```")
    # what a copying reply reproduces: the region's fence, from copy_start up to file_end
    source = rr[region.copy_start(rr):region.file_end(rr)]
    assert source.endswith("Lines 3-6 of the file:\n```python\ndef f():\n    return 1\n\n\n```")
    assert whole.copy_start(rw) == 0 and "Rewrite only these lines" in rr


def test_a_region_reply_keeps_its_blank_last_lines_and_the_files_line_endings():
    crlf = FILE.replace("\n", "\r\n")
    start, end = prompts.line_region(crlf, 3, 6)
    p = prompts.build(crlf, "x", region=(start, end))
    assert p.file_from_reply("def f():\n    return 3\n\n\n```") == "def f():\r\n    return 3\r\n\r\n\r\n"
    assert p.file_from_reply("```") == ""  # every line deleted
    assert p.restore_layout("def f():\n    ret", complete=False) == "def f():\r\n    ret"


def test_a_region_at_the_end_of_a_file_without_final_newline_gets_none():
    text = "a\nb"
    p = prompts.build(text, "x", region=prompts.line_region(text, 2, 2))
    assert "Lines 2-2" in p.messages[-1]["content"]
    assert p.file_from_reply("B\n```") == "B"


def test_an_empty_region_inserts_whole_lines():
    p = prompts.build(FILE, "x", region=(0, 0))
    assert "An empty selection before line 1" in p.messages[-1]["content"]
    assert p.file_from_reply("# header\n```") == "# header\n"


@pytest.mark.parametrize("first, last, span", [(1, 1, (0, 10)), (2, 3, (10, 20)), (8, 8, (len(FILE) - 13, len(FILE)))])
def test_line_region_gives_the_lines_offsets(first, last, span):
    assert prompts.line_region(FILE, first, last) == span
    assert prompts.region_problem(FILE, *span) is None


@pytest.mark.parametrize("first, last", [(0, 1), (3, 2), (1, 9)])
def test_line_region_refuses_lines_the_file_lacks(first, last):
    with pytest.raises(ValueError, match="not within the file's 8 lines"):
        prompts.line_region(FILE, first, last)


@pytest.mark.parametrize("start, end, problem", [
    (-1, 3, "not within"), (5, 3, "not within"), (0, len(FILE) + 1, "not within"),
    (1, 10, "start 1 is not at the start of a line"), (0, 9, "end 9 is not at the end of a line"),
])
def test_region_problem_names_what_is_wrong(start, end, problem):
    assert problem in prompts.region_problem(FILE, start, end)


@pytest.mark.parametrize("text", ["", "\n", "\nx\n", "``\n"])
def test_the_context_ends_at_the_files_closing_fence_whatever_the_file(text):
    p = prompts.build(text, "x", region=(0, len(text)))
    rendered = render(p)
    assert rendered[:p.context_end(rendered)].endswith(text.rstrip("\n") + "\n" + p.fence)
    assert rendered[:p.context_end(rendered)].count(p.fence) == 2


def test_regions_on_line_boundaries_are_fine():
    assert prompts.region_problem("a\r\nb", 3, 4) is None  # after a CRLF; to the end without a newline
    assert prompts.region_problem("a\nb\n", 4, 4) is None  # empty, at the end


# ---------------------------------------------------------------- the reader of a reply that opens its own fence


def read(reply: str, text: str = "def f():\n    return 1\n", pieces: int = 1) -> tuple[str, str, bool]:
    """(the file, what was streamed, closed), feeding ``reply`` in ``pieces`` parts."""
    reader = prompts.ReplyReader(prompts.build(text, "x", "f.py"))
    size = max(1, len(reply) // pieces)
    streamed = "".join(reader.feed(reply[i:i + size]) for i in range(0, len(reply), size))
    assert reader.chars == len(streamed)
    return reader.result(complete=True), streamed, reader.closed


@pytest.mark.parametrize("pieces", [1, 3, 1000])
def test_the_file_is_inside_the_fence_however_the_reply_is_cut(pieces):
    assert read("```python\ndef f() -> int:\n    return 1\n```\nThat is all.", pieces=pieces) == (
        "def f() -> int:\n    return 1\n",) * 2 + (True,)


def test_a_sentence_before_the_fence_is_skipped():
    assert read("Sure! Here it is:\n\n```py\ndef g():\n    pass\n```\n")[::2] == ("def g():\n    pass\n", True)


def test_a_reply_without_a_fence_is_taken_whole():
    assert read("def g():\n    pass")[::2] == ("def g():\n    pass", False)  # as the local engine does


def test_a_longer_fence_for_a_file_with_backticks():
    text = 'doc = """\n```\nx\n```\n"""\n'
    reply = '````python\ndoc = """\n```\ny\n```\n"""\n````'
    assert read(reply, text)[::2] == ('doc = """\n```\ny\n```\n"""\n', False)  # closed once its line is whole


def test_an_empty_file():
    assert read("```python\n```\n") == ("", "", True)


def test_a_plan_first_prompt_asks_for_the_plan_and_opens_nothing():
    p = prompts.build("x = 1\n", "rename x", "mod.py", plan_first=True)
    assert p.opens_fence and p.reply_prefix == "" and p.messages[-1]["content"].endswith(prompts.PLAN_FIRST)
    assert not prompts.build("x = 1\n", "rename x").opens_fence
    assert prompts.file_start("Plan.\n```python\nx", p.fence) == len("Plan.\n```python\n")
    assert prompts.file_start("Plan.\n```python\nx", p.fence, since=len("Plan.\n```py")) == len("Plan.\n```python\n")
    assert prompts.file_start("Plan with ```python inline\n", p.fence) is None


def test_the_second_attempt_asks_for_every_line_of_the_file():
    assert "whole edited file, every line of it" in prompts.PLAN_FIRST and "not only the part" in prompts.PLAN_FIRST


def test_an_apply_pass_shows_the_sketch_after_the_file_which_stays_the_copy_source():
    text, sketch = "import os\n\n\ndef f():\n    return 1\n", "def f():\n    return 2\n"
    p = prompts.build(text, "return 2", "mod.py", sketch=sketch)
    plain = prompts.build(text, "return 2", "mod.py")
    user = p.messages[-1]["content"]
    assert user.startswith(plain.messages[-1]["content"].split(prompts.AFTER_FILE)[0])  # the warm prefix is shared
    assert user.index("return 1") < user.index("return 2") and "every other line exactly as in the file" in user
    assert p.reply_prefix == "```python\n" and not p.opens_fence and p.copy_start(user) == 0
    assert user[: p.file_end(user)].endswith("    return 1\n```")  # lookup copies the file, up to its fence
    assert p.file_from_reply("import os\n\n\ndef f():\n    return 2\n```") == "import os\n\n\ndef f():\n    return 2\n"
