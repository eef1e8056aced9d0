"""The checks between the engine's result and the editor (blazedit_lsp.editing
and .jobs): guards that ask first, line endings, progress numbers."""

from blazedit_lsp.edit_policy import describe_engine_error, needs_confirmation
from blazedit_lsp.progress import percentage, progress_message
from engine.client import protocol

FILE = "import os\n\n\ndef a():\n    return 1\n\n\ndef b():\n    return 2\n"


def test_guard_length_empty_and_mass_deletion():
    assert "length limit" in needs_confirmation(FILE, FILE, "length", "x")
    assert "empty" in needs_confirmation(FILE, "  \n", "stop", "x")
    assert "deletes most" in needs_confirmation(FILE, "import os\n", "stop", "add docstrings")
    assert needs_confirmation(FILE, "import os\n", "stop", "Remove the functions") is None  # asked for
    assert needs_confirmation(FILE, FILE.replace("1", "10"), "stop", "x") is None
    assert needs_confirmation("x = 1\n", "", "stop", "x") is not None and needs_confirmation("", "", "stop", "x") is None


def test_progress_numbers():
    assert percentage(0, 100) == 0 and percentage(50, 100) == 50
    assert percentage(100, 100) == 99 and percentage(500, 100) == 99 and percentage(5, 0) == 99
    stats = protocol.Stats(tokens=120, drafted=100, accepted=87)
    assert progress_message(stats, 35.24) == "120 tokens, 35.2 tok/s, 87% accepted"
    assert progress_message(protocol.Stats(tokens=3), 1.0) == "3 tokens, 1.0 tok/s"


def test_engine_errors_say_what_to_do():
    assert "smaller file" in describe_engine_error("context_overflow", "40000 > 32768")
    assert describe_engine_error("internal", "boom") == "engine error (internal): boom"
