"""blazedit_lsp.actions: code actions, presets, instruction comments."""

from lsprotocol.types import Position, Range

from blazedit_lsp.actions import EDIT_FILE, KIND, code_actions, find_instructions, find_near, resolve
from blazedit_lsp.config import Config

SOURCE = """import time


def fetch(url):
    # AI: make this async
    time.sleep(1)
    return url
"""


def at(line: int) -> Range:
    return Range(Position(line, 0), Position(line, 0))


def test_comment_styles():
    text = "\n".join(
        ["# AI: one", "  // ai: two", "-- AI: three", "/* AI: four */", "<!-- AI: five -->", "x = 1  # AI: not a comment line", "# AI:"]
    )
    assert [f.instruction for f in find_instructions(text, "AI:")] == ["one", "two", "three", "four", "five"]


def test_find_near_prefers_the_closest():
    text = "# AI: far\n" + "x\n" * 20 + "# AI: near\nx\n"
    assert find_near(text, "AI:", 22, 22).instruction == "near"
    assert find_near(text, "AI:", 10, 10) is None  # nothing within reach
    assert find_near(text, "AI:", 0, 30).instruction == "far"  # inside the selection wins (first)


def test_actions_comment_first_then_presets_then_plain():
    config = Config(presets=["add docstrings"])
    actions = code_actions("file:///a.py", 3, SOURCE, at(5), None, config)
    assert [a.title for a in actions] == [
        "AI edit whole file: make this async",
        "AI edit whole file: add docstrings",
        "AI edit whole file",
    ]
    assert actions[0].is_preferred and all(a.kind == KIND for a in actions)
    assert actions[0].command.command == EDIT_FILE
    assert actions[0].command.arguments == [{"uri": "file:///a.py", "version": 3, "instruction": "make this async"}]
    assert actions[2].command.arguments == [{"uri": "file:///a.py", "version": 3}]


def test_actions_respect_only():
    config = Config()
    assert code_actions("file:///a", 1, "x", at(0), ["quickfix"], config) == []
    assert code_actions("file:///a", 1, "x", at(0), ["refactor"], config)
    assert code_actions("file:///a", 1, "x", at(0), ["refactor.rewrite"], config)
    assert code_actions("file:///a", 1, "x", at(0), ["source"], config) == []


def test_long_instruction_title_is_shortened():
    text = "# AI: " + "x" * 200 + "\n"
    title = code_actions("file:///a", 1, text, at(0), None, Config(presets=[]))[0].title
    assert len(title) < 90 and title.endswith("…")


def test_resolve_sources():
    config = Config(default_instruction="")
    r = resolve(SOURCE, None, config)
    assert (r.instruction, r.source) == ("make this async", "comment")
    assert "AI:" not in r.text and r.text == SOURCE.replace("    # AI: make this async\n", "")
    r = resolve(SOURCE, "make this async", config)  # from the comment's code action
    assert r.source == "argument" and "AI:" not in r.text
    r = resolve(SOURCE, "add docstrings", config)  # another instruction leaves the comment alone
    assert r.text == SOURCE
    assert resolve("x = 1\n", None, config) is None
    r = resolve("x = 1\n", None, Config(default_instruction="tidy"))
    assert (r.instruction, r.text, r.source) == ("tidy", "x = 1\n", "default")


def test_custom_marker_and_crlf():
    text = "a\r\n; TODO-AI add logging\r\nb\r\n"
    r = resolve(text, None, Config(instruction_marker="TODO-AI"))
    assert (r.instruction, r.text) == ("add logging", "a\r\nb\r\n")
