import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import prompts


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
